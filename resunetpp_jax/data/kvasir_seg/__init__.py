"""Kvasir-SEG: 1000 colonoscopy images with polyp masks."""
from resunetpp_jax.data.kvasir_seg.kvasir_seg_dataset_builder import KvasirSeg
