"""Segment images of any size with a trained model: the Python API for notebooks.

  from resunetpp_jax.inference import Predictor
  predictor = Predictor.pretrained()  # the shipped model
  predictor = Predictor.from_workdir('workdirs/kvasir')  # or yours
  probabilities = predictor.predict_proba(image)  # float32 (H, W) in [0, 1]
  masks = predictor.predict_mask([image_a, image_b], tta=True)  # bool (H, W)

Each image is resized to the model's `config.image_size`, run in inference mode
(batched, jitted), and its logits are resized back to the image's original
size (bilinear) before the sigmoid and the threshold, as PraNet's MyTest.py
does for the published tables, so masks follow the original outline rather
than blocky upsampled decisions. `evaluate` and `predict` use
this class, so the CLI and notebooks produce identical masks.
"""
import functools
import json
from typing import Sequence

from absl import logging
import cv2
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from resunetpp_jax import errors
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.inference import model_sources
from resunetpp_jax.runtime import compilation_cache

THRESHOLD = 0.5


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """RGB uint8 image to (height, width) exactly as the data pipeline resizes.

  Area averaging when shrinking (no aliasing on 1920x1072 Kvasir images),
  bilinear otherwise, as `data.augment.resize_pair` does for training and
  validation: the model sees the same pixels at inference.
  """
  height, width = size
  if image.shape[:2] == (height, width):
    return image
  shrinking = height <= image.shape[0] and width <= image.shape[1]
  return cv2.resize(image, (width, height), interpolation=(
      cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR))


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """A float32 (h, w) map back to (height, width), bilinear."""
  height, width = size
  if values.shape == (height, width):
    return values
  return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)


def sigmoid(logits: np.ndarray) -> np.ndarray:
  """float32 probabilities of logits, without overflow at large |logits|."""
  return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)


def _check_image(image, index: int) -> np.ndarray:
  """The image as an array, or a ValueError saying what it is and what to do."""
  image = np.asarray(image)
  if image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3:
    if image.shape[0] and image.shape[1]:
      return image
    problem, advice = 'is empty', 'pass an image of at least 1x1 pixel'
  elif image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1):
    problem, advice = 'is grayscale', (
        'repeat it over 3 channels, e.g. np.dstack([image] * 3)')
  elif image.ndim == 3 and image.shape[-1] == 4:
    problem, advice = 'is RGBA', 'drop the alpha channel: image[..., :3]'
  elif image.ndim == 3 and image.shape[-1] == 3:
    problem, advice = 'is not uint8', (
        'scale it to 0..255, e.g. np.round(image * 255).astype(np.uint8) for'
        ' values in [0, 1]')
  else:
    problem, advice = 'is not an image', (
        'pass one (H, W, 3) image, a list of them or an (N, H, W, 3) array')
  raise ValueError(
      f'Image {index} {problem}: got {image.dtype} of shape {image.shape},'
      f' expected RGB uint8 of shape (H, W, 3); {advice}. Files read with'
      ' resunetpp_jax.data.image_io.read_image are always RGB uint8.')


def _flip_views(x: jax.Array) -> jax.Array:
  """(N, H, W, C) -> (3N, H, W, C): the images, flipped left-right, upside-down."""
  return jnp.concatenate([x, x[:, :, ::-1], x[:, ::-1]], axis=0)


def _average_flip_views(y: jax.Array) -> jax.Array:
  """Inverse of `_flip_views`, averaging the three logit maps of each image."""
  same, left_right, upside_down = jnp.split(y, 3, axis=0)
  return (same + left_right[:, :, ::-1] + upside_down[:, ::-1]) / 3.0


# One jitted function for all predictors: models of the same architecture
# (equal graph definitions) share their compiled programs.
@functools.partial(jax.jit, static_argnums=0, static_argnames='tta')
def _forward(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array,
             tta: bool) -> jax.Array:
  """uint8 (N, H, W, 3) -> foreground logits (N, H, W) of the last head."""
  model = nnx.merge(graphdef, state)
  x = images.astype(jnp.float32) / 255.0
  if tta:
    x = _flip_views(x)
  logits = model(x)[-1][..., 0]
  return _average_flip_views(logits) if tta else logits


def _forward_onnx(session, images: np.ndarray, tta: bool) -> jax.Array:
  """`_forward` with the network in an onnxruntime session (`export` format)."""
  x = images.astype(np.float32) / 255.0
  if tta:
    x = np.asarray(_flip_views(x))
  logits, = session.run(None, {session.get_inputs()[0].name: x})
  return _average_flip_views(logits[..., 0]) if tta else logits[..., 0]


class OutOfMemoryError(errors.UserError, MemoryError):
  """The device ran out of memory for a batch of predictions; what was written before is kept."""


class Predictor:
  """A trained model that maps images at any size to masks at the same size.

  Attributes:
    config: the run's configuration (image_size, filters, ...).
    step: the training step of the checkpoint, or None.
    batch_size: images per device call at most. A call of fewer images is
      padded to the smallest batch already compiled that holds them, else to
      the next power of two: a loop over single images compiles batch 1 once
      (not 8 images' work each time), a folder's last partial batch reuses the
      full one, and the shapes compiled are powers of two below batch_size
      and batch_size itself.
  """

  def __init__(self, model: nnx.Module, config: ml_collections.ConfigDict,
               step: int | None = None, batch_size: int = 8):
    model.eval()
    self._set_up(config, step, batch_size,
                 functools.partial(_forward, *nnx.split(model)))

  def _set_up(self, config: ml_collections.ConfigDict, step: int | None,
              batch_size: int, forward):
    """`forward(uint8 (N, h, w, 3), tta)` -> model-size logits (N, h, w)."""
    if config.num_classes != 1:
      raise errors.ConfigError(
          'Predictor segments one foreground class; the config has'
          f' num_classes={config.num_classes}.')
    if batch_size < 1:
      raise errors.ConfigError(
          f'batch_size must be >= 1, got {batch_size}.')
    self.config = config
    self.step = step
    self.batch_size = batch_size
    self._forward = forward
    self._compiled_batches = set()  # Padded batch sizes called so far.

  @classmethod
  def from_workdir(cls, workdir: str, checkpoint: str | int = 'best',
                   batch_size: int = 8) -> 'Predictor':
    """Loads a training workdir's config and its 'best', 'latest' or step-N model."""
    config = workdir_config.load_config(workdir)
    model, step = model_sources.restore_model(workdir, config, checkpoint)
    return cls(model, config, step, batch_size)

  @classmethod
  def pretrained(cls, path: str | None = None, batch_size: int = 8) -> 'Predictor':
    """The model shipped with the package (README, "Model card"), or a model file of `model_file.save`."""
    model, config, metadata = model_file.load(path)
    note = json.loads(metadata.get('card', '{}')).get('note')
    if note:  # What a user of this model must know (e.g. that it is an interim one), each time it is used.
      logging.warning('Model %s: %s', path or model_file.SHIPPED_WEIGHTS, note)
    step = model_file.step_of(metadata)
    return cls(model, config, step, batch_size)

  @classmethod
  def from_onnx(cls, path: str, batch_size: int = 8) -> 'Predictor':
    """Runs a `resunetpp_jax.export` ONNX file with onnxruntime on the CPU.

    The same resizing, scaling, flips and threshold as the JAX model: only the
    network runs elsewhere. Raises export_reader.ExportFileError (naming the file)
    for a missing file or one that is not such an export.
    """
    # Deferred: onnxruntime comes with the optional 'export' extra.
    from resunetpp_jax.inference import export_reader  # pylint: disable=import-outside-toplevel
    session, metadata = export_reader.load_onnx(path)
    predictor = cls.__new__(cls)  # No nnx model: the session is the network.
    predictor._set_up(export_reader.config_from_metadata(metadata),
                      int(metadata['step']) if metadata['step'] else None,
                      batch_size, functools.partial(_forward_onnx, session))
    return predictor

  @classmethod
  def from_flags(cls, workdir: str | None, model: str | None,
                 checkpoint: str | int = 'best',
                 batch_size: int = 8) -> 'Predictor':
    """The CLIs' choice: a workdir's checkpoint, a model file (.onnx from
    `export`, else a `model_file.save` file), or the shipped model."""
    if workdir and model:
      raise errors.UserError('Give --workdir or --model, not both.')
    if workdir:
      compilation_cache.enable(
          workdir_config.load_config(workdir).compilation_cache_dir)
      return cls.from_workdir(workdir, checkpoint, batch_size)
    if model and model.lower().endswith('.onnx'):
      return cls.from_onnx(model, batch_size)
    return cls.pretrained(model, batch_size)

  def _padded_batch_size(self, count: int) -> int:
    """The batch that `count` (<= batch_size) images are padded to (see the class docstring)."""
    compiled = [size for size in self._compiled_batches if count <= size <= self.batch_size]
    padded = min(compiled) if compiled else min(self.batch_size, 1 << max(0, count - 1).bit_length())
    self._compiled_batches.add(padded)
    return padded

  def _predict_batch(self, images: Sequence[np.ndarray],
                     tta: bool) -> np.ndarray:
    """Model-size logits (len(images), h, w) of at most batch_size images."""
    size = tuple(self.config.image_size)
    batch = np.zeros((self._padded_batch_size(len(images)), *size, 3), np.uint8)
    for k, image in enumerate(images):
      batch[k] = resize_image(image, size)
    try:
      # The copy to the host is where XLA's asynchronous errors surface.
      return np.asarray(self._forward(batch, tta=tta)[:len(images)], np.float32)
    except jax.errors.JaxRuntimeError as error:
      if not errors.is_out_of_memory(error):
        raise
      raise OutOfMemoryError(
          f'{errors.out_of_memory_opening(error, jax.devices()[0].platform)} predicting a'
          f' batch of {len(batch)}{" with tta (3 views each)" if tta else ""} with the {self.config.model} at'
          f' image_size={tuple(self.config.image_size)}, filters={tuple(self.config.filters)}. Lower batch_size'
          f' (now {self.batch_size}: --batch_size of predict, evaluate and video), or run on a device with more'
          ' memory. Files written before are kept.') from error

  def predict_proba(self, images, tta: bool = False):
    """Foreground probabilities at each image's original size.

    Args:
      images: one RGB uint8 (H, W, 3) image, a list of them (any sizes), or an
        (N, H, W, 3) array. A 2-D array is one grayscale image: refused,
        with how to convert it.
      tta: also predict the left-right and upside-down flipped images and
        average the three logit maps (3x the compute).

    Returns:
      float32 (H, W) for one image; (N, H, W) for an array; else a list.
    """
    if isinstance(images, np.ndarray) and images.ndim not in (2, 3, 4):
      raise ValueError(
          f'Got a {images.dtype} array of shape {images.shape}; expected one'
          ' RGB uint8 (H, W, 3) image, a list of them or an (N, H, W, 3)'
          ' array.')
    single = isinstance(images, np.ndarray) and images.ndim in (2, 3)
    batch = [images] if single else list(images)
    batch = [_check_image(image, k) for k, image in enumerate(batch)]
    results = []
    for start in range(0, len(batch), self.batch_size):
      chunk = batch[start:start + self.batch_size]
      for image, logits in zip(chunk, self._predict_batch(chunk, tta)):
        # As PraNet's MyTest.py: logits resized bilinearly, then the sigmoid.
        results.append(sigmoid(resize_map(logits, image.shape[:2])))
    if single:
      return results[0]
    if isinstance(images, np.ndarray):
      return np.stack(results) if results else np.zeros(
          images.shape[:3], np.float32)
    return results

  def predict_mask(self, images, tta: bool = False,
                   threshold: float = THRESHOLD):
    """Boolean masks (probability >= threshold) at each image's original size."""
    probabilities = self.predict_proba(images, tta)
    if isinstance(probabilities, np.ndarray):
      return probabilities >= threshold
    return [p >= threshold for p in probabilities]
