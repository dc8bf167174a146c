"""A run's config beside its checkpoints: WORKDIR/config.json, written at the start and read by every tool."""
import json
import pathlib

import jax
import ml_collections

from resunetpp_jax.checkpoints.errors import CheckpointNotFoundError

CONFIG_FILE = 'config.json'


def save_config(workdir: str, config: ml_collections.ConfigDict):
  """Writes the run's config beside its checkpoints (process 0 only)."""
  if jax.process_index() == 0:
    path = pathlib.Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json_best_effort(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise CheckpointNotFoundError(f'{path} does not exist: {workdir} is not a training workdir '
                                  '(train into it first with resunetpp_jax.main).')
  config = ml_collections.ConfigDict(json.loads(path.read_text()))
  config.image_size = tuple(config.image_size)
  config.filters = tuple(config.filters)
  return config
