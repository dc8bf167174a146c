"""The model behind the app and the HTTP API: one Predictor, compiled once, behind a bounded queue.

`SegmentService` decodes uploaded bytes through `data.image_io` (the pixel-bomb limit included), runs the model
with at most `concurrency` calls at once and `queue_size` more waiting, and refuses the rest with `BusyError`.
Uploads are written to a private temporary folder only for as long as they are decoded.
"""
import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import threading

import numpy as np

from resunetpp_jax import errors
from resunetpp_jax import visualize
from resunetpp_jax.data import image_io
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.inference import video
from resunetpp_jax.runtime import outputs

# The extensions an upload may carry; the name only picks the decoder, the bytes are what is checked.
IMAGE_EXTENSIONS = image_io.IMAGE_EXTENSIONS
VIDEO_EXTENSIONS = video.VIDEO_EXTENSIONS


class UploadError(errors.UserError, ValueError):
  """An upload the app refuses; its message says which file and why (HTTP 400/413/415)."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


class BusyError(errors.UserError, RuntimeError):
  """The queue is full (HTTP 503): the client should retry later."""


def safe_name(name: str | None, default: str = 'upload') -> str:
  """The file name of an upload without any folder part or odd characters: '../../x.png' -> 'x.png'."""
  base = os.path.basename((name or '').replace('\\', '/'))
  base = re.sub(r'[^A-Za-z0-9._-]', '_', base).lstrip('.')
  return base[:120] or default


def check_upload(name: str | None, size: int, max_bytes: int, kinds=IMAGE_EXTENSIONS) -> str:
  """The upload's safe name, or UploadError naming it: empty, too large or of an unknown type."""
  shown = name or '(no name)'
  if name and ('/' in name or '\\' in name or name.startswith('.')):
    raise UploadError(f'{shown}: a file name with a folder part (or starting with a dot) is refused; send a'
                      ' plain name such as polyp.png.')
  safe = safe_name(name)
  if size == 0:
    raise UploadError(f'{shown}: the file is empty (0 bytes).')
  if size > max_bytes:
    raise UploadError(f'{shown}: {size:,} bytes is over the limit of {max_bytes:,} bytes'
                      ' (--max_upload_mb).', status=413)
  if not safe.lower().endswith(tuple(kinds)):
    raise UploadError(f'{shown}: not a supported file type (expected one of {", ".join(kinds)}).', status=415)
  return safe


@dataclasses.dataclass
class Result:
  """One image's prediction: its probabilities are kept so that a new threshold needs no model run."""
  name: str
  image: np.ndarray  # RGB uint8 (H, W, 3)
  probabilities: np.ndarray  # float32 (H, W)

  def mask(self, threshold: float = predictor_lib.THRESHOLD) -> np.ndarray:
    return self.probabilities >= threshold

  def numbers(self, threshold: float = predictor_lib.THRESHOLD) -> dict:
    return numbers(self.probabilities, threshold, self.name)


def numbers(probabilities: np.ndarray, threshold: float, name: str = '') -> dict:
  """What the API's ?format=json answers: polyps (8-connected components), area and boxes at `threshold`."""
  mask = probabilities >= threshold
  boxes = video.connected_boxes(mask)
  height, width = mask.shape
  area = int(np.count_nonzero(mask))
  return {'name': name, 'width': int(width), 'height': int(height), 'threshold': float(threshold),
          'polyps': len(boxes), 'area_pixels': area, 'area_fraction': area / float(height * width),
          'boxes': boxes, 'max_probability': float(probabilities.max())}


def heat_map(probabilities: np.ndarray) -> np.ndarray:
  """RGB uint8 picture of the probabilities (blue 0 .. red 1), same size."""
  import cv2  # pylint: disable=import-outside-toplevel
  values = np.round(probabilities * 255).astype(np.uint8)
  return cv2.cvtColor(cv2.applyColorMap(values, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def mask_png(mask: np.ndarray) -> bytes:
  """The mask as `predict` writes it: PNG, 0 background, 255 polyp, at the image's size."""
  return image_io.encode_png(np.asarray(mask, np.uint8) * 255)


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  return visualize.overlay(image, mask)


class SegmentService:
  """The shared Predictor with a bounded queue: `concurrency` model calls at once, `queue_size` more waiting."""

  def __init__(self, predictor: predictor_lib.Predictor, *, concurrency: int = 1, queue_size: int = 16,
               max_upload_bytes: int = 20 << 20, max_video_bytes: int = 200 << 20, tta: bool = False,
               queue_timeout_s: float = 60.0):
    if concurrency < 1 or queue_size < 0:
      raise errors.ConfigError(f'concurrency must be >= 1 and queue_size >= 0, got {concurrency}, {queue_size}.')
    self.predictor = predictor
    self.concurrency = concurrency
    self.queue_size = queue_size
    self.max_upload_bytes = max_upload_bytes
    self.max_video_bytes = max_video_bytes
    self.tta = tta
    self.queue_timeout_s = queue_timeout_s
    self._running = threading.BoundedSemaphore(concurrency)
    self._admitted = threading.BoundedSemaphore(concurrency + queue_size)
    self.ready = threading.Event()
    self.upload_root = tempfile.mkdtemp(prefix='resunetpp_app_')

  def close(self):
    shutil.rmtree(self.upload_root, ignore_errors=True)

  def warm_up(self):
    """Compiles the model for one image, so that the first request does not wait for it; then `ready`."""
    self.predictor.predict_proba(np.zeros((64, 64, 3), np.uint8), self.tta)
    self.ready.set()

  @contextlib.contextmanager
  def slot(self):
    """Holds a model slot; BusyError when concurrency + queue_size requests are already in."""
    if not self._admitted.acquire(blocking=False):
      raise BusyError(f'The server is busy: {self.concurrency} requests running and {self.queue_size} waiting'
                      ' (--concurrency, --queue_size). Retry later.')
    try:
      if not self._running.acquire(timeout=self.queue_timeout_s):
        raise BusyError(f'Waited {self.queue_timeout_s:.0f} s for the model; retry later.')
      try:
        yield
      finally:
        self._running.release()
    finally:
      self._admitted.release()

  @contextlib.contextmanager
  def temporary_file(self, name: str, data: bytes | None = None, source: str | None = None):
    """A private folder holding the upload as `name` (a safe name), removed on exit."""
    folder = tempfile.mkdtemp(dir=self.upload_root)
    path = os.path.join(folder, safe_name(name))
    try:
      if source is not None:
        outputs.write_with(path, lambda temporary: shutil.copyfile(source, temporary))
      else:
        outputs.write_bytes(path, data)
      yield path
    finally:
      shutil.rmtree(folder, ignore_errors=True)

  def decode(self, name: str | None, data: bytes) -> tuple[str, np.ndarray]:
    """(safe name, RGB uint8 image) of uploaded bytes, or UploadError saying why not."""
    safe = check_upload(name, len(data), self.max_upload_bytes)
    with self.temporary_file(safe, data) as path:
      try:
        image = image_io.read_image(path)
      except image_io.ImageReadError as e:
        # The temporary path means nothing to the user: name the upload instead.
        message = str(e).replace(path, name or safe).split('. Replace the file')[0].rstrip('.')
        status = 415 if 'cannot decode' in message else 413 if 'declares' in message else 400
        raise UploadError(f'{message}.', status=status) from e
    return safe, image

  def decode_file(self, path: str, shown_name: str | None = None) -> tuple[str, np.ndarray]:
    """`decode` for a file already on disk (what Gradio hands over)."""
    size = os.path.getsize(path)
    if size > self.max_upload_bytes:
      check_upload(shown_name or path, size, self.max_upload_bytes)
    with open(path, 'rb') as f:
      return self.decode(shown_name or os.path.basename(path), f.read())

  def predict(self, name: str, image: np.ndarray) -> Result:
    with self.slot():
      probabilities = self.predictor.predict_proba(image, self.tta)
    return Result(name, image, probabilities)

  def segment_bytes(self, name: str | None, data: bytes) -> Result:
    safe, image = self.decode(name, data)
    return self.predict(safe, image)

  def segment_video(self, path: str, shown_name: str, output_dir: str) -> video.VideoResult:
    """`predict`'s overlay video and CSV of the video at `path`; UploadError for a too large or unreadable one."""
    size = os.path.getsize(path)
    safe = check_upload(shown_name, size, self.max_video_bytes, VIDEO_EXTENSIONS)
    with self.temporary_file(safe, source=path) as copy:
      with self.slot():
        try:
          return video.segment_video(self.predictor, copy, output_dir, tta=self.tta)
        except errors.UserError as e:
          raise UploadError(str(e).replace(copy, shown_name)) from e


SHIPPED = 'shipped model'


class Models:
  """The server's model (which the API serves) and, on demand, others picked in the page: each loaded once.

  A source is SHIPPED, a model file (.safetensors or .onnx) or a training workdir with 'best' or 'latest'.
  """

  def __init__(self, default: SegmentService, default_name: str, batch_size: int = 8):
    self.default = default
    self.default_name = default_name
    self.batch_size = batch_size
    self._loaded = {default_name: default}
    self._lock = threading.Lock()

  def get(self, source: str | None, checkpoint: str = 'best') -> tuple[str, SegmentService]:
    """(name, service) of a source picked in the page; UserError saying why it cannot be loaded."""
    source = (source or '').strip()
    if not source or source == SHIPPED or source == self.default_name:
      return self.default_name, self.default
    path = os.path.expanduser(source)
    if os.path.isdir(path):
      key, workdir, model = f'{path}@{checkpoint}', path, None
    elif os.path.isfile(path) and path.lower().endswith(('.safetensors', '.onnx')):
      key, workdir, model = path, None, path
    else:
      raise errors.UserError(f'{source}: expected a model file (.safetensors, .onnx) or a training workdir'
                             ' folder, on the server.')
    with self._lock:
      if key not in self._loaded:
        predictor = predictor_lib.Predictor.from_flags(workdir, model, checkpoint, self.batch_size)
        base = self.default
        loaded = SegmentService(predictor, concurrency=base.concurrency, queue_size=base.queue_size,
                                max_upload_bytes=base.max_upload_bytes, max_video_bytes=base.max_video_bytes,
                                tta=base.tta)
        loaded.upload_root, loaded.ready = base.upload_root, base.ready  # One temporary folder to clean.
        # One model call at a time across all models: they share the device.
        loaded._running, loaded._admitted = base._running, base._admitted  # pylint: disable=protected-access
        self._loaded[key] = loaded
      return key, self._loaded[key]
