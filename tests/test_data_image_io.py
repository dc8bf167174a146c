"""image_io: every supported file kind decodes to RGB uint8 / bool masks."""
import cv2
import numpy as np
from PIL import Image
import pytest
import tifffile

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
  assert notes == ('off values',)
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
