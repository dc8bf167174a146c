"""The U-Net and UNet++ baselines: wiring against NumPy, hand-derived parameter counts, training and inference."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from helpers.numpy_reference import np_bn
from helpers.numpy_reference import np_conv_same
from helpers.numpy_reference import np_relu
from helpers.numpy_reference import random_input
from helpers.numpy_reference import run_eval
from helpers.numpy_reference import weights_of
from helpers.numpy_reference import with_random_weights
from resunetpp_jax import models
from resunetpp_jax.config import defaults
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.models import UNet
from resunetpp_jax.models import UNetPP
from resunetpp_jax.models import layers
from resunetpp_jax.models import summary as summary_lib
from resunetpp_jax.training import loop

DEFAULT_FILTERS = (32, 64, 128, 256, 512)


def abstract_logits(model, shape):
  return nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(shape, jnp.float32))


def count(state):
  return sum(leaf.size for leaf in jax.tree.leaves(state))


# --- NumPy references -------------------------------------------------------------------------------------------


def np_conv_block(x, w, prefix):
  y = np_relu(np_bn(np_conv_same(x, w[f'{prefix}conv1.kernel']), w, f'{prefix}bn1'))
  return np_relu(np_bn(np_conv_same(y, w[f'{prefix}conv2.kernel']), w, f'{prefix}bn2'))


def np_max_pool(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def np_up(x, w, prefix):
  """Input pixel (h, w) paints output pixels (2h + a, 2w + b) with Flax's (flipped) kernel[1 - a, 1 - b]."""
  kernel = w[f'{prefix}kernel'][::-1, ::-1]
  n, h, width, _ = x.shape
  painted = np.einsum('nhwi,abio->nhawbo', x, kernel)
  return painted.reshape(n, 2 * h, 2 * width, kernel.shape[-1]) + w[f'{prefix}bias']


def np_head(x, w, k):
  return np_conv_same(x, w[f'heads.{k}.kernel'], w[f'heads.{k}.bias'])


# --- Layers and wiring ------------------------------------------------------------------------------------------


def test_conv_block_matches_numpy():
  block = with_random_weights(lambda: layers.ConvBlock(3, 5, rngs=nnx.Rngs(0)))
  assert block.conv1.bias is None and block.conv2.bias is None  # BatchNorm follows each convolution.
  x = random_input((2, 6, 7, 3))
  expected = np_conv_block(x.astype(np.float64), weights_of(block), '')
  np.testing.assert_allclose(run_eval(block, x), expected, rtol=1e-5, atol=1e-5)


def test_transposed_convolution_paints_2x2_blocks():
  up = with_random_weights(lambda: layers.conv_transpose_2x(6, 3, dtype=jnp.float32, rngs=nnx.Rngs(0)))
  x = random_input((2, 3, 4, 6))
  expected = np_up(x.astype(np.float64), weights_of(up), '')
  np.testing.assert_allclose(run_eval(up, x), expected, rtol=1e-5, atol=1e-5)


def np_three_level_unetpp(x, w):
  """UNet++ over 3 levels written out node by node (Zhou et al. 2018, Fig. 1)."""
  cat = lambda *tensors: np.concatenate(tensors, axis=-1)
  x00 = np_conv_block(x, w, 'enc.0.')
  x10 = np_conv_block(np_max_pool(x00), w, 'enc.1.')
  x20 = np_conv_block(np_max_pool(x10), w, 'enc.2.')
  x01 = np_conv_block(cat(np_up(x10, w, 'up.0_1.'), x00), w, 'dec.0_1.')
  x11 = np_conv_block(cat(np_up(x20, w, 'up.1_1.'), x10), w, 'dec.1_1.')
  x02 = np_conv_block(cat(np_up(x11, w, 'up.0_2.'), x00, x01), w, 'dec.0_2.')
  return np_head(x01, w, 0), np_head(x02, w, 1)


def np_three_level_unet(x, w):
  """U-Net over 3 levels: each decoder level concatenates the encoder's output of its resolution."""
  cat = lambda *tensors: np.concatenate(tensors, axis=-1)
  x00 = np_conv_block(x, w, 'enc.0.')
  x10 = np_conv_block(np_max_pool(x00), w, 'enc.1.')
  x20 = np_conv_block(np_max_pool(x10), w, 'enc.2.')
  x11 = np_conv_block(cat(np_up(x20, w, 'up.1_1.'), x10), w, 'dec.1_1.')
  x02 = np_conv_block(cat(np_up(x11, w, 'up.0_2.'), x00), w, 'dec.0_2.')
  return (np_head(x02, w, 0),)


@pytest.mark.parametrize('make_model, reference', [
    (lambda: UNet((2, 3, 4), num_classes=2, rngs=nnx.Rngs(0)), np_three_level_unet),
    (lambda: UNetPP((2, 3, 4), num_classes=2, rngs=nnx.Rngs(0)), np_three_level_unetpp),
])
def test_network_matches_numpy_node_by_node(make_model, reference):
  model = with_random_weights(make_model)
  x = random_input((2, 8, 12, 3))
  expected = reference(x.astype(np.float64), weights_of(model))
  model.eval()
  logits = nnx.jit(lambda m, x: m(x))(model, x)
  assert len(logits) == len(expected)
  for got, want in zip(logits, expected):
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4, atol=1e-4)


# --- The model's contract ---------------------------------------------------------------------------------------


@pytest.mark.parametrize('filters', [(4, 8), (4, 8, 16, 32)])
@pytest.mark.parametrize('model_name, deep_supervision, num_heads', [
    ('unet', True, lambda levels: 1),  # U-Net has one output whatever the flag says.
    ('unetpp', True, lambda levels: levels - 1),
    ('unetpp', False, lambda levels: 1),
])
def test_one_full_size_float32_logits_map_per_head(filters, model_name, deep_supervision, num_heads):
  config = defaults.get_default_config()
  config.update(model=model_name, filters=filters, num_classes=2, deep_supervision=deep_supervision)
  model = nnx.eval_shape(lambda: models.create_model(config, nnx.Rngs(0)))
  logits = abstract_logits(model, (3, 32, 48, 3))
  assert isinstance(logits, tuple) and len(logits) == num_heads(len(filters))
  assert all(z.shape == (3, 32, 48, 2) and z.dtype == jnp.float32 for z in logits)
  assert model.head_columns[-1] == len(filters) - 1


def test_decoders_hold_the_papers_nodes():
  unet = nnx.eval_shape(lambda: UNet((4, 8, 16, 32), rngs=nnx.Rngs(0)))
  unetpp = nnx.eval_shape(lambda: UNetPP((4, 8, 16, 32), deep_supervision=False, rngs=nnx.Rngs(0)))
  assert sorted(unet.dec) == sorted(unet.up) == ['0_3', '1_2', '2_1']
  assert sorted(unetpp.dec) == sorted(unetpp.up) == ['0_1', '0_2', '0_3', '1_1', '1_2', '2_1']
  # U-Net's X[0,3] sees Up(X[1,2]) and X[0,0]: 2 x f0 channels; UNet++'s sees X[0,0..2] too: 4 x f0.
  assert unet.dec['0_3'].conv1.kernel.shape == (3, 3, 2 * 4, 4)
  assert unetpp.dec['0_3'].conv1.kernel.shape == (3, 3, 4 * 4, 4)
  assert unetpp.up['1_2'].kernel.shape == (2, 2, 16, 8)


@pytest.mark.parametrize('model_class', [UNet, UNetPP])
def test_rejects_bad_input_and_single_level(model_class):
  model = nnx.eval_shape(lambda: model_class((4, 8, 16, 32, 64), rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match='divisible by 16.*32x40'):
    abstract_logits(model, (1, 32, 40, 3))
  with pytest.raises(ValueError, match=f'{model_class.__name__} expects NHWC RGB'):
    abstract_logits(model, (1, 32, 32, 1))
  with pytest.raises(ValueError, match='at least 2 levels'):
    model_class((4,), rngs=nnx.Rngs(0))


def test_create_model_dispatches_on_config_model():
  config = defaults.get_default_config()
  config.update(filters=(4, 8, 16), dtype='bfloat16', bn_momentum=0.9)
  built = {}
  for name in models.MODELS:
    config.model = name
    built[name] = nnx.eval_shape(lambda: models.create_model(config, nnx.Rngs(0)))
  assert {name: type(model).__name__ for name, model in built.items()} == {
      'resunetpp': 'ResUNetPP', 'unet': 'UNet', 'unetpp': 'UNetPP'}
  for model in built.values():
    assert model.dtype == jnp.bfloat16
    assert {m.momentum for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)} == {0.9}
  config.model = 'segnet'
  with pytest.raises(ValueError, match="config.model='segnet' is not one of 'resunetpp', 'unet', 'unetpp'"):
    models.create_model(config, nnx.Rngs(0))


def test_head_kernel_sq_sum_is_the_heads_only():
  model = with_random_weights(lambda: UNetPP((4, 8, 16), rngs=nnx.Rngs(0)))
  expected = sum(np.sum(np.asarray(head.kernel[...], np.float64) ** 2) for head in model.heads)
  assert len(model.heads) == 2
  np.testing.assert_allclose(float(model.head_kernel_sq_sum()), expected, rtol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_float32_logits():
  model = with_random_weights(lambda: UNetPP((4, 8), dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(model)))
  image = random_input((2, 8, 8, 3))
  outputs = nnx.eval_shape(lambda m, x: m.node_outputs(x), model, jax.ShapeDtypeStruct(image.shape, jnp.float32))
  assert all(v.dtype == (jnp.float32 if name.startswith('heads.') else jnp.bfloat16) for name, v in outputs.items())
  model.eval()
  (logits,) = nnx.jit(lambda m, x: m(x))(model, image)
  assert logits.dtype == jnp.float32 and logits.shape == (2, 8, 8, 1)
  assert np.all(np.isfinite(np.asarray(logits))) and np.ptp(np.asarray(logits)) > 0


# --- Parameter counts, derived layer by layer -------------------------------------------------------------------


def conv_block_counts(cin, cout):
  """(trainable, BatchNorm statistics) of ConvBlock: two bias-free 3x3 convolutions, each followed by a BN."""
  return 9 * cin * cout + 9 * cout * cout + 2 * (2 * cout), 2 * (2 * cout)


def up_params(cin, cout):
  return 2 * 2 * cin * cout + cout  # 2x2 transposed convolution with bias.


def expected_counts(filters, decoder_nodes, num_heads, skips):
  """Totals over the encoder, the decoder nodes X[i, j] (each with `skips(i, j)` skip inputs) and the heads."""
  blocks = [conv_block_counts(3, filters[0])] + [conv_block_counts(filters[i - 1], filters[i])
                                                 for i in range(1, len(filters))]
  blocks += [conv_block_counts((1 + skips(i, j)) * filters[i], filters[i]) for i, j in decoder_nodes]
  ups = sum(up_params(filters[i + 1], filters[i]) for i, _ in decoder_nodes)
  heads = num_heads * (filters[0] + 1)  # 1x1 convolution to one class, with bias.
  return sum(t for t, _ in blocks) + ups + heads, sum(s for _, s in blocks)


@pytest.mark.parametrize('model_class, decoder_nodes, num_heads, skips', [
    (UNet, [(3, 1), (2, 2), (1, 3), (0, 4)], 1, lambda i, j: 1),
    (UNetPP, [(i, j) for j in range(1, 5) for i in range(5 - j)], 4, lambda i, j: j),
])
def test_parameter_counts_at_default_filters(model_class, decoder_nodes, num_heads, skips):
  model = nnx.eval_shape(lambda: model_class(DEFAULT_FILTERS, rngs=nnx.Rngs(0)))
  trainable, statistics = expected_counts(DEFAULT_FILTERS, decoder_nodes, num_heads, skips)
  assert count(nnx.state(model, nnx.Param)) == trainable
  assert count(nnx.state(model, nnx.BatchStat)) == statistics


@pytest.mark.parametrize('model_name, title', [('unet', 'Model: UNet('), ('unetpp', 'Model: UNetPP(')])
def test_summary_rows_cover_every_parameter(model_name, title):
  config = defaults.get_default_config()
  config.update(model=model_name, filters=(4, 8, 16), image_size=(16, 32))
  text = summary_lib.summary(config)  # Raises if a parameter belongs to no row.
  assert text.startswith(title)
  rows = {name.split(' ')[0]: (shape, params) for name, shape, params in summary_lib.layer_rows(config)[0]}
  assert rows['up.0_2'] == ('(1, 16, 32, 4)', up_params(8, 4))
  assert rows['dec.0_2'][1] == sum(conv_block_counts((2 if model_name == 'unet' else 3) * 4, 4))


# --- Same recipe, same scoring ----------------------------------------------------------------------------------


STEPS = 16


@pytest.mark.parametrize('model_name', ['unet', 'unetpp'])
@pytest.mark.slow
def test_trains_on_the_tiny_config_and_predicts(model_name, tiny_config, tmp_path):
  tiny_config.update(model=model_name, num_train_steps=STEPS, eval_every_steps=STEPS, checkpoint_every_steps=STEPS,
                     num_eval_images_logged=2)
  metrics = loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert metrics['step'] == STEPS and 0.0 <= metrics['val/dice'] <= 1.0
  accumulator = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard'))
  accumulator.Reload()
  losses = [event.value for event in accumulator.Scalars('train/loss')]
  assert len(losses) == STEPS // 2 and all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < np.mean(losses[:3])  # It learns, not just runs.
  # The checkpoint restores as the same network, and inference scores it like the ResUNet++.
  predictor = predictor_lib.Predictor.from_workdir(str(tmp_path), checkpoint='latest')
  probabilities = predictor.predict_proba(np.random.default_rng(0).integers(0, 256, (40, 50, 3), np.uint8))
  assert predictor.step == STEPS and probabilities.shape == (40, 50)
  assert np.all((probabilities >= 0) & (probabilities <= 1))
