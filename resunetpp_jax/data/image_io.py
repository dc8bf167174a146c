"""Reads images and masks of any common format into one canonical form.

Images become RGB uint8 (H, W, 3) and masks bool (H, W), whatever the file
holds (grayscale, palette, RGBA, 16-bit, float TIFF). TIFFs go through
tifffile: Pillow refuses the official CVC-ClinicDB TIFFs (3 samples tagged
BlackIsZero) and OpenCV silently reads them as grayscale. Everything else
goes through Pillow, which, unlike OpenCV, raises on truncated files instead
of returning a partial image. EXIF orientation is ignored, so image and mask
keep the same pixel grid.

Every reader checks the size a file declares in its header against one limit,
--max_pixels, BEFORE decoding: a small file declaring a huge image (a
decompression bomb: a 60000x60000 zlib-tiled TIFF is 10.7 MB on disk and
10 GiB decoded) is refused with a message instead of exhausting memory. The
flag is defined here, so every tool that reads images (predict, evaluate,
data.prepare, main) accepts it; from Python, set `flags.FLAGS.max_pixels`.
"""
import functools
import os

from absl import flags
import cv2
import numpy as np
from PIL import Image
import tifffile

from resunetpp_jax import errors

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')
MASK_THRESHOLD = 128
# Mask pixels between these values (inclusive) are neither near 0 nor near
# 255: JPEG ringing and noise hardly reach them (none in the 1000 Kvasir-SEG
# masks, at most 0.02% of the pixels of a CVC-ClinicDB mask).
MID_GREY = (64, 191)
# A mask with more mid-grey pixels than this fraction is a soft mask (e.g. a
# probability map or a gradient), not a binary one with noisy edges.
NOT_BINARY_FRACTION = 0.01

_TIFF_EXTENSIONS = ('.tif', '.tiff')

flags.DEFINE_integer(
    'max_pixels', 100_000_000,
    'Largest image (width x height) read from a file: larger ones are refused'
    ' from their header, before decoding, so that a small file declaring a'
    ' huge image cannot exhaust memory.', lower_bound=1)
# The limit above replaces Pillow's own check, which warns at 89 and refuses
# at 179 megapixels inside Image.open, before `max_pixels` can be applied.
Image.MAX_IMAGE_PIXELS = None


class ImageReadError(errors.UserError, ValueError):
  """A file could not be read as an image or mask."""


def _fail(path, problem: str) -> ImageReadError:
  return ImageReadError(
      f'{os.fspath(path)}: {problem}. Replace the file with a good copy (e.g.'
      ' download it again) or remove the image/mask pair from the folder.')


def max_pixels() -> int:
  """--max_pixels; its default where flags are not parsed (Python API)."""
  return flags.FLAGS['max_pixels'].value


def check_pixels(path, width: int, height: int) -> None:
  """Raises ImageReadError when a `width` x `height` image exceeds --max_pixels.

  Readers call it with the size from the file's header, before decoding.
  """
  pixels = width * height
  if pixels > max_pixels():
    raise ImageReadError(
        f'{os.fspath(path)} declares a {width}x{height} image ({pixels:,}'
        f' pixels, {pixels * 3 / 2**30:.1f} GiB as RGB), more than the limit of'
        f' {max_pixels():,} pixels, so it was not decoded. If the image is'
        f' genuine, raise the limit with --max_pixels={pixels}; otherwise'
        ' remove the file.')


def _read_tiff(path) -> tuple[np.ndarray, str | None]:
  with tifffile.TiffFile(path) as tiff:
    series = tiff.series[0]
    page = series.keyframe
    check_pixels(path, page.imagewidth, page.imagelength)
    # Only the first image of a stack: the limit bounds what is decoded.
    array = series.asarray(key=0)
    axes = page.axes
  # Put samples last: 'YX', 'YXS', 'SYX' (a volume keeps its first slice).
  while len(axes) > 2 and axes[0] not in 'YXS':
    array, axes = array[0], axes[1:]
  if axes == 'SYX':
    array, axes = np.moveaxis(array, 0, -1), 'YXS'
  if axes not in ('YX', 'YXS'):
    raise _fail(path, f'unsupported TIFF layout {axes!r} (shape {array.shape})')
  return array, None


def _read_with_pillow(path) -> tuple[np.ndarray, str | None]:
  with Image.open(path) as image:  # Reads the header only.
    check_pixels(path, *image.size)
    image.load()  # Decodes now, so truncated files raise here.
    if image.mode in ('L', 'LA', 'RGB', 'RGBA') or image.mode.startswith('I'):
      return np.asarray(image), None
    has_alpha = 'A' in image.mode or 'transparency' in image.info
    converted = image.convert('RGBA' if has_alpha else 'RGB')
    return np.asarray(converted), f'{image.mode} mode'


def _read_array(path) -> tuple[np.ndarray, list[str]]:
  """Returns the pixels as stored (2-D or (H, W, C), any dtype) and notes."""
  if not os.path.isfile(path):
    raise _fail(path, 'file not found')
  try:
    if os.fspath(path).lower().endswith(_TIFF_EXTENSIONS):
      array, note = _read_tiff(path)
    else:
      array, note = _read_with_pillow(path)
  except ImageReadError:
    raise
  except Exception as e:  # Decoders raise many types for a broken file.
    raise _fail(path, f'cannot decode ({type(e).__name__}: {e}); the file is'
                ' corrupt, truncated or not an image') from e
  if array.ndim not in (2, 3) or min(array.shape[:2]) == 0:
    raise _fail(path, f'unsupported pixel array of shape {array.shape}')
  return array, [note] if note else []


def _to_uint8(array: np.ndarray, path, notes: list[str]) -> np.ndarray:
  """Scales any supported sample type to 0..255."""
  if array.dtype == np.uint8:
    return array
  if array.dtype == np.bool_:
    return array.astype(np.uint8) * 255
  if array.dtype in (np.uint16, np.int32, np.uint32, np.int64):
    if array.min() < 0 or array.max() > 65535:
      raise _fail(path, f'integer samples outside 0..65535 ({array.dtype})')
    notes.append('16-bit')
    return np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
  if np.issubdtype(array.dtype, np.floating):
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
      raise _fail(path, 'floating-point samples outside [0, 1]')
    notes.append('floating-point')
    return np.round(array.astype(np.float32) * 255.0).astype(np.uint8)
  raise _fail(path, f'unsupported sample type {array.dtype}')


def inspect_image(path) -> tuple[np.ndarray, tuple[str, ...]]:
  """Like `read_image`, plus notes on what was converted (e.g. 'grayscale')."""
  array, notes = _read_array(path)
  array = _to_uint8(array, path, notes)
  if array.ndim == 2:
    array = array[:, :, None]
  channels = array.shape[-1]
  if channels not in (1, 2, 3, 4):
    raise _fail(path, f'{channels} channels, expected 1 to 4')
  if channels in (1, 2):
    notes.append('grayscale')
    array = np.repeat(array[:, :, :1], 3, axis=-1)
  if channels in (2, 4):
    notes.append('alpha dropped')
  return np.ascontiguousarray(array[:, :, :3]), tuple(notes)


def read_image(path) -> np.ndarray:
  """Returns the image at `path` as RGB uint8 (H, W, 3).

  Grayscale is repeated over 3 channels, alpha is dropped, 16-bit and float
  samples are scaled to 8 bits, palette/CMYK/other modes become RGB.

  Raises:
    ImageReadError: the file is missing, corrupt, truncated or unsupported.
  """
  return inspect_image(path)[0]


def inspect_mask(path) -> tuple[np.ndarray, tuple[str, ...]]:
  """Like `read_mask`, plus notes: 'label map' (0/1 values), 'off values'
  (values other than 0 and the maximum, e.g. JPEG ringing, thresholded),
  'not binary' (over NOT_BINARY_FRACTION of the pixels mid-grey, e.g. a
  probability map or a gradient: thresholded, but hardly a mask)."""
  array, notes = _read_array(path)
  if array.ndim == 3:
    colour_channels = {1: 1, 2: 1, 3: 3, 4: 3}.get(array.shape[-1])
    if colour_channels is None:
      raise _fail(path, f'{array.shape[-1]} channels, expected 1 to 4')
    # Elementwise maximum: much faster than max(axis=-1) on (H, W, C).
    array = functools.reduce(
        np.maximum, [array[:, :, c] for c in range(colour_channels)])
  if array.dtype != np.bool_ and array.max() == 1 and array.min() == 0:
    return array == 1, tuple(notes + ['label map'])
  array = _to_uint8(array, path, notes)
  low, high = MID_GREY
  mid_grey = np.count_nonzero((array >= low) & (array <= high))
  if mid_grey > NOT_BINARY_FRACTION * array.size:
    notes.append('not binary')
  elif np.any((array != 0) & (array != 255)):
    notes.append('off values')
  return array >= MASK_THRESHOLD, tuple(notes)


def read_mask(path) -> np.ndarray:
  """Returns the mask at `path` as bool (H, W): True where the polyp is.

  A pixel is foreground when any colour channel is >= 128 (after scaling to 8
  bits): JPEG masks ring around 0/255 and some CVC-ClinicDB masks carry low
  noise. Masks whose only values are 0 and 1 (label maps) use 1 as foreground.
  An alpha channel is ignored.

  Raises:
    ImageReadError: the file is missing, corrupt, truncated or unsupported.
  """
  return inspect_mask(path)[0]


def encode_png(array: np.ndarray) -> bytes:
  """Losslessly encodes uint8 (H, W), (H, W, 1) or RGB (H, W, 3) as PNG."""
  if array.ndim == 3 and array.shape[-1] == 3:
    array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
  ok, encoded = cv2.imencode('.png', array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
  if not ok:
    raise ValueError(f'PNG encoding failed for an array of shape {array.shape}')
  return encoded.tobytes()

