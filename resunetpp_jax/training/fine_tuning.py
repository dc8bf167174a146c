"""Starting a run from a trained model's weights (`config.init_from`): fine-tuning, e.g. the shipped polyp model
on one's own endoscopy data.

The model file (`resunetpp_jax.pretrained`'s format; 'shipped' names the package's) gives the initial parameters
and BatchNorm statistics; the optimizer, its schedule and the data position start fresh. Its network (model,
filters, num_classes, deep_supervision) must be the one the config builds; image size, loss, recipe and data may
differ. Only a fresh start reads the file: a resumed run takes everything from its checkpoint.
"""
import os
import pathlib

from flax import nnx
import ml_collections

from resunetpp_jax import errors
from resunetpp_jax.checkpoints import checkpointer as checkpointer_lib
from resunetpp_jax.checkpoints import model_file as model_file_lib

SHIPPED = 'shipped'
# The config keys that must agree: they set the network's variables and how they connect.
_NETWORK_KEYS = ('model', *checkpointer_lib.SHAPE_KEYS)


def model_file(config: ml_collections.ConfigDict) -> pathlib.Path:
  return pathlib.Path(str(model_file_lib.SHIPPED_WEIGHTS) if config.init_from == SHIPPED
                      else os.path.expanduser(config.init_from))


def check(config: ml_collections.ConfigDict):
  """Raises ConfigError unless config.init_from is a model file of the network the config builds."""
  path = model_file(config)
  if not path.is_file():
    raise errors.ConfigError(
        f'config.init_from={config.init_from!r}: {path} is not a file. Give a model file written by '
        f"resunetpp_jax.pretrained, '{SHIPPED}' for the package's model, or '' to train from scratch.")
  try:  # The file's format, header and config are checked before anything else is read (model_file).
    theirs = model_file_lib.model_config(path, model_file_lib.read_metadata(path))
  except errors.UserError as error:
    raise errors.ConfigError(f'config.init_from={config.init_from!r}: {error}') from error
  differing = [key for key in _NETWORK_KEYS if theirs[key] != config[key]]
  if differing:
    describe = lambda values: ', '.join(f'{key}={values[key]!r}' for key in differing)
    raise errors.ConfigError(
        f'config.init_from={config.init_from!r}: {path} holds another network ({describe(theirs)}) than the '
        f"config builds ({describe(config)}). Set those keys to the file's values (e.g. --config.filters) to "
        'fine-tune it.')


def load_into(model: nnx.Module, config: ml_collections.ConfigDict) -> None:
  """Replaces `model`'s parameters and BatchNorm statistics with config.init_from's (ConfigError if it has none)."""
  check(config)
  trained, _, _ = model_file_lib.load(model_file(config))
  nnx.update(model, nnx.state(trained))
