"""ONNX and StableHLO exports reproduce the JAX logits; predict --model runs the ONNX file and writes the same masks."""
import json
import subprocess
import sys

from flax import nnx
import jax
import numpy as np
import onnx
from PIL import Image
import pytest

from helpers import reference_weights
from helpers.numpy_reference import with_random_weights
from helpers.tiny_runs import REPO_DIR
from helpers.tiny_runs import TRAINED_STEPS
from resunetpp_jax import errors
from resunetpp_jax import models
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.config import defaults
from resunetpp_jax.data import image_io
from resunetpp_jax.inference import export_reader
from resunetpp_jax.inference import export_writer
from resunetpp_jax.inference import model_sources
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.models import ResUNetPP
from resunetpp_jax.runtime import compilation_cache

PARITY_FILTERS = (16, 32, 64, 128, 256)
PARITY_SIZE = (64, 64)
TOLERANCE = 1e-4


@pytest.fixture(scope='module')
def parity(shared_dir, session_cache_dir, tmp_path_factory):
  """The reference-weight network (test_parity.py), its JAX logits function, both exports of it and their
  runtimes (name -> function from float32 NHWC images to logits)."""
  compilation_cache.enable(str(session_cache_dir))  # jax2onnx's own compiles, reused by the CLI test below.
  with np.load(shared_dir / 'reference' / 'parity_w16.npz') as npz:
    weights = {name: npz[name] for name in npz.files}
  model = nnx.eval_shape(lambda: ResUNetPP(PARITY_FILTERS, rngs=nnx.Rngs(0)))
  reference_weights.load_reference_weights(model, weights)
  model.eval()
  config = defaults.get_default_config()
  config.filters = PARITY_FILTERS
  config.image_size = PARITY_SIZE
  values = export_writer.metadata(config, 'the parity fixture', None)
  folder = tmp_path_factory.mktemp('exports')
  paths = {'onnx': str(folder / 'parity.onnx'), 'stablehlo': str(folder / 'parity.stablehlo.zip')}
  for path in paths.values():
    export_writer.save(model, config, path, values)
  session, _ = export_reader.load_onnx(paths['onnx'])
  exported, _ = export_reader.load_stablehlo(paths['stablehlo'])
  # Loaded once: JAX compiles the StableHLO module per batch size and per deserialized copy.
  runtimes = {'onnx': lambda x: session.run(None, {'image': x})[0],
              'stablehlo': lambda x: np.asarray(exported.call(x))}
  return {'logits': nnx.jit(lambda m, x: m(x)[-1]), 'model': model, 'input': weights['input'], 'paths': paths,
          'values': values, 'runtimes': runtimes}


@pytest.mark.slow
def test_exports_reproduce_the_jax_logits_on_the_parity_input(parity):
  images = parity['input']
  assert images.shape == (2, *PARITY_SIZE, 3)
  expected = np.asarray(parity['logits'](parity['model'], images))
  for name, run in parity['runtimes'].items():
    logits = run(images)
    assert logits.shape == (2, *PARITY_SIZE, 1) and logits.dtype == np.float32, name
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE, err_msg=name)


@pytest.mark.slow
def test_exports_reproduce_the_jax_logits_on_real_images_at_batch_2_and_1(parity, shared_dir):
  """Batch 2 as the parity input (no program compiles again), then batch 1 from the same files."""
  folder = shared_dir / 'data' / 'Kvasir-SEG' / 'images'
  if not folder.is_dir():
    pytest.skip(f'{folder} is absent.')
  paths = sorted(folder.glob('*.jpg'))[:2]
  images = np.stack([predictor_lib.resize_image(image_io.read_image(path), PARITY_SIZE) for path in paths])
  images = images.astype(np.float32) / 255.0
  expected = np.asarray(parity['logits'](parity['model'], images))
  assert np.ptp(expected) > 100 * TOLERANCE  # The tolerance resolves the images' structure.
  for name, run in parity['runtimes'].items():
    np.testing.assert_allclose(run(images), expected, rtol=0, atol=TOLERANCE, err_msg=name)
    np.testing.assert_allclose(run(images[1:]), expected[1:], rtol=0, atol=TOLERANCE, err_msg=name)


def test_files_declare_their_interface(parity):
  proto = onnx.load(parity['paths']['onnx'])
  onnx.checker.check_model(proto, full_check=True)
  dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
  assert [(v.name, dims(v)) for v in proto.graph.input] == [('image', ['batch', *PARITY_SIZE, 3])]
  assert [(v.name, dims(v)) for v in proto.graph.output] == [('logits', ['batch', *PARITY_SIZE, 1])]
  onnx_values = {prop.key: prop.value for prop in proto.metadata_props}
  exported, stablehlo_values = export_reader.load_stablehlo(parity['paths']['stablehlo'])
  assert onnx_values == stablehlo_values == parity['values']
  assert onnx_values['input'].startswith('image: float32 (batch, H, W, 3), NHWC RGB scaled to [0, 1]')
  assert onnx_values['output'].startswith('logits: float32 (batch, H, W, num_classes), logits of the last')
  assert json.loads(onnx_values['image_size']) == list(PARITY_SIZE)
  assert onnx_values['threshold'] == '0.5' and onnx_values['source'] == 'the parity fixture'
  assert onnx_values['resunetpp_jax_version'] and onnx_values['step'] == ''
  assert json.loads(onnx_values['config'])['filters'] == list(PARITY_FILTERS)
  assert str(exported.in_avals[0].shape) == f'(batch, {PARITY_SIZE[0]}, {PARITY_SIZE[1]}, 3)'
  assert exported.platforms == export_writer.STABLEHLO_PLATFORMS


def test_the_unetpp_baseline_exports_too(tmp_path):
  """Its max pooling and transposed convolutions (shared with U-Net) convert too (tiny network, random weights)."""
  config = defaults.get_default_config()
  config.update(model='unetpp', filters=(4, 8, 16), image_size=(32, 32))
  model = with_random_weights(lambda: models.create_model(config, nnx.Rngs(0)))
  model.eval()
  export_writer.save(model, config, str(tmp_path / 'model.onnx'), export_writer.metadata(config, 'unetpp', None))
  session, _ = export_reader.load_onnx(str(tmp_path / 'model.onnx'))
  images = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype(np.float32)
  expected = nnx.jit(lambda m, x: m(x)[-1])(model, images)
  # Random weights give logits up to ~30: float32 rounding grows with the activations, so the bound does too.
  np.testing.assert_allclose(session.run(None, {'image': images})[0], expected, rtol=0,
                             atol=1e-5 * np.abs(expected).max())


def test_a_bfloat16_model_is_exported_in_float32():
  config = defaults.get_default_config()
  config.update(filters=(4, 8), image_size=(16, 16), dtype='bfloat16')
  model = export_writer.float32_model(with_random_weights(lambda: models.create_model(config, nnx.Rngs(0))), config)
  config.dtype = 'float32'
  expected = with_random_weights(lambda: models.create_model(config, nnx.Rngs(0)))
  expected.eval()
  assert nnx.graphdef(model) == nnx.graphdef(expected)  # Every layer's dtype included.
  jax.tree.map(np.testing.assert_array_equal, nnx.state(model), nnx.state(expected))


def test_output_format_follows_the_extension():
  assert export_writer.output_format('a/model.onnx') == 'onnx'
  assert export_writer.output_format('model.stablehlo.zip') == 'stablehlo'
  with pytest.raises(errors.UserError, match=r'--output=model\.zip: the format follows the extension, \.onnx'):
    export_writer.output_format('model.zip')


def test_default_source_is_the_packaged_model(tmp_path, monkeypatch):
  monkeypatch.setattr(model_file, 'SHIPPED_WEIGHTS', tmp_path / 'polyp.safetensors')
  with pytest.raises(errors.UserError, match='This installation holds no trained model'):
    model_sources.load_model(None)
  config = defaults.get_default_config()
  config.filters = (8, 16)
  config.image_size = (16, 16)
  model_file.save(with_random_weights(lambda: models.create_model(config, nnx.Rngs(0))), config,
                  tmp_path / 'polyp.safetensors', step=7,
                  card={'data': 'kvasir_seg'})
  model, loaded_config, source, step = model_sources.load_model(None)
  assert isinstance(model, ResUNetPP) and list(loaded_config.filters) == [8, 16] and step == 7
  assert source == 'packaged model polyp.safetensors (resunetpp_jax.pretrained), model card {"data": "kvasir_seg"}'


def test_from_onnx_names_a_file_that_is_not_an_export(tmp_path):
  with pytest.raises(export_reader.ExportFileError, match='missing.onnx does not exist'):
    predictor_lib.Predictor.from_onnx(str(tmp_path / 'missing.onnx'))
  (tmp_path / 'notes.onnx').write_text('not a model')
  with pytest.raises(export_reader.ExportFileError, match='notes.onnx is not a readable ONNX model'):
    predictor_lib.Predictor.from_onnx(str(tmp_path / 'notes.onnx'))
  value = lambda name: onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1])
  identity = onnx.helper.make_graph([onnx.helper.make_node('Identity', ['x'], ['y'])], 'identity', [value('x')],
                                    [value('y')])
  onnx.save(onnx.helper.make_model(identity), tmp_path / 'other.onnx')
  with pytest.raises(export_reader.ExportFileError, match='other.onnx is an ONNX model without the metadata'):
    predictor_lib.Predictor.from_onnx(str(tmp_path / 'other.onnx'))


def _run(module, *flags):
  return subprocess.run([sys.executable, '-m', module, *flags], cwd=REPO_DIR, capture_output=True, text=True,
                        timeout=300, check=False)


def _random_image(height: int, width: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  coarse = Image.fromarray(rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8))
  return np.asarray(coarse.resize((width, height), Image.BILINEAR))


@pytest.mark.slow
def test_export_command_then_predict_with_the_onnx_file_writes_the_jax_masks(trained_workdir, tmp_path):
  model_path = tmp_path / 'model.onnx'
  completed = _run('resunetpp_jax.export', f'--workdir={trained_workdir}', f'--checkpoint={TRAINED_STEPS}',
                   f'--output={model_path}')
  assert completed.returncode == 0, completed.stderr
  assert f'Wrote {model_path}' in completed.stdout
  _, values = export_reader.load_onnx(str(model_path))
  assert values['source'] == f'workdir {trained_workdir}, checkpoint {TRAINED_STEPS}, step {TRAINED_STEPS}'
  onnx_predictor = predictor_lib.Predictor.from_onnx(str(model_path), batch_size=2)
  assert onnx_predictor.step == TRAINED_STEPS
  assert onnx_predictor.config.image_size == (32, 32)
  jax_predictor = predictor_lib.Predictor.from_workdir(trained_workdir, TRAINED_STEPS, batch_size=2)
  images = [_random_image(*size, seed=k) for k, size in enumerate([(48, 40), (32, 32), (20, 70)])]
  for tta in (False, True):
    for ours, theirs in zip(onnx_predictor.predict_proba(images, tta), jax_predictor.predict_proba(images, tta)):
      np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)

  inputs = tmp_path / 'inputs'
  inputs.mkdir()
  for k, image in enumerate(images):
    Image.fromarray(image).save(inputs / f'{k}.png')
  completed = _run('resunetpp_jax.predict', f'--model={model_path}', f'--input={inputs}',
                   f'--output={tmp_path / "masks"}')
  assert completed.returncode == 0, completed.stderr
  assert '3 of 3 images segmented' in completed.stdout
  masks = jax_predictor.predict_mask(images)
  assert 0 < np.mean(np.concatenate([mask.ravel() for mask in masks])) < 1  # Both classes occur.
  for k, expected in enumerate(masks):
    with Image.open(tmp_path / 'masks' / f'{k}.png') as mask:
      np.testing.assert_array_equal(np.asarray(mask), expected * 255)
