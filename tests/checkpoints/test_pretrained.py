"""The model file format (safetensors, float16 parameters), its model card and the shipped model."""
import json
import os
import subprocess
import sys
import zipfile

from flax import nnx
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from helpers import model_state
from resunetpp_jax import errors
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.config import validation as config_validation
from resunetpp_jax.evaluation import runner
from resunetpp_jax.inference import model_sources
from resunetpp_jax.inference import predictor as predictor_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def tiny_model(tiny_config):
  return model_state.eval_model(tiny_config)


def test_round_trip_keeps_statistics_exactly_and_parameters_to_float16(tiny_model, tiny_config, tmp_path):
  path = tmp_path / 'model.safetensors'
  card = {'data': 'synthetic', 'scores': {'dice': 0.5}}
  tiny_config.init_from = '/home/someone/start.safetensors'
  model_file.save(tiny_model, tiny_config, path, step=7, card=card)
  loaded, config, metadata = model_file.load(path)
  assert tuple(config.filters) == tuple(tiny_config.filters)
  assert tuple(config.image_size) == tuple(tiny_config.image_size)
  assert metadata['step'] == '7' and json.loads(metadata['card']) == card
  assert tiny_config.data_dir and tiny_config.compilation_cache_dir.startswith('/')  # This machine's paths,
  assert (config.data_dir, config.manual_dirs, config.compilation_cache_dir) == (  # not kept in the file,
      '', '', '~/.cache/resunetpp_jax/xla')
  assert config.init_from == 'start.safetensors'  # and the start of a fine-tuning by its file name only.
  before, after = model_state.variables(tiny_model), model_state.variables(loaded)
  assert before.keys() == after.keys()
  for name, (kind, value) in before.items():
    restored = after[name][1]
    assert restored.dtype == np.float32
    if kind is nnx.Param:
      np.testing.assert_array_equal(restored, value.astype(np.float16).astype(np.float32), err_msg=name)
    else:  # BatchNorm statistics stay float32.
      np.testing.assert_array_equal(restored, value, err_msg=name)


def test_loaded_model_predicts_as_the_original(tiny_model, tiny_config, tmp_path):
  path = tmp_path / 'model.safetensors'
  model_file.save(tiny_model, tiny_config, path, step=3)
  images = np.random.default_rng(0).integers(0, 256, (2, 40, 50, 3), np.uint8)
  original = predictor_lib.Predictor(tiny_model, tiny_config).predict_proba(images)
  shipped_format = predictor_lib.Predictor.pretrained(str(path))
  assert shipped_format.step == 3
  np.testing.assert_allclose(shipped_format.predict_proba(images), original, atol=2e-3)


def test_a_model_whose_card_has_a_note_says_it_each_time_it_is_loaded(tiny_model, tiny_config, tmp_path, caplog):
  path = tmp_path / 'model.safetensors'
  model_file.save(tiny_model, tiny_config, path, card={'note': 'interim: trained on a CPU'})
  predictor_lib.Predictor.pretrained(str(path))
  assert any('interim: trained on a CPU' in record.getMessage() and str(path) in record.getMessage()
             for record in caplog.records if record.levelname == 'WARNING')


def test_file_and_config_that_disagree_name_the_tensor(tiny_model, tiny_config, tmp_path):
  path = tmp_path / 'model.safetensors'
  wider = tiny_config.copy_and_resolve_references()
  wider.filters = (8, 16, 64)
  model_file.save(tiny_model, wider, path)  # Tensors of (8, 16, 32), config of (8, 16, 64).
  with pytest.raises(errors.UserError, match=r'model\.safetensors: tensor .* has shape'):
    model_file.load(path)


def test_files_that_are_not_model_files_are_refused_by_name(tmp_path):
  with pytest.raises(errors.UserError, match='missing.safetensors does not exist'):
    model_file.load(tmp_path / 'missing.safetensors')
  garbage = tmp_path / 'garbage.safetensors'
  garbage.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}')
  with pytest.raises(errors.UserError, match='garbage.safetensors'):
    model_file.load(garbage)


def test_parameters_too_large_for_float16_are_refused(tiny_model, tiny_config, tmp_path):
  kernel = next(v for _, v in nnx.to_flat_state(nnx.state(tiny_model, nnx.Param)))
  value = np.array(kernel.get_value())
  value.flat[0] = 1e6
  kernel.set_value(value)
  with pytest.raises(errors.UserError, match='does not fit float16'):
    model_file.save(tiny_model, tiny_config, tmp_path / 'model.safetensors')
  assert not (tmp_path / 'model.safetensors').exists()


@pytest.mark.slow
def test_evaluate_scores_a_model_file_as_it_scores_its_workdir(trained_workdir, tmp_path):
  model, step = model_sources.restore_model(trained_workdir, checkpoint='latest')
  config = workdir_config.load_config(trained_workdir)
  path = tmp_path / 'model.safetensors'
  model_file.save(model, config, path, step=step)
  spec = [('synthetic_polyps', 'test')]
  from_workdir, = runner.run(trained_workdir, spec, checkpoint='latest', output_dir=str(tmp_path / 'w'))
  from_file, = runner.run(None, spec, config, model=str(path), output_dir=str(tmp_path / 'f'))
  assert (tmp_path / 'f' / 'synthetic_polyps-test.json').is_file()
  assert from_file['checkpoint_step'] == from_workdir['checkpoint_step'] == step
  assert (from_file['checkpoint'], from_workdir['checkpoint']) == ('model.safetensors', 'latest')
  for key in ('mdice', 'miou', 'mean_dice', 'smeasure', 'mae'):
    assert from_file[key] == pytest.approx(from_workdir[key], abs=2e-3), key


@pytest.mark.skipif(not model_file.SHIPPED_WEIGHTS.is_file(),
                    reason='no shipped model in this checkout yet (issue 10: its GPU run)')
@pytest.mark.slow
def test_shipped_model_segments_real_kvasir_test_images_as_its_card_says(shared_dir):
  """Guards every change to the model code: the shipped weights must still segment real polyps."""
  from resunetpp_jax.data import image_io  # pylint: disable=import-outside-toplevel
  from resunetpp_jax.data import polyp_folder_builder  # pylint: disable=import-outside-toplevel
  card = json.loads(model_file.read_metadata(model_file.SHIPPED_WEIGHTS)['card'])
  expected = card['scores']['kvasir_seg:pranet_test']['mean_dice']
  names = polyp_folder_builder.read_split_list('pranet_kvasir_test.txt')[:16]
  folder = shared_dir / 'data' / 'Kvasir-SEG'
  predictions = predictor_lib.Predictor.pretrained().predict_mask(
      [image_io.read_image(folder / 'images' / f'{name}.jpg') for name in names])
  dice = []
  for name, predicted in zip(names, predictions):
    truth = image_io.read_mask(folder / 'masks' / f'{name}.jpg')
    dice.append(2 * np.count_nonzero(predicted & truth) / max(1, np.count_nonzero(predicted) + np.count_nonzero(truth)))
  # 16 of the 100 test images: their mean may stray from the card's by a few points, not by ten.
  assert np.mean(dice) > expected - 0.1, (np.mean(dice), expected)


@pytest.mark.skipif(not model_file.SHIPPED_WEIGHTS.is_file(), reason='no shipped model in this checkout')
@pytest.mark.slow
def test_predict_without_a_workdir_uses_the_shipped_model(shared_dir, tmp_path):
  """`predict --input --output` works right after install: the masks are the shipped model's."""
  from resunetpp_jax.data import image_io  # pylint: disable=import-outside-toplevel
  from resunetpp_jax.data import polyp_folder_builder  # pylint: disable=import-outside-toplevel
  names = polyp_folder_builder.read_split_list('pranet_kvasir_test.txt')[:2]
  inputs = tmp_path / 'in'
  inputs.mkdir()
  for name in names:
    (inputs / f'{name}.jpg').write_bytes((shared_dir / 'data' / 'Kvasir-SEG' / 'images' / f'{name}.jpg').read_bytes())
  subprocess.run([sys.executable, '-m', 'resunetpp_jax.predict', f'--input={inputs}', f'--output={tmp_path / "out"}'],
                 cwd=REPO, check=True, capture_output=True, timeout=600)
  expected = predictor_lib.Predictor.pretrained().predict_mask(
      [image_io.read_image(inputs / f'{name}.jpg') for name in names])
  for name, mask in zip(names, expected):
    np.testing.assert_array_equal(np.asarray(image_io.read_mask(tmp_path / 'out' / f'{name}.png')), mask)


def _with_metadata(source, target, tensors=None, **changes):
  """A copy of the model file `source` with its metadata changed (None removes a key) and `tensors` replaced."""
  loaded = safetensors_numpy.load_file(source)
  loaded.update(tensors or {})
  metadata = model_file.read_metadata(source)
  for key, value in changes.items():
    if value is None:
      metadata.pop(key)
    else:
      metadata[key] = value
  safetensors_numpy.save_file(loaded, target, metadata=metadata)
  return target


def test_random_bytes_and_other_formats_are_named_without_reading_a_huge_header(tmp_path):
  random = tmp_path / 'random.safetensors'
  random.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
  with pytest.raises(model_file.ModelFileError,
                     match=f'{random} is not a safetensors model file: its first 8 bytes give a header of'
                           r' \d+ bytes in a file of 4096 bytes'):
    model_file.load(random)
  stablehlo = tmp_path / 'model.stablehlo.zip'
  with zipfile.ZipFile(stablehlo, 'w') as archive:
    archive.writestr('metadata.json', '{}')
  with pytest.raises(model_file.ModelFileError, match='it looks like a zip archive, such as a StableHLO export'):
    model_file.read_metadata(stablehlo)
  onnx_file = tmp_path / 'model.onnx'
  onnx_file.write_bytes(b'\x08\x08\x12\x07jax2onnx' + bytes(64))
  with pytest.raises(model_file.ModelFileError, match=r'it looks like an ONNX file .*--model=MODEL\.onnx'):
    model_file.load(onnx_file)
  with pytest.raises(model_file.ModelFileError, match=f'Model file {tmp_path} is a folder'):
    model_file.load(tmp_path)


@pytest.mark.parametrize('config_change, message', [
    (None, 'holds no config in its metadata'),
    ('{"image_size": 0}', 'embedded config is malformed .*image_size'),
    ('{"image_size": [0, 64]}', r'embedded config cannot work: config.image_size=\(0, 64\) must be'),
    ('{"image_size": [-32, 64]}', r'config.image_size=\(-32, 64\) must be'),
    ('{"image_size": [65536, 65536]}', 'each side must be at most 4096 pixels'),
    ('{"model": "vgg"}', "config.model='vgg' is not one of"),
    ('{"filters": "wide"}', 'embedded config is malformed'),
    ('[1, 2]', 'embedded config is malformed'),
])
def test_an_embedded_config_that_cannot_work_is_named(tiny_model, tiny_config, tmp_path, config_change, message):
  path = tmp_path / 'model.safetensors'
  model_file.save(tiny_model, tiny_config, path)
  bad = _with_metadata(path, tmp_path / 'bad.safetensors', config=config_change)
  with pytest.raises(model_file.ModelFileError, match=f'{bad}.*{message}'):
    model_file.load(bad)


def test_non_finite_weights_are_refused_by_name(tiny_model, tiny_config, tmp_path):
  path = tmp_path / 'model.safetensors'
  model_file.save(tiny_model, tiny_config, path)
  name, value = next(iter(safetensors_numpy.load_file(path).items()))
  value = value.copy()
  value.flat[0] = np.nan
  bad = _with_metadata(path, tmp_path / 'nan.safetensors', tensors={name: value})
  with pytest.raises(model_file.ModelFileError, match=f"{bad}: tensor '{name}' holds NaN or Inf"):
    model_file.load(bad)


def test_image_size_is_bounded_in_training_configs_too(tiny_config):
  tiny_config.image_size = (8192, 64)
  with pytest.raises(errors.ConfigError, match='each side must be at most 4096 pixels'):
    config_validation.validate(tiny_config, num_devices=1)


def test_saving_a_model_file_keeps_the_old_one_on_a_full_disk(tiny_model, tiny_config, tmp_path, monkeypatch):
  path = tmp_path / 'model.safetensors'
  path.write_bytes(b'old')

  def full(tensors, filename, metadata):
    with open(filename, 'wb') as f:
      f.write(b'half')
    raise OSError(28, 'No space left on device', filename)
  monkeypatch.setattr(model_file.safetensors_numpy, 'save_file', full)
  with pytest.raises(errors.UserError, match='the disk is full'):
    model_file.save(tiny_model, tiny_config, path)
  assert path.read_bytes() == b'old' and sorted(os.listdir(tmp_path)) == ['model.safetensors']
