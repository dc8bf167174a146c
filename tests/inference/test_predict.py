"""predictor_lib.Predictor and the predict command on a trained run and on real files."""
import os
import re

import jax
import numpy as np
from PIL import Image
import pytest
import tifffile

from helpers.tiny_runs import TRAINED_STEPS as TRAIN_STEPS
from resunetpp_jax import errors
from resunetpp_jax import visualize
from resunetpp_jax.data import augment
from resunetpp_jax.data import image_io
from resunetpp_jax.inference import image_files
from resunetpp_jax.inference import model_sources
from resunetpp_jax.inference import predictor as predictor_lib

MODEL_SIZE = (32, 32)


@pytest.fixture(scope='module')
def predictor(trained_workdir) -> predictor_lib.Predictor:  # pylint: disable=redefined-outer-name
  """Batches of 2, so that a few images span several padded device calls."""
  return predictor_lib.Predictor.from_workdir(trained_workdir, batch_size=2)


def _random_image(height: int, width: int, seed: int) -> np.ndarray:
  """Smooth random colours: a real resize differs from nearest neighbour."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
  image = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize(
      (width, height), Image.BILINEAR))
  return np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(
      np.uint8)


def _read_png(path) -> np.ndarray:
  with Image.open(path) as image:
    return np.asarray(image)


@pytest.mark.parametrize('size', [(100, 90), (20, 24), (20, 100), MODEL_SIZE])
def test_resize_image_matches_the_training_pipeline(size):
  image = _random_image(*size, seed=0)
  expected, _ = augment.resize_pair(image, np.zeros(size, np.uint8),
                                    MODEL_SIZE)
  np.testing.assert_array_equal(predictor_lib.resize_image(image, MODEL_SIZE),
                                expected)


def test_from_workdir_restores_the_best_checkpoint(predictor):
  assert predictor.step == TRAIN_STEPS
  assert tuple(predictor.config.image_size) == MODEL_SIZE


def test_predictions_come_back_at_each_original_size(predictor):
  sizes = [(128, 160), MODEL_SIZE, (40, 20), (70, 90), (33, 47)]
  images = [_random_image(*size, seed=k) for k, size in enumerate(sizes)]
  batched = predictor.predict_proba(images)
  assert [p.shape for p in batched] == sizes
  for image, probabilities in zip(images, batched):
    assert probabilities.dtype == np.float32
    assert 0.0 <= probabilities.min() and probabilities.max() <= 1.0
    # Alone or in a padded batch: the same numbers (BatchNorm in eval mode).
    np.testing.assert_allclose(predictor.predict_proba(image), probabilities,
                               atol=1e-6)
  stacked = predictor.predict_proba(np.stack([images[0]] * 3))
  assert stacked.shape == (3, 128, 160)
  np.testing.assert_allclose(stacked[2], batched[0], atol=1e-6)


@pytest.mark.slow
def test_short_calls_pad_to_a_small_batch_and_later_calls_reuse_the_compiled_ones(trained_workdir):
  """One image a call must not cost a batch of 8 (the shipped model takes 1.6 s an image on 2 CPU cores)."""
  predictor = predictor_lib.Predictor.from_workdir(trained_workdir, batch_size=8)
  forward, shapes = predictor._forward, []  # pylint: disable=protected-access
  def recording_forward(images, tta):
    shapes.append(images.shape[0])
    return forward(images, tta=tta)
  predictor._forward = recording_forward  # pylint: disable=protected-access
  images = [_random_image(40, 50, seed=k) for k in range(8)]
  alone = [predictor.predict_proba(image) for image in images[:2]]
  for count in (3, 2, 8, 5, 1):
    predictor.predict_proba(images[:count])
  assert shapes == [1, 1, 4, 4, 8, 8, 1]
  np.testing.assert_allclose(np.stack(alone), np.stack(predictor.predict_proba(images)[:2]), atol=1e-6)


def _logits(probabilities):
  return np.log(probabilities / (1 - probabilities))


def test_logits_are_resized_back_then_the_sigmoid_then_the_threshold(predictor):
  """PraNet's MyTest.py order, which the published tables' numbers follow."""
  image = _random_image(96, 80, seed=1)
  at_model_size = predictor.predict_proba(
      predictor_lib.resize_image(image, MODEL_SIZE))
  expected = 1 / (1 + np.exp(-predictor_lib.resize_map(_logits(at_model_size), (96, 80))))
  probabilities = predictor.predict_proba(image)
  np.testing.assert_allclose(probabilities, expected, atol=1e-5)
  resized_probabilities = predictor_lib.resize_map(at_model_size, (96, 80))
  assert np.abs(resized_probabilities - expected).max() > 1e-4  # The order matters.
  np.testing.assert_array_equal(predictor.predict_mask(image),
                                probabilities >= 0.5)
  assert predictor.predict_mask([image])[0].dtype == bool


def test_tta_averages_the_logits_of_the_flipped_predictions(predictor):
  image = _random_image(*MODEL_SIZE, seed=2)
  plain = _logits(predictor.predict_proba(image))
  left_right = _logits(predictor.predict_proba(image[:, ::-1].copy()))[:, ::-1]
  upside_down = _logits(predictor.predict_proba(image[::-1].copy()))[::-1]
  np.testing.assert_allclose(predictor.predict_proba(image, tta=True),
                             1 / (1 + np.exp(-(plain + left_right + upside_down) / 3)), atol=1e-5)


@pytest.mark.parametrize('images, message', [
    (np.zeros((64, 64), np.uint8),
     'Image 0 is grayscale: got uint8 of shape (64, 64), expected RGB uint8 of'
     ' shape (H, W, 3); repeat it over 3 channels, e.g. np.dstack([image] *'
     ' 3).'),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 4), np.uint8)],
     'Image 1 is RGBA: got uint8 of shape (8, 8, 4), expected RGB uint8 of'
     ' shape (H, W, 3); drop the alpha channel: image[..., :3].'),
    (np.zeros((0, 0, 3), np.uint8),
     'Image 0 is empty: got uint8 of shape (0, 0, 3), expected RGB uint8'),
    (np.zeros((8, 8, 3), np.float32),
     'Image 0 is not uint8: got float32 of shape (8, 8, 3), expected RGB'
     ' uint8 of shape (H, W, 3); scale it to 0..255'),
    (np.zeros(64, np.uint8),
     'Got a uint8 array of shape (64,); expected one RGB uint8 (H, W, 3)'
     ' image, a list of them or an (N, H, W, 3) array.'),
])
def test_predict_proba_says_what_it_got_and_what_it_expects(
    predictor, images, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    predictor.predict_proba(images)


def test_parse_checkpoint():
  assert model_sources.parse_checkpoint('best') == 'best'
  assert model_sources.parse_checkpoint('latest') == 'latest'
  assert model_sources.parse_checkpoint('1200') == 1200
  with pytest.raises(ValueError, match="'last': expected best, latest or a"):
    model_sources.parse_checkpoint('last')


def test_list_inputs_takes_a_file_or_a_folder_of_images(tmp_path):
  for name in ('b.JPG', 'a.png', 'c.tiff', 'notes.txt'):
    (tmp_path / name).write_bytes(b'')
  (tmp_path / 'sub.png').mkdir()
  os.mkfifo(tmp_path / 'pipe.jpg')  # Reading it would wait forever.
  (tmp_path / 'gone.png').symlink_to(tmp_path / 'absent.png')
  assert image_files.list_inputs(os.fspath(tmp_path)) == (
      [os.fspath(tmp_path / name) for name in ('a.png', 'b.JPG', 'c.tiff')],
      ['gone.png', 'notes.txt', 'pipe.jpg', 'sub.png/'])
  assert image_files.list_inputs(os.fspath(tmp_path / 'notes.txt')) == (
      [os.fspath(tmp_path / 'notes.txt')], [])
  with pytest.raises(errors.UserError, match='neither a file nor a folder'):
    image_files.list_inputs(os.fspath(tmp_path / 'missing'))
  with pytest.raises(errors.UserError, match='holds no image file'):
    image_files.list_inputs(os.fspath(tmp_path / 'sub.png'))


def test_output_stems_keep_the_extension_only_where_stems_clash():
  assert image_files.output_stems(['x/1.png', 'y/1.tif', 'x/2.jpg']) == {
      'x/1.png': '1.png', 'y/1.tif': '1.tif', 'x/2.jpg': '2'}


@pytest.fixture
def input_folder(tmp_path):
  """A PNG, a JPEG sharing its stem, an RGB TIFF, a corrupt JPEG, a text file."""
  folder = tmp_path / 'inputs'
  folder.mkdir()
  Image.fromarray(_random_image(40, 50, seed=3)).save(folder / 'a.png')
  Image.fromarray(_random_image(60, 30, seed=4)).save(folder / 'a.jpg')
  tifffile.imwrite(folder / 'c.tif', _random_image(45, 35, seed=5),
                   photometric='rgb')
  (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a JPEG')
  (folder / 'notes.txt').write_text('not an image')
  return folder


def test_predict_files_writes_masks_and_reports_unreadable_files(
    predictor, input_folder, tmp_path):
  output = tmp_path / 'masks'
  paths, _ = image_files.list_inputs(os.fspath(input_folder))
  failures = image_files.predict_files(predictor, paths, os.fspath(output),
                                   save_probabilities=True, save_overlay=True)
  broken = os.fspath(input_folder / 'broken.jpg')
  assert list(failures) == [broken]
  assert failures[broken].startswith(broken)
  assert sorted(os.listdir(output)) == sorted(
      f'{stem}{suffix}.png' for stem in ('a.jpg', 'a.png', 'c')
      for suffix in ('', '_probability', '_overlay'))
  for source, stem in (('a.png', 'a.png'), ('a.jpg', 'a.jpg'), ('c.tif', 'c')):
    image = image_io.read_image(input_folder / source)
    probabilities = predictor.predict_proba(image)
    mask = _read_png(output / f'{stem}.png')
    assert mask.shape == image.shape[:2] and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, (probabilities >= 0.5) * 255)
    np.testing.assert_array_equal(_read_png(output / f'{stem}_probability.png'),
                                  np.round(probabilities * 255))
    np.testing.assert_array_equal(_read_png(output / f'{stem}_overlay.png'),
                                  visualize.overlay(image, mask > 0))


def test_predict_on_real_kvasir_jpegs_and_a_clinicdb_tiff(
    predictor, shared_dir, tmp_path):
  kvasir = shared_dir / 'data' / 'Kvasir-SEG' / 'images'
  clinicdb_tiff = shared_dir / 'data' / 'CVC-ClinicDB-tif' / 'Original' / '1.tif'
  if not kvasir.is_dir() or not clinicdb_tiff.is_file():
    pytest.skip(f'{kvasir} or {clinicdb_tiff} is absent.')
  paths = image_files.list_inputs(os.fspath(kvasir))[0][:3] + [
      os.fspath(clinicdb_tiff)]
  output = tmp_path / 'masks'
  assert image_files.predict_files(predictor, paths, os.fspath(output),
                               save_overlay=True) == {}
  for path in paths[:3]:
    with Image.open(path) as image:
      width, height = image.size
    stem = os.path.splitext(os.path.basename(path))[0]
    assert _read_png(output / f'{stem}.png').shape == (height, width)
  # The TIFF was read in colour (OpenCV would give gray, Pillow refuses it):
  # outside the mask its overlay is the RGB image itself.
  rgb = tifffile.imread(clinicdb_tiff)
  assert rgb.shape == (288, 384, 3) and not np.array_equal(rgb[..., 0],
                                                           rgb[..., 1])
  mask = _read_png(output / '1.png') > 0
  assert mask.shape == (288, 384)
  overlay = _read_png(output / '1_overlay.png')
  np.testing.assert_array_equal(overlay[~mask], rgb[~mask])


@pytest.mark.parametrize('xla_message, out_of_memory', [
    ('RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9663676416 bytes.', True),  # A GPU's words.
    ('INTERNAL: Error dispatching computation: Out of memory allocating 9663676416 bytes.', True),  # The CPU's.
    ('INTERNAL: an unrelated failure', False),
])
def test_out_of_memory_names_the_batch_size_and_keeps_the_masks_written(predictor, tmp_path, monkeypatch,
                                                                       xla_message, out_of_memory):
  folder = tmp_path / 'in'
  folder.mkdir()
  for k in range(3):  # Batches of 2: the first is written, the second meets the fault.
    Image.fromarray(_random_image(40, 30, seed=k)).save(folder / f'{k}.png')
  forward, calls = predictor._forward, []  # pylint: disable=protected-access
  def out_of_memory_at_the_second_batch(images, tta):
    calls.append(1)
    if len(calls) == 2:
      raise jax.errors.JaxRuntimeError(xla_message + '\nthe rest of XLA\'s report')
    return forward(images, tta=tta)
  monkeypatch.setattr(predictor, '_forward', out_of_memory_at_the_second_batch)
  paths, _ = image_files.list_inputs(os.fspath(folder))
  with pytest.raises(jax.errors.JaxRuntimeError if not out_of_memory else predictor_lib.OutOfMemoryError) as raised:
    image_files.predict_files(predictor, paths, os.fspath(tmp_path / 'out'))
  assert isinstance(raised.value, errors.UserError) == out_of_memory
  if out_of_memory:
    message = str(raised.value)
    assert xla_message in message and 'report' not in message  # XLA's first line only.
    assert 'batch of 2' in message and 'batch_size (now 2: --batch_size' in message
    assert f'image_size={MODEL_SIZE}' in message
  assert sorted(os.listdir(tmp_path / 'out')) == ['0.png', '1.png']


class _HalfPredictor:
  """Probability 0.75 on the left half, 0 elsewhere: predict_files without a trained model."""
  batch_size = 2
  step = 0

  def predict_proba(self, images, tta=False):
    del tta
    result = []
    for image in images:
      probabilities = np.zeros(image.shape[:2], np.float32)
      probabilities[:, :image.shape[1] // 2] = 0.75
      result.append(probabilities)
    return result


def _pranet_layout(root):
  """data/images/{0,1}.png and their ground truth in data/masks/{0,1}.png."""
  for folder in ('images', 'masks'):
    (root / folder).mkdir(parents=True)
  for k in range(2):
    Image.fromarray(_random_image(20, 24, seed=k)).save(root / 'images' / f'{k}.png')
    Image.fromarray(np.full((20, 24), 255 * k, np.uint8)).save(root / 'masks' / f'{k}.png')
  return root


def test_the_datasets_masks_folder_is_refused_even_with_overwrite(tmp_path):
  data = _pranet_layout(tmp_path / 'data')
  truth = {name: (data / 'masks' / name).read_bytes() for name in ('0.png', '1.png')}
  paths, _ = image_files.list_inputs(os.fspath(data / 'images'))
  for overwrite in (False, True):
    with pytest.raises(errors.UserError, match=rf"--output={data}/masks holds 2 image files named like the inputs"
                                               r" that predict did not write \(0.png, 1.png\): it looks like the"
                                               " dataset's masks"):
      image_files.check_outputs(paths, os.fspath(data / 'masks'), overwrite=overwrite)
  assert {name: (data / 'masks' / name).read_bytes() for name in truth} == truth
  with pytest.raises(errors.UserError, match='is the input folder'):
    image_files.check_outputs(paths, os.fspath(data / 'images'), overwrite=True)


def test_existing_outputs_are_listed_and_kept_unless_overwrite(tmp_path):
  data = _pranet_layout(tmp_path / 'data')
  paths, _ = image_files.list_inputs(os.fspath(data / 'images'))
  output = tmp_path / 'out'
  image_files.check_outputs(paths, os.fspath(output))
  assert not image_files.predict_files(_HalfPredictor(), paths, os.fspath(output), overwrite=False)
  first = _read_png(output / '0.png')
  assert (first[:, :12] == 255).all() and (first[:, 12:] == 0).all()
  (output / 'notes.csv').write_text('mine')
  with pytest.raises(errors.UserError, match=rf'2 outputs already exist: {output}/0.png, {output}/1.png\.'
                                             ' Nothing was written; pass --overwrite'):
    image_files.check_outputs(paths, os.fspath(output), save_overlay=True)
  # predict's own masks (marked in the PNG) may be replaced on request, and are still read as plain PNGs.
  image_files.check_outputs(paths, os.fspath(output), overwrite=True, save_overlay=True)
  assert not image_files.predict_files(_HalfPredictor(), paths, os.fspath(output), save_overlay=True)
  assert sorted(os.listdir(output)) == ['0.png', '0_overlay.png', '1.png', '1_overlay.png', 'notes.csv']


def test_outputs_that_collide_are_found_before_any_work(tmp_path):
  folder = tmp_path / 'inputs'
  folder.mkdir()
  Image.fromarray(_random_image(20, 24, seed=1)).save(folder / 'a.jpg')
  Image.fromarray(_random_image(20, 24, seed=2)).save(folder / 'a_overlay.jpg')
  paths, _ = image_files.list_inputs(os.fspath(folder))
  with pytest.raises(errors.UserError, match=r'1 output names would be written twice, one replacing the other:'
                                             r' a_overlay.png \(from a.jpg and a_overlay.jpg\)'):
    image_files.check_outputs(paths, os.fspath(tmp_path / 'out'), save_overlay=True)
  assert not (tmp_path / 'out').exists()
  image_files.check_outputs(paths, os.fspath(tmp_path / 'out'))  # Without overlays, no clash.


def test_a_link_planted_in_the_output_folder_is_refused_and_its_target_kept(tmp_path):
  data = _pranet_layout(tmp_path / 'data')
  paths, _ = image_files.list_inputs(os.fspath(data / 'images'))
  target = tmp_path / 'precious.png'
  target.write_bytes(b'not yours')
  output = tmp_path / 'out'
  output.mkdir()
  (output / '1.png').symlink_to(target)
  with pytest.raises(errors.UserError, match=f'1 outputs in --output are symbolic links.*{output}/1.png'):
    image_files.check_outputs(paths, os.fspath(output), overwrite=True)
  # Planted after the check: that file fails, the others are written, the target is intact.
  failures = image_files.predict_files(_HalfPredictor(), paths, os.fspath(output))
  assert list(failures) == [paths[1]] and 'is a symbolic link' in failures[paths[1]]
  assert target.read_bytes() == b'not yours'
  assert sorted(os.listdir(output)) == ['0.png', '1.png']


def test_an_output_that_is_a_file_is_named(tmp_path):
  data = _pranet_layout(tmp_path / 'data')
  paths, _ = image_files.list_inputs(os.fspath(data / 'images'))
  (tmp_path / 'out').write_text('a file')
  with pytest.raises(errors.UserError, match=f'--output={tmp_path}/out is a file, not a folder'):
    image_files.check_outputs(paths, os.fspath(tmp_path / 'out'))
