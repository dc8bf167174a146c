"""The model file: a trained network and its config in one safetensors file; the shipped model is one.

A model file is a safetensors file (no pickle, no code): one tensor per model variable, named by its path in the
network ('enc/0/conv/kernel', ...); parameters in float16 (half the size, with no measurable change in masks) and
BatchNorm statistics in float32 (their small variances lose precision in float16). Its string metadata holds
'config' (the run's config as JSON: model, filters, image_size, ... to rebuild the network; its local paths reset,
init_from kept by file name), 'step', 'format' and, for the shipped model, the model card's facts ('card': JSON of
data, recipe, commit, GPU, minutes, and 'scores': {'NAME:SPLIT': the evaluate JSON's numbers}; the shipped-weights
test reads scores['kvasir_seg:pranet_test']['mean_dice']). `load` checks every name and shape against the network
that config builds, so a file and a config that disagree fail with one message naming the file and the first
mismatch.

`inference.Predictor.pretrained()`, `predict` and `evaluate` without --workdir,
and `export` by default all read `SHIPPED_WEIGHTS`; `python -m resunetpp_jax.pretrained` writes one.
"""
import importlib.resources
import json
import os
import pathlib
from typing import Any

from flax import nnx
import jax
import ml_collections
import numpy as np
import safetensors
from safetensors import numpy as safetensors_numpy

from resunetpp_jax import errors
from resunetpp_jax import models
from resunetpp_jax.config import defaults

FORMAT = 'resunetpp_jax.model/1'
SHIPPED_WEIGHTS = importlib.resources.files('resunetpp_jax') / 'weights' / 'polyp.safetensors'
_PARAM_DTYPE = np.float16
# Where the training run found its data and its compilation cache, on its own machine: a model file keeps the
# defaults instead, so that it carries no local paths (evaluate and predict take these from their own flags).
_MACHINE_KEYS = ('manual_dirs', 'data_dir', 'compilation_cache_dir')


def _variable_name(path: tuple) -> str:
  return '/'.join(str(part) for part in path)


def save(model: nnx.Module, config: ml_collections.ConfigDict, path: str | os.PathLike, *,
         step: int | None = None, card: dict[str, Any] | None = None) -> None:
  """Writes `model` (its parameters and BatchNorm statistics) and `config` to a model file at `path`."""
  tensors = {}
  for variable_path, variable in nnx.to_flat_state(nnx.state(model)):
    value = np.asarray(jax.device_get(variable.get_value()))
    if isinstance(variable, nnx.Param):
      value = value.astype(_PARAM_DTYPE)
      if not np.all(np.isfinite(value)):
        raise errors.UserError(f'{_variable_name(variable_path)} does not fit float16; the model cannot be saved '
                            'in this format.')
    tensors[_variable_name(variable_path)] = np.ascontiguousarray(value)
  portable = ml_collections.ConfigDict(config.to_dict())
  default_values = defaults.get_default_config()
  for key in _MACHINE_KEYS:
    portable[key] = default_values[key]
  if config.get('init_from'):  # Which model it was fine-tuned from, by file name: provenance without a local path.
    portable.init_from = os.path.basename(config.init_from)
  metadata = {'format': FORMAT, 'config': portable.to_json_best_effort()}
  if step is not None:
    metadata['step'] = str(step)
  if card:
    metadata['card'] = json.dumps(card)
  safetensors_numpy.save_file(tensors, os.fspath(path), metadata=metadata)


def step_of(metadata: dict[str, str]) -> int | None:
  """The training step a model file's metadata records, if any."""
  return int(metadata['step']) if 'step' in metadata else None


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
  """The string metadata of a model file, without reading its tensors."""
  with open(path, 'rb') as f:
    header_size = int.from_bytes(f.read(8), 'little')
    header = json.loads(f.read(header_size))
  return header.get('__metadata__', {})


def load(path: str | os.PathLike | None = None) -> tuple[nnx.Module, ml_collections.ConfigDict, dict[str, str]]:
  """A model file's network (in eval mode, float32 variables), its config and its metadata.

  Args:
    path: a file written by `save`; None reads the model shipped with the package.
  """
  path = pathlib.Path(os.fspath(path) if path is not None else str(SHIPPED_WEIGHTS))
  if not path.is_file():
    if path == pathlib.Path(str(SHIPPED_WEIGHTS)):
      raise errors.UserError(
          f'This installation holds no trained model ({path} is missing). Train one (configs/polyp.py) and '
          'pass --workdir, or give a model file.')
    raise errors.UserError(f'Model file {path} does not exist.')
  try:
    metadata = read_metadata(path)
    tensors = safetensors_numpy.load_file(path)
  except (OSError, ValueError, safetensors.SafetensorError) as error:
    raise errors.UserError(f'{path} is not a readable model file ({error}).') from error
  if metadata.get('format') != FORMAT:
    raise errors.UserError(f'{path} is not a resunetpp_jax model file (format {metadata.get("format")!r}, '
                        f'expected {FORMAT!r}).')
  config = defaults.from_json(metadata['config'])
  abstract = nnx.eval_shape(lambda: models.create_model(config, nnx.Rngs(config.seed)))
  graphdef, abstract_state = nnx.split(abstract)
  flat = nnx.to_flat_state(abstract_state)
  expected = {_variable_name(variable_path): variable for variable_path, variable in flat}
  unexpected = sorted(set(tensors) - set(expected))
  if unexpected:
    raise errors.UserError(f'{path} holds {len(unexpected)} tensors its config\'s network does not have '
                        f'(e.g. {unexpected[0]!r}).')
  for name, variable in expected.items():
    if name not in tensors:
      raise errors.UserError(f'{path} lacks the tensor {name!r} that its config\'s network needs.')
    want = variable.get_value().shape
    if tensors[name].shape != want:
      raise errors.UserError(f'{path}: tensor {name!r} has shape {tensors[name].shape}, its config\'s network '
                          f'needs {want}.')
    variable.set_value(jax.numpy.asarray(tensors[name], np.float32))
  model = nnx.merge(graphdef, nnx.from_flat_state(flat))
  model.eval()
  return model, config, metadata
