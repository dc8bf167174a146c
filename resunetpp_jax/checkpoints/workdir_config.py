"""A run's config beside its checkpoints: WORKDIR/config.json, written at the start and read by every tool."""
import json
import pathlib

import jax
import ml_collections

from resunetpp_jax import errors
from resunetpp_jax.checkpoints.errors import CheckpointNotFoundError
from resunetpp_jax.runtime import outputs

CONFIG_FILE = 'config.json'


def save_config(workdir: str, config: ml_collections.ConfigDict):
  """Writes the run's config beside its checkpoints (process 0 only), atomically: a full disk leaves the old
  config.json whole (`runtime.outputs`)."""
  if jax.process_index() == 0:
    outputs.prepare_folder(workdir, '--workdir')
    outputs.write_text(pathlib.Path(workdir) / CONFIG_FILE, config.to_json_best_effort(indent=2),
                       setting='--workdir')


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise CheckpointNotFoundError(f'{path} does not exist: {workdir} is not a training workdir '
                                  '(train into it first with resunetpp_jax.main).')
  try:
    config = ml_collections.ConfigDict(json.loads(path.read_text()))
    config.image_size = tuple(config.image_size)
    config.filters = tuple(config.filters)
  except (OSError, ValueError, TypeError, AttributeError, KeyError) as error:
    raise errors.UserError(f'{path} is damaged or unreadable ({type(error).__name__}: {error}); the checkpoints'
                           f' cannot be rebuilt without it. Restore it (e.g. from a copy of the run), or train into'
                           ' another --workdir.') from error
  return config
