"""Residual UNet++ with CBAM attention for polyp segmentation, in JAX/Flax NNX."""
