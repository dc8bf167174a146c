"""Procedural polyp-like images: a dataset that needs no download."""
from resunetpp_jax.data.synthetic_polyps.synthetic_polyps_dataset_builder import SyntheticPolyps
