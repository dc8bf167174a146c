"""image_io: every supported file kind decodes to RGB uint8 / bool masks."""
import struct
import zlib

from absl.testing import flagsaver
import cv2
import numpy as np
from PIL import Image
from PIL import ImageFile
import pytest
import tifffile

from helpers.damage import write_tiff_declaring
from resunetpp_jax import errors
from resunetpp_jax.data import image_io


def _rgb(height=12, width=17, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3),
                                              dtype=np.uint8)


@pytest.mark.parametrize('ext', ['png', 'bmp', 'tif', 'tiff'])
def test_lossless_formats_round_trip_rgb(tmp_path, ext):
  image = _rgb()
  path = tmp_path / f'a.{ext}'
  if ext.startswith('tif'):
    tifffile.imwrite(path, image, photometric='rgb')
  else:
    Image.fromarray(image).save(path)
  np.testing.assert_array_equal(image_io.read_image(path), image)


def test_jpeg_matches_pillow_decode(tmp_path):
  path = tmp_path / 'a.jpg'
  Image.fromarray(_rgb(32, 40)).save(path, quality=90)
  decoded = image_io.read_image(path)
  assert decoded.shape == (32, 40, 3) and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, np.asarray(Image.open(path)))


def test_official_style_tiff_keeps_colour(tmp_path):
  # 3-sample TIFF tagged BlackIsZero (minisblack), as CVC-ClinicDB ships:
  # Pillow refuses it and OpenCV reads one channel three times.
  image = _rgb(16, 20)
  path = tmp_path / '1.tif'
  tifffile.imwrite(path, image, photometric='minisblack', planarconfig='contig')
  np.testing.assert_array_equal(image_io.read_image(path), image)


def test_planar_tiff_moves_samples_last(tmp_path):
  image = _rgb(10, 14)
  path = tmp_path / 'planar.tif'
  tifffile.imwrite(path, np.moveaxis(image, -1, 0), photometric='rgb',
                   planarconfig='separate')
  np.testing.assert_array_equal(image_io.read_image(path), image)


def test_conversions_grayscale_alpha_16bit_palette_float(tmp_path):
  gray = np.arange(12 * 17, dtype=np.uint8).reshape(12, 17)
  Image.fromarray(gray).save(tmp_path / 'gray.png')
  image, notes = image_io.inspect_image(tmp_path / 'gray.png')
  np.testing.assert_array_equal(image, np.repeat(gray[:, :, None], 3, -1))
  assert notes == ('grayscale',)

  rgba = np.dstack([_rgb(), np.full((12, 17), 7, np.uint8)])
  Image.fromarray(rgba).save(tmp_path / 'rgba.png')
  image, notes = image_io.inspect_image(tmp_path / 'rgba.png')
  np.testing.assert_array_equal(image, rgba[:, :, :3])
  assert notes == ('alpha dropped',)

  deep = np.array([[0, 257, 65535, 32896]], np.uint16)  # -> 0, 1, 255, 128
  cv2.imwrite(str(tmp_path / 'deep.png'), deep)
  image, notes = image_io.inspect_image(tmp_path / 'deep.png')
  np.testing.assert_array_equal(image[0, :, 0], [0, 1, 255, 128])
  assert notes == ('16-bit', 'grayscale')

  deep_rgb = np.stack([deep, deep // 2, deep // 4], -1)
  tifffile.imwrite(tmp_path / 'deep.tif', deep_rgb, photometric='rgb')
  image = image_io.read_image(tmp_path / 'deep.tif')
  np.testing.assert_array_equal(
      image, np.round(deep_rgb / 257.0).astype(np.uint8))

  palette = Image.fromarray(_rgb()).convert('P')
  palette.save(tmp_path / 'palette.png')
  image, notes = image_io.inspect_image(tmp_path / 'palette.png')
  np.testing.assert_array_equal(image, np.asarray(palette.convert('RGB')))
  assert notes == ('P mode',)

  unit = np.array([[0.0, 0.5, 1.0]], np.float32)
  tifffile.imwrite(tmp_path / 'float.tif', unit)
  np.testing.assert_array_equal(
      image_io.read_image(tmp_path / 'float.tif')[0, :, 1], [0, 128, 255])


def test_masks_threshold_at_128_on_any_channel(tmp_path):
  values = np.array([[0, 127, 128, 255, 12, 200]], np.uint8)
  Image.fromarray(values).save(tmp_path / 'gray.png')
  mask, notes = image_io.inspect_mask(tmp_path / 'gray.png')
  np.testing.assert_array_equal(mask, [[False, False, True, True, False, True]])
  assert notes == ('not binary',)  # 127 and 128: 2 of 6 pixels mid-grey.
  assert mask.dtype == np.bool_

  rgb = np.zeros((1, 3, 3), np.uint8)
  rgb[0, 1, 0] = 200  # A palette-style red label counts as foreground.
  rgb[0, 2] = 255
  Image.fromarray(rgb).save(tmp_path / 'rgb.png')
  np.testing.assert_array_equal(image_io.read_mask(tmp_path / 'rgb.png'),
                                [[False, True, True]])

  clean = np.array([[0, 255]], np.uint8)
  Image.fromarray(clean).save(tmp_path / 'clean.png')
  assert image_io.inspect_mask(tmp_path / 'clean.png')[1] == ()


def test_jpeg_mask_ringing_is_removed(tmp_path):
  mask = np.zeros((64, 64), np.uint8)
  mask[16:48, 20:40] = 255
  path = tmp_path / 'mask.jpg'
  Image.fromarray(np.dstack([mask] * 3)).save(path, quality=75)
  np.testing.assert_array_equal(image_io.read_mask(path), mask > 0)


def test_label_map_masks_use_one_as_foreground(tmp_path):
  labels = np.array([[0, 1, 1, 0]], np.uint8)
  Image.fromarray(labels).save(tmp_path / 'labels.png')
  mask, notes = image_io.inspect_mask(tmp_path / 'labels.png')
  np.testing.assert_array_equal(mask, [[False, True, True, False]])
  assert notes == ('label map',)


@pytest.mark.parametrize('ext', ['jpg', 'png', 'tif'])
def test_truncated_files_raise_naming_the_file(tmp_path, ext):
  path = tmp_path / f'broken.{ext}'
  image = _rgb(64, 64)
  if ext == 'tif':
    tifffile.imwrite(path, image, photometric='rgb')
  else:
    Image.fromarray(image).save(path)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(image_io.ImageReadError, match='broken') as error:
    image_io.read_image(path)
  assert 'remove the image/mask pair' in str(error.value)


def test_not_an_image_and_missing_file_raise(tmp_path):
  (tmp_path / 'text.png').write_text('hello')
  with pytest.raises(image_io.ImageReadError, match='text.png'):
    image_io.read_mask(tmp_path / 'text.png')
  with pytest.raises(image_io.ImageReadError, match='file not found'):
    image_io.read_image(tmp_path / 'absent.png')


def _write_png_declaring(path, width, height):
  """An RGB PNG whose IHDR declares width x height, with no pixel data."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data)))
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(
      b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)) +
                   chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


@pytest.fixture
def decoders(monkeypatch):
  """Records every call of the TIFF and Pillow decoders instead of decoding."""
  calls = []
  def record(*args, **kwargs):
    calls.append(args[0])
    raise RuntimeError('decoder called')
  monkeypatch.setattr(tifffile.TiffPageSeries, 'asarray', record)
  monkeypatch.setattr(tifffile.TiffPage, 'asarray', record)
  monkeypatch.setattr(ImageFile.ImageFile, 'load', record)
  return calls


@pytest.mark.parametrize('ext', ['tif', 'png'])
def test_a_file_declaring_a_huge_image_is_refused_before_decoding(
    tmp_path, decoders, ext):
  path = tmp_path / f'bomb.{ext}'
  if ext == 'tif':
    write_tiff_declaring(path, 60000, 60000)
    assert path.stat().st_size < 100_000
  else:
    _write_png_declaring(path, 60000, 60000)
  for read in (image_io.read_image, image_io.read_mask):
    with pytest.raises(image_io.ImageReadError) as error:
      read(path)
    assert str(error.value) == (
        f'{path} declares a 60000x60000 image (3,600,000,000 pixels, 10.1 GiB'
        ' as RGB), more than the limit of 100,000,000 pixels, so it was not'
        ' decoded. If the image is genuine, raise the limit with'
        ' --max_pixels=3600000000; otherwise remove the file.')
  assert not decoders
  assert isinstance(error.value, errors.UserError)
  # The limit alone stopped it: raised, the decoder is reached.
  with flagsaver.flagsaver(max_pixels=3_600_000_000):
    with pytest.raises(image_io.ImageReadError, match='decoder called'):
      image_io.read_image(path)
  assert len(decoders) == 1


@pytest.mark.parametrize('ext', ['jpg', 'png', 'tif'])
def test_the_pixel_limit_is_width_times_height(tmp_path, ext):
  path = tmp_path / f'a.{ext}'
  if ext == 'tif':
    tifffile.imwrite(path, _rgb(12, 17), photometric='rgb')
  else:
    Image.fromarray(_rgb(12, 17)).save(path)
  with flagsaver.flagsaver(max_pixels=12 * 17):
    assert image_io.read_image(path).shape == (12, 17, 3)
  with flagsaver.flagsaver(max_pixels=12 * 17 - 1):
    with pytest.raises(image_io.ImageReadError,
                       match='declares a 17x12 image'):
      image_io.read_image(path)


def test_a_stack_decodes_only_its_first_image(tmp_path):
  stack = np.stack([_rgb(12, 17, seed=k) for k in range(3)])
  tifffile.imwrite(tmp_path / 'stack.tif', stack, photometric='rgb')
  np.testing.assert_array_equal(image_io.read_image(tmp_path / 'stack.tif'),
                                stack[0])


def test_a_soft_mask_is_noted_as_not_binary(tmp_path):
  gradient = np.tile(np.arange(256, dtype=np.uint8), (8, 1))
  Image.fromarray(gradient).save(tmp_path / 'gradient.png')
  mask, notes = image_io.inspect_mask(tmp_path / 'gradient.png')
  assert notes == ('not binary',)
  np.testing.assert_array_equal(mask, gradient >= 128)
  # Noisy edges, as JPEG ringing or CVC-ClinicDB's low noise leave them:
  # binary still (1 of 1024 pixels mid-grey is under 1%).
  noisy = np.zeros((8, 128), np.uint8)
  noisy[:, 64:] = 255
  noisy[0, 60:63] = (12, 100, 240)
  Image.fromarray(noisy).save(tmp_path / 'noisy.png')
  assert image_io.inspect_mask(tmp_path / 'noisy.png')[1] == ('off values',)


def test_png_encoding_is_lossless():
  image = _rgb()
  data = image_io.encode_png(image)
  decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  np.testing.assert_array_equal(decoded[:, :, ::-1], image)
  mask = (image[:, :, 0] > 127).astype(np.uint8) * 255
  mask_png = image_io.encode_png(mask)
  np.testing.assert_array_equal(
      cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_UNCHANGED),
      mask)


def test_real_clinicdb_tiffs_are_colour_and_match_the_pngs(shared_dir):
  data = shared_dir / 'data'
  for frame in (1, 13, 24):
    image = image_io.read_image(data / 'CVC-ClinicDB-tif' / 'Original' /
                                f'{frame}.tif')
    assert image.shape == (288, 384, 3)
    assert np.abs(image[:, :, 0].astype(int) - image[:, :, 2]).mean() > 10
    np.testing.assert_array_equal(
        image, image_io.read_image(data / 'CVC-ClinicDB' / 'images' /
                                   f'{frame}.png'))
    np.testing.assert_array_equal(
        image_io.read_mask(data / 'CVC-ClinicDB-tif' / 'Ground Truth' /
                           f'{frame}.tif'),
        image_io.read_mask(data / 'CVC-ClinicDB' / 'masks' / f'{frame}.png'))
