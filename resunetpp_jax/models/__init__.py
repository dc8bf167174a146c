"""The Residual UNet++ network, its layers, and the loader for the PyTorch-named reference weights."""
from resunetpp_jax.models.resunetpp import create_model
from resunetpp_jax.models.resunetpp import ResUNetPP
