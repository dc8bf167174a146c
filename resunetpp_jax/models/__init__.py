"""The Residual UNet++ network, its U-Net and UNet++ baselines, their layers, and the reference-weight loader."""
from resunetpp_jax.models.factory import MODELS
from resunetpp_jax.models.factory import create_model
from resunetpp_jax.models.resunetpp import ResUNetPP
from resunetpp_jax.models.unet import UNet
from resunetpp_jax.models.unet import UNetPP
