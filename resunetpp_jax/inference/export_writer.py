"""Writes the trained network for runtimes that do not run our Python: ONNX, or StableHLO through jax.export.

The format follows the extension (`output_format`); `python -m resunetpp_jax.export` is the command.

Both formats hold the same inference-mode network (BatchNorm with its running statistics) with a dynamic batch:
  input  'image':  float32 (batch, H, W, 3), NHWC RGB scaled to [0, 1] (uint8 / 255), (H, W) = image_size;
  output 'logits': float32 (batch, H, W, num_classes = 1), the last (finest) deep-supervision head before the sigmoid;
                   foreground probability = sigmoid(logits), mask = probability >= 0.5.
Resizing to image_size and back is the caller's (`inference.Predictor` resizes by area averaging when shrinking,
else bilinear, and resizes probabilities back bilinearly before thresholding). The graph computes in float32
whatever `config.dtype` the model was trained with (its parameters are float32 either way).

Each file carries `metadata(...)`: the interface above, image_size, threshold, where the weights came from, the
package version and the model config keys. In ONNX it is the model's metadata_props; the StableHLO artifact is a
zip archive holding `metadata.json` and `exported.bin`, the `jax.export.Exported.serialize()` bytes (StableHLO
module, lowered for CPU and CUDA, with its calling convention); `load_stablehlo` reads both.

The ONNX graph comes from jax2onnx. Its 0.17.1 BatchNorm plugin gives the NCHW BatchNormalization output no shape,
so when the converter folds the NHWC<->NCHW transposes around the following ReLU, the ReLU keeps a stale NHWC shape
annotation (onnx.checker rejects the model; onnxruntime warns and ignores it). Shape annotations of intermediate
values are optional in ONNX, so `to_onnx` drops them and lets ONNX's shape inference recompute them.
"""
import importlib.metadata
import json
import logging as python_logging
import os
import zipfile

from flax import nnx
import jax
from jax import export as jax_export
import jax.numpy as jnp
import jax2onnx
import ml_collections
import onnx

from resunetpp_jax import errors
from resunetpp_jax import models
from resunetpp_jax.inference import predictor
from resunetpp_jax.inference.export_reader import METADATA_FILE
from resunetpp_jax.inference.export_reader import ONNX_SUFFIX
from resunetpp_jax.inference.export_reader import STABLEHLO_MODULE_FILE
from resunetpp_jax.inference.export_reader import STABLEHLO_SUFFIX
from resunetpp_jax.models.resunetpp import IMAGE_CHANNELS
from resunetpp_jax.runtime import outputs

INPUT_NAME = 'image'
OUTPUT_NAME = 'logits'
# The StableHLO module runs under JAX on these platforms (lowering needs no GPU).
STABLEHLO_PLATFORMS = ('cpu', 'cuda')
# The config keys that say what the network is and what it was trained on.
CONFIG_KEYS = ('model', 'filters', 'num_classes', 'deep_supervision', 'image_size', 'dataset')
INPUT_DOC = 'float32 (batch, H, W, 3), NHWC RGB scaled to [0, 1] (uint8 / 255), resized to (H, W) = image_size'
OUTPUT_DOC = ('float32 (batch, H, W, num_classes), logits of the last (finest) deep-supervision head; foreground'
              ' probability = sigmoid(logits), mask = probability >= threshold')


def output_format(path: str) -> str:
  """'onnx' or 'stablehlo', from the file name's extension."""
  if path.endswith(ONNX_SUFFIX):
    return 'onnx'
  if path.endswith(STABLEHLO_SUFFIX):
    return 'stablehlo'
  raise errors.UserError(f'--output={path}: the format follows the extension, {ONNX_SUFFIX} (ONNX) or'
                      f' {STABLEHLO_SUFFIX} (StableHLO through jax.export); rename the output.')


def float32_model(model: nnx.Module, config: ml_collections.ConfigDict) -> nnx.Module:
  """`model` (in eval mode) computing in float32: its parameters are float32 whatever config.dtype says."""
  if config.dtype != 'float32':
    config = ml_collections.ConfigDict(config.to_dict())
    config.dtype = 'float32'
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: models.create_model(config, nnx.Rngs(0))))
    model = nnx.merge(graphdef, nnx.state(model))
  model.eval()
  return model


def metadata(config: ml_collections.ConfigDict, source: str, step: int | None) -> dict[str, str]:
  """What a user of the file needs to feed it and read its output, and where its weights came from."""
  return {
      'input': f'{INPUT_NAME}: {INPUT_DOC}',
      'output': f'{OUTPUT_NAME}: {OUTPUT_DOC}',
      'image_size': json.dumps(list(config.image_size)),
      'threshold': str(predictor.THRESHOLD),
      'source': source,
      'step': '' if step is None else str(step),
      'resunetpp_jax_version': importlib.metadata.version('resunetpp_jax'),
      'config': json.dumps({key: config[key] for key in CONFIG_KEYS if key in config}),
  }


def _logits_of_last_head(model: nnx.Module):
  return lambda images: model(images)[-1]


def to_onnx(model: nnx.Module, config: ml_collections.ConfigDict, values: dict[str, str]) -> onnx.ModelProto:
  """The ONNX graph of `model` (float32, eval mode) with a dynamic batch and `values` as metadata_props."""
  model = float32_model(model, config)
  # onnx_ir warns about every shape annotation it cannot type; they are dropped below anyway.
  python_logging.getLogger('onnx_ir.serde').setLevel(python_logging.ERROR)
  proto = jax2onnx.to_onnx(
      _logits_of_last_head(model), [('batch', *config.image_size, IMAGE_CHANNELS)],
      model_name=config.model, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
  del proto.graph.value_info[:]  # Stale shapes (module docstring); recomputed next.
  proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
  proto.graph.input[0].doc_string = INPUT_DOC
  proto.graph.output[0].doc_string = OUTPUT_DOC
  proto.doc_string = f'{config.model} polyp segmentation network of resunetpp_jax; see metadata_props.'
  onnx.helper.set_model_props(proto, values)
  return proto


def to_stablehlo(model: nnx.Module, config: ml_collections.ConfigDict) -> jax_export.Exported:
  """`model` (float32, eval mode) lowered by jax.export with a symbolic batch dimension."""
  model = float32_model(model, config)
  graphdef, state = nnx.split(model)
  logits = lambda images: _logits_of_last_head(nnx.merge(graphdef, state))(images)
  batch, = jax_export.symbolic_shape('batch')
  spec = jax.ShapeDtypeStruct((batch, *config.image_size, IMAGE_CHANNELS), jnp.float32)
  return jax_export.export(jax.jit(logits), platforms=STABLEHLO_PLATFORMS)(spec)


def save(model: nnx.Module, config: ml_collections.ConfigDict, path: str, values: dict[str, str], *,
         overwrite: bool = True) -> None:
  """Writes `model` to `path` in the format its extension names, with `values` as its metadata, atomically
  (`runtime.outputs`: an old file survives a failed export; a link is refused)."""
  outputs.prepare_folder(os.path.dirname(os.path.abspath(path)), '--output')
  if output_format(path) == 'onnx':
    proto = to_onnx(model, config, values)
    outputs.write_with(path, lambda temporary: onnx.save_model(proto, temporary), overwrite=overwrite,
                       setting='--output')
  else:
    serialized = to_stablehlo(model, config).serialize()

    def write(temporary: str):
      with zipfile.ZipFile(temporary, 'w') as archive:  # Stored: float weights do not compress.
        archive.writestr(METADATA_FILE, json.dumps(values, indent=2))
        archive.writestr(STABLEHLO_MODULE_FILE, bytes(serialized))
    outputs.write_with(path, write, overwrite=overwrite, setting='--output')
