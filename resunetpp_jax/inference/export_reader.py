"""Reads the exported files of `export_writer`: an onnxruntime session or a jax.export function, with metadata.

The file formats are described in export_writer's docstring. Loading needs the optional 'export' extra.
"""
import json
import os
import zipfile

from jax import export as jax_export
import ml_collections
import onnxruntime

from resunetpp_jax import errors

ONNX_SUFFIX = '.onnx'
STABLEHLO_SUFFIX = '.stablehlo.zip'
STABLEHLO_MODULE_FILE = 'exported.bin'
METADATA_FILE = 'metadata.json'


class ExportFileError(errors.UserError, ValueError):
  """A file that `load_onnx` cannot use: missing, unreadable, or not written by export_writer."""


def config_from_metadata(values: dict[str, str]) -> ml_collections.ConfigDict:
  """The config keys stored by `metadata`, as the Predictor reads them."""
  keys = json.loads(values['config'])
  return ml_collections.ConfigDict(dict(keys, image_size=tuple(keys['image_size']), filters=tuple(keys['filters'])))


def load_stablehlo(path: str) -> tuple[jax_export.Exported, dict[str, str]]:
  """The exported function (call it with `.call(images)`) and the metadata of a .stablehlo.zip file."""
  with zipfile.ZipFile(path) as archive:
    values = json.loads(archive.read(METADATA_FILE))
    exported = jax_export.deserialize(bytearray(archive.read(STABLEHLO_MODULE_FILE)))
  return exported, values


def load_onnx(path: str) -> tuple[onnxruntime.InferenceSession, dict[str, str]]:
  """An onnxruntime CPU session of an exported .onnx file, and its metadata."""
  if not os.path.isfile(path):
    raise ExportFileError(f'{path} does not exist; write it with python -m resunetpp_jax.export'
                            f' --output={path}.')
  try:
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  except Exception as error:  # onnxruntime raises its own classes for every kind of unreadable file.
    raise ExportFileError(f'{path} is not a readable ONNX model ({error}); write it with python -m'
                     ' resunetpp_jax.export.') from error
  values = session.get_modelmeta().custom_metadata_map
  if 'config' not in values:
    raise ExportFileError(f'{path} is an ONNX model without the metadata of resunetpp_jax.export (its input size'
                     ' and threshold); export the model with python -m resunetpp_jax.export.')
  return session, values
