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

Nothing in a file is trusted before it is checked: the 8-byte header length against the file's size (random bytes
or another format would otherwise ask for exabytes), the format by its first bytes (an ONNX or StableHLO export is
named as such), the embedded config by the rules of a training config (`config.validation.validate_model`, which
bounds image_size) and every tensor for NaN or Inf. Each fault is one `ModelFileError` naming the file.

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
from resunetpp_jax.config import validation
from resunetpp_jax.runtime import outputs

FORMAT = 'resunetpp_jax.model/1'
SHIPPED_WEIGHTS = importlib.resources.files('resunetpp_jax') / 'weights' / 'polyp.safetensors'
_PARAM_DTYPE = np.float16
# Where the training run found its data and its compilation cache, on its own machine: a model file keeps the
# defaults instead, so that it carries no local paths (evaluate and predict take these from their own flags).
_MACHINE_KEYS = ('manual_dirs', 'data_dir', 'compilation_cache_dir')
# The largest header a model file's string metadata and tensor table need (the shipped one: ~30 KB).
_MAX_HEADER_BYTES = 100 * 2**20


class ModelFileError(errors.UserError):
  """A model file that is missing, of another format, damaged, or whose config or weights cannot work."""


def _other_format(start: bytes) -> str | None:
  """What a file that is not safetensors looks like, from its first bytes, or None."""
  if start.startswith(b'PK\x03\x04'):
    return ('a zip archive, such as a StableHLO export of resunetpp_jax.export (.stablehlo.zip) or PyTorch weights;'
            ' a model file is .safetensors, written by resunetpp_jax.pretrained: use --model=MODEL.safetensors (or,'
            ' for predict, the ONNX export --model=MODEL.onnx)')
  # ONNX: a protobuf ModelProto starts with field 1 (ir_version, a small varint), then usually 2..8 or the graph.
  if len(start) >= 3 and start[0] == 0x08 and 1 <= start[1] <= 30 and start[2] in (0x12, 0x1a, 0x22, 0x2a, 0x32,
                                                                                      0x3a, 0x40, 0x42):
    return ('an ONNX file (resunetpp_jax.export); predict runs it with --model=MODEL.onnx, but a model file for'
            ' init_from, evaluate --model or export must be .safetensors (resunetpp_jax.pretrained)')
  if start.startswith(b'\x89HDF'):
    return 'an HDF5 file (e.g. Keras weights), not a resunetpp_jax model file'
  if start.startswith(b'\x80'):
    return 'a pickle (e.g. PyTorch weights), not a resunetpp_jax model file'
  return None


def _variable_name(path: tuple) -> str:
  return '/'.join(str(part) for part in path)


def save(model: nnx.Module, config: ml_collections.ConfigDict, path: str | os.PathLike, *,
         step: int | None = None, card: dict[str, Any] | None = None, overwrite: bool = True) -> None:
  """Writes `model` (its parameters and BatchNorm statistics) and `config` to a model file at `path`, atomically
  (`runtime.outputs`: an old file survives a failure; without `overwrite` an existing one is refused)."""
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
  outputs.write_with(path, lambda temporary: safetensors_numpy.save_file(tensors, temporary, metadata=metadata),
                     overwrite=overwrite, setting='--output')


def step_of(metadata: dict[str, str]) -> int | None:
  """The training step a model file's metadata records, if any."""
  step = metadata.get('step')
  return int(step) if isinstance(step, str) and step.isdigit() else None


def _check_path(path: pathlib.Path) -> None:
  if path.is_dir():
    raise ModelFileError(f'Model file {path} is a folder; give the .safetensors file (a training workdir goes to'
                         ' --workdir).')
  if not path.is_file():
    if path == pathlib.Path(str(SHIPPED_WEIGHTS)):
      raise ModelFileError(
          f'This installation holds no trained model ({path} is missing). Train one (configs/polyp.py) and '
          'pass --workdir, or give a model file.')
    raise ModelFileError(f'Model file {path} does not exist.')


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
  """The string metadata of a model file, without reading its tensors; a ModelFileError if it is not one.

  The header's length is compared with the file's size before it is read, so any file costs at most its size.
  """
  path = pathlib.Path(os.fspath(path))
  _check_path(path)
  try:
    size = path.stat().st_size
    with open(path, 'rb') as f:
      start = f.read(8)
      header_size = int.from_bytes(start, 'little') if len(start) == 8 else -1
      if not 2 <= header_size <= min(size - 8, _MAX_HEADER_BYTES):
        f.seek(0)
        other = _other_format(f.read(16))
        raise ModelFileError(f'{path} is not a safetensors model file: ' + (
            f'it looks like {other}.' if other else
            f'its first 8 bytes give a header of {header_size} bytes in a file of {size} bytes (damaged, cut short'
            ' or another format). Use a file written by resunetpp_jax.pretrained.'))
      header = json.loads(f.read(header_size))
  except OSError as error:
    raise ModelFileError(f'Cannot read model file {path} ({error.strerror or error}).') from error
  except (ValueError, UnicodeDecodeError) as error:
    raise ModelFileError(f'{path} is not a safetensors model file: its header is not JSON ({error}); the file is'
                         ' damaged or of another format.') from error
  metadata = header.get('__metadata__', {}) if isinstance(header, dict) else None
  if not isinstance(metadata, dict):
    raise ModelFileError(f'{path} is not a safetensors model file: its header is not a JSON object of tensors.')
  return metadata


def model_config(path, metadata: dict[str, str]) -> ml_collections.ConfigDict:
  """The config embedded in a model file, checked as a training config's network keys are."""
  if metadata.get('format') != FORMAT:
    raise ModelFileError(f'{path} is not a resunetpp_jax model file (format {metadata.get("format")!r}, '
                         f'expected {FORMAT!r}).')
  if 'config' not in metadata:
    raise ModelFileError(f'{path} holds no config in its metadata, so its network cannot be rebuilt; write it with'
                         ' resunetpp_jax.pretrained.')
  try:
    config = defaults.from_json(metadata['config'])
    validation.validate_model(config)
  except errors.ConfigError as error:
    raise ModelFileError(f'{path}: its embedded config cannot work: {error} The file is damaged or was edited;'
                         ' write it again with resunetpp_jax.pretrained.') from error
  except (ValueError, TypeError, KeyError, AttributeError) as error:
    raise ModelFileError(f'{path}: its embedded config is malformed ({type(error).__name__}: {error}); the file is'
                         ' damaged or was edited: write it again with resunetpp_jax.pretrained.') from error
  return config


def load(path: str | os.PathLike | None = None) -> tuple[nnx.Module, ml_collections.ConfigDict, dict[str, str]]:
  """A model file's network (in eval mode, float32 variables), its config and its metadata.

  Args:
    path: a file written by `save`; None reads the model shipped with the package.

  Raises:
    ModelFileError: the file is missing, a folder, of another format, damaged, or its config or weights cannot
      work (module docstring); the message names the file.
  """
  path = pathlib.Path(os.fspath(path) if path is not None else str(SHIPPED_WEIGHTS))
  metadata = read_metadata(path)
  config = model_config(path, metadata)
  try:
    tensors = safetensors_numpy.load_file(path)
  except (OSError, ValueError, safetensors.SafetensorError) as error:
    raise ModelFileError(f'{path} is not a readable model file ({error}).') from error
  abstract = nnx.eval_shape(lambda: models.create_model(config, nnx.Rngs(config.seed)))
  graphdef, abstract_state = nnx.split(abstract)
  flat = nnx.to_flat_state(abstract_state)
  expected = {_variable_name(variable_path): variable for variable_path, variable in flat}
  unexpected = sorted(set(tensors) - set(expected))
  if unexpected:
    raise ModelFileError(f'{path} holds {len(unexpected)} tensors its config\'s network does not have '
                        f'(e.g. {unexpected[0]!r}).')
  for name, variable in expected.items():
    if name not in tensors:
      raise ModelFileError(f'{path} lacks the tensor {name!r} that its config\'s network needs.')
    want = variable.get_value().shape
    if tensors[name].shape != want:
      raise ModelFileError(f'{path}: tensor {name!r} has shape {tensors[name].shape}, its config\'s network '
                          f'needs {want}.')
    if not np.all(np.isfinite(tensors[name])):
      raise ModelFileError(f'{path}: tensor {name!r} holds NaN or Inf; the weights are damaged (or come from a'
                           ' run that diverged): use another model file.')
    variable.set_value(jax.numpy.asarray(tensors[name], np.float32))
  model = nnx.merge(graphdef, nnx.from_flat_state(flat))
  model.eval()
  return model, config, metadata
