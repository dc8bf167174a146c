"""A small model ready for inference, and its variables by path: what the model-file tests compare."""
from flax import nnx
import numpy as np

from resunetpp_jax.models import initialization


def eval_model(config):
  """The network `config` builds, initialised, in eval mode."""
  model = initialization.create_initialized_model(config)
  model.eval()
  return model


def variables(model) -> dict[str, tuple[type, np.ndarray]]:
  """'enc/0/conv/kernel' -> (variable type, value) for every variable of `model`."""
  return {'/'.join(map(str, path)): (type(v), np.asarray(v.get_value()))
          for path, v in nnx.to_flat_state(nnx.state(model))}
