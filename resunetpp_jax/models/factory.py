"""Builds the network that `config.model` names: the ResUNet++ or one of the baselines it was compared with."""
from collections.abc import Callable
from typing import Any

from flax import nnx
import jax.numpy as jnp
import ml_collections

from resunetpp_jax.models import resunetpp
from resunetpp_jax.models import unet

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

def _resunetpp_switches(config: ml_collections.ConfigDict) -> dict[str, str]:
  """The ablation switches config.resunetpp_* (issue 28) that the config sets; absent ones keep the original."""
  keys = ('block', 'attention', 'downsample', 'upsample')
  return {key: config[f'resunetpp_{key}'] for key in keys if f'resunetpp_{key}' in config}


# config.model -> builder(config, **the arguments every network takes).
MODELS: dict[str, Callable[..., nnx.Module]] = {
    'resunetpp': lambda config, **common: resunetpp.ResUNetPP(deep_supervision=config.deep_supervision,
                                                              **_resunetpp_switches(config), **common),
    # One output: config.deep_supervision does not apply.
    'unet': lambda config, **common: unet.UNet(**common),
    'unetpp': lambda config, **common: unet.UNetPP(deep_supervision=config.deep_supervision, **common),
}


def compute_dtype(name: str) -> Any:
  """The jnp dtype for config.dtype; parameters stay float32 whatever it is."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'config.dtype={name!r} is not supported; use one of {sorted(COMPUTE_DTYPES)}.')
  return COMPUTE_DTYPES[name]


def create_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
  """The network of config.model from keys filters, num_classes, deep_supervision, dtype and bn_momentum."""
  if config.model not in MODELS:
    raise ValueError(f'config.model={config.model!r} is not one of {", ".join(map(repr, MODELS))}.')
  return MODELS[config.model](config, filters=tuple(config.filters), num_classes=config.num_classes,
                              dtype=compute_dtype(config.dtype), bn_momentum=config.bn_momentum, rngs=rngs)
