"""Initial weights drawn on the host with numpy, in milliseconds.

Initialising through JAX means compiling one random-number kernel per parameter
tensor: for this network XLA's CPU compiler spends minutes on that. numpy draws the
same distributions the original used (Keras' defaults) at once:
Glorot-uniform kernels, zero biases, BatchNorm scale and variance 1, shift and mean 0.
Each tensor's draw depends only on the seed and its path, so adding a layer leaves the
others' initial values unchanged.
"""
import math
import zlib

from flax import nnx
import jax
import ml_collections
import numpy as np

from resunetpp_jax.models import factory

_ONES = ('scale', 'var')
_ZEROS = ('bias', 'mean')


def _glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
  receptive_field = math.prod(shape[:-2])  # 1 for dense (in, out) kernels; H * W for HWIO convolutions.
  fan_in, fan_out = shape[-2] * receptive_field, shape[-1] * receptive_field
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return rng.uniform(-limit, limit, shape)


def _initial_value(seed: int, path: tuple, abstract: jax.ShapeDtypeStruct) -> np.ndarray:
  name = str(path[-1])
  if name == 'kernel':
    key = '/'.join(map(str, path)).encode()
    value = _glorot_uniform(np.random.default_rng([seed, zlib.crc32(key)]), abstract.shape)
  elif name in _ONES:
    value = np.ones(abstract.shape)
  elif name in _ZEROS:
    value = np.zeros(abstract.shape)
  else:
    raise ValueError(f'No initializer for variable {"/".join(map(str, path))}: add one to {__name__}.')
  return value.astype(abstract.dtype)


def create_initialized_model(config: ml_collections.ConfigDict, seed: int | None = None) -> nnx.Module:
  """The network of `config` (config.model), with concrete initial weights from `seed` (default config.seed)."""
  seed = config.seed if seed is None else seed
  abstract = nnx.eval_shape(lambda: factory.create_model(config, nnx.Rngs(seed)))
  graphdef, state = nnx.split(abstract)
  values = jax.tree_util.tree_map_with_path(
      lambda path, leaf: _initial_value(seed, tuple(k.key for k in path), leaf), nnx.to_pure_dict(state))
  nnx.replace_by_pure_dict(state, values)
  return nnx.merge(graphdef, state)
