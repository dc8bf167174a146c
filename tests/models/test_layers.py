"""The network's layers against NumPy computations of SPEC.md's formulas, and the model's shape contract.

Modules are built with `nnx.eval_shape` and given NumPy weights, which skips Flax's per-shape compiled random
initialisation (slow on CPU) and fixes every value the NumPy reference uses.
"""
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers.numpy_reference import EPSILON
from helpers.numpy_reference import np_bn
from helpers.numpy_reference import np_channel_attention
from helpers.numpy_reference import np_conv_same
from helpers.numpy_reference import np_pre_activation_unit
from helpers.numpy_reference import np_relu
from helpers.numpy_reference import np_spatial_attention
from helpers.numpy_reference import random_input
from helpers.numpy_reference import run_eval
from helpers.numpy_reference import weights_of
from helpers.numpy_reference import with_random_weights
from resunetpp_jax.models import ResUNetPP
from resunetpp_jax.models import create_model
from resunetpp_jax.models import layers

TINY_FILTERS = (4, 8, 16, 32, 64)
def test_upsample_nearest_2x_repeats_each_pixel():
  x = random_input((2, 3, 5, 4))
  expected = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
  np.testing.assert_array_equal(np.asarray(layers.upsample_nearest_2x(jnp.asarray(x))), expected)


def test_stride_2_same_convolution_pads_bottom_right_only():
  conv = nnx.eval_shape(lambda: layers.conv(1, 1, 3, strides=2, dtype=jnp.float32, rngs=nnx.Rngs(0)))
  conv.kernel.set_value(jnp.ones((3, 3, 1, 1)))
  conv.bias.set_value(jnp.zeros((1,)))
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  out = np.asarray(conv(jnp.asarray(x)))[0, :, :, 0]
  image = x[0, :, :, 0]
  # TF 'SAME': 4 -> 2 outputs needs 1 padded pixel, placed after the image (PyTorch padding=1 puts one before).
  expected = [[image[0:3, 0:3].sum(), image[0:3, 2:4].sum()],
              [image[2:4, 0:3].sum(), image[2:4, 2:4].sum()]]
  np.testing.assert_array_equal(out, expected)


def test_channel_attention_matches_numpy():
  attention = with_random_weights(lambda: layers.ChannelAttention(32, rngs=nnx.Rngs(0)))
  assert attention.avg_mlp.reduce.kernel.shape == (32, 2)  # 32 // 16 hidden units, no bias
  assert attention.avg_mlp.reduce.bias is None and attention.max_mlp.expand.bias is None
  y = random_input((2, 3, 5, 32))
  expected = np_channel_attention(y.astype(np.float64), weights_of(attention), '')
  np.testing.assert_allclose(run_eval(attention, y), expected, rtol=1e-5, atol=1e-6)


def test_channel_attention_keeps_one_hidden_unit_below_ratio():
  attention = nnx.eval_shape(lambda: layers.ChannelAttention(4, rngs=nnx.Rngs(0)))
  assert attention.max_mlp.reduce.kernel.shape == (4, 1)


def test_spatial_attention_matches_numpy():
  attention = with_random_weights(lambda: layers.SpatialAttention(rngs=nnx.Rngs(0)))
  y = random_input((2, 9, 10, 6))
  expected = np_spatial_attention(y.astype(np.float64), weights_of(attention), '')
  np.testing.assert_allclose(run_eval(attention, y), expected, rtol=1e-5, atol=1e-6)


def test_pre_activation_unit_matches_numpy():
  unit = with_random_weights(lambda: layers.PreActivationUnit(3, 5, rngs=nnx.Rngs(0)))
  x = random_input((2, 6, 7, 3))
  expected = np_pre_activation_unit(x.astype(np.float64), weights_of(unit), '', 1)
  np.testing.assert_allclose(run_eval(unit, x), expected, rtol=1e-5, atol=1e-5)


def test_strided_cbam_block_matches_numpy():
  block = with_random_weights(lambda: layers.CbamResidualBlock(6, 16, strides=2, rngs=nnx.Rngs(0)))
  x = random_input((2, 8, 6, 6)).astype(np.float64)
  w = weights_of(block)
  y = np_pre_activation_unit(x, w, 'unit.', 2)
  y = np_spatial_attention(np_channel_attention(y, w, 'ca.'), w, 'sa.')
  expected = y + np_bn(np_conv_same(x, w['short_conv.kernel'], w['short_conv.bias'], 2), w, 'short_bn')
  out = run_eval(block, x.astype(np.float32))
  assert out.shape == (2, 4, 3, 16)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_up_conv_matches_numpy():
  up = with_random_weights(lambda: layers.UpConv(6, 3, rngs=nnx.Rngs(0)))
  x = random_input((2, 3, 4, 6))
  w = weights_of(up)
  upsampled = np.repeat(np.repeat(x.astype(np.float64), 2, axis=1), 2, axis=2)
  expected = np_relu(np_conv_same(upsampled, w['conv.kernel'], w['conv.bias']))
  np.testing.assert_allclose(run_eval(up, x), expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_has_keras_momentum_and_epsilon():
  norm = with_random_weights(lambda: layers.batch_norm(3, jnp.float32, nnx.Rngs(0)))
  before = weights_of(norm)
  x = random_input((4, 5, 6, 3)).astype(np.float64)
  norm.train()
  out = np.asarray(nnx.jit(lambda m, x: m(x))(norm, x.astype(np.float32)))
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  expected = (x - mean) / np.sqrt(var + EPSILON) * before['scale'] + before['bias']
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  after = weights_of(norm)
  np.testing.assert_allclose(after['mean'], 0.99 * before['mean'] + 0.01 * mean, rtol=1e-5)
  np.testing.assert_allclose(after['var'], 0.99 * before['var'] + 0.01 * var, rtol=1e-5)


# --- The model's contract ---------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def tiny_model():
  return nnx.eval_shape(lambda: ResUNetPP(TINY_FILTERS, rngs=nnx.Rngs(0)))


def abstract_logits(model, shape):
  return nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize('filters', [(4, 8), (4, 8, 16, 32)])
@pytest.mark.parametrize('deep_supervision', [True, False])
def test_one_full_size_logits_map_per_head(filters, deep_supervision):
  model = nnx.eval_shape(lambda: ResUNetPP(filters, num_classes=2, deep_supervision=deep_supervision,
                                           rngs=nnx.Rngs(0)))
  logits = abstract_logits(model, (3, 32, 48, 3))
  assert isinstance(logits, tuple)
  assert len(logits) == (len(filters) - 1 if deep_supervision else 1)
  assert all(z.shape == (3, 32, 48, 2) and z.dtype == jnp.float32 for z in logits)


def test_without_deep_supervision_the_decoder_is_complete_and_the_last_head_kept():
  model = nnx.eval_shape(lambda: ResUNetPP((4, 8, 16, 32), deep_supervision=False, rngs=nnx.Rngs(0)))
  assert sorted(model.dec) == ['0_1', '0_2', '0_3', '1_1', '1_2', '2_1']
  assert sorted(model.up) == sorted(model.dec)
  assert model.head_columns == (3,) and len(model.heads) == 1


def test_decoder_nodes_take_every_earlier_node_of_their_row(tiny_model):
  model = tiny_model
  # X[1,2] sees Up(X[2,1]), X[1,0], X[1,1]: 3 x f1 input channels; X[0,4] sees 5 x f0. (The concatenation
  # order, upsampled first, is pinned by the reference parity test.)
  assert model.dec['1_2'].unit.bn1.scale.shape == (3 * 8,)
  assert model.dec['0_4'].unit.conv1.kernel.shape == (3, 3, 5 * 4, 4)
  assert model.up['1_2'].conv.kernel.shape == (3, 3, 16, 8)


@pytest.mark.parametrize('height, width', [(32, 40), (24, 48)])
def test_rejects_size_not_divisible_by_16(tiny_model, height, width):
  with pytest.raises(ValueError, match=f'divisible by 16.*{height}x{width}'):
    abstract_logits(tiny_model, (1, height, width, 3))


def test_rejects_non_rgb_input_and_single_level():
  model = nnx.eval_shape(lambda: ResUNetPP((4, 8), rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match='RGB'):
    abstract_logits(model, (1, 16, 16, 1))
  with pytest.raises(ValueError, match='at least 2 levels'):
    ResUNetPP((4,), rngs=nnx.Rngs(0))


def test_parameter_counts_at_default_filters():
  model = nnx.eval_shape(lambda: ResUNetPP(rngs=nnx.Rngs(0)))
  count = lambda state: sum(leaf.size for leaf in jax.tree.leaves(state))
  assert count(nnx.state(model, nnx.Param)) == 10_759_430
  assert count(nnx.state(model, nnx.BatchStat)) == 12_644


def test_head_kernel_sq_sum():
  model = with_random_weights(lambda: ResUNetPP((4, 8, 16), rngs=nnx.Rngs(0)))
  expected = sum(np.sum(np.asarray(head.kernel[...], np.float64) ** 2) for head in model.heads)
  value = model.head_kernel_sq_sum()
  assert value.dtype == jnp.float32 and value.shape == ()
  np.testing.assert_allclose(float(value), expected, rtol=1e-6)


def test_bfloat16_block_computes_in_bfloat16_close_to_float32():
  float32 = with_random_weights(lambda: layers.CbamResidualBlock(3, 16, strides=2, rngs=nnx.Rngs(0)))
  bfloat16 = nnx.eval_shape(lambda: layers.CbamResidualBlock(3, 16, strides=2, dtype=jnp.bfloat16,
                                                             rngs=nnx.Rngs(0)))
  nnx.update(bfloat16, nnx.state(float32))
  x = random_input((2, 8, 8, 3))
  bfloat16.eval()
  exact, low = run_eval(float32, x), nnx.jit(lambda m, x: m(x))(bfloat16, x)
  assert low.dtype == jnp.bfloat16
  error = np.max(np.abs(np.asarray(low, np.float64) - exact))
  assert 0 < error < 0.05 * np.max(np.abs(exact))


def test_bfloat16_model_keeps_float32_params_and_returns_float32_logits():
  model = with_random_weights(lambda: ResUNetPP((4, 8), dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(model)))
  image = random_input((2, 8, 8, 3))
  outputs = nnx.eval_shape(lambda m, x: m.node_outputs(x), model, jax.ShapeDtypeStruct(image.shape, jnp.float32))
  assert all(v.dtype == (jnp.float32 if name.startswith('heads.') else jnp.bfloat16) for name, v in outputs.items())
  (logits,) = nnx.jit(lambda m, x: m(x))(model, image)
  assert logits.dtype == jnp.float32 and logits.shape == (2, 8, 8, 1)
  assert np.all(np.isfinite(np.asarray(logits))) and np.ptp(np.asarray(logits)) > 0


def test_create_model_reads_config():
  config = ml_collections.ConfigDict(dict(model='resunetpp', filters=(4, 8, 16), num_classes=3,
                                          deep_supervision=False, dtype='bfloat16', bn_momentum=0.9))
  model = nnx.eval_shape(lambda: create_model(config, nnx.Rngs(0)))
  assert model.filters == (4, 8, 16) and model.dtype == jnp.bfloat16
  assert {m.momentum for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)} == {0.9}
  assert len(model.heads) == 1 and model.heads[0].kernel.shape == (1, 1, 4, 3)
  config.dtype = 'float16'
  with pytest.raises(ValueError, match="config.dtype='float16'"):
    create_model(config, nnx.Rngs(0))


@pytest.mark.parametrize('dtype,tolerance', [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)])
def test_batch_norm_matches_flax_batch_norm(dtype, tolerance):
  """Our BatchNorm only traces faster: outputs, gradients and running statistics are Flax's."""
  x = (jax.random.normal(jax.random.key(0), (2, 8, 12, 48)) * 3 + 1.5).astype(dtype)
  ours = layers.BatchNorm(48, momentum=0.9, epsilon=EPSILON, dtype=dtype, rngs=nnx.Rngs(0))
  flax_bn = nnx.BatchNorm(48, momentum=0.9, epsilon=EPSILON, dtype=dtype, rngs=nnx.Rngs(0))
  for bn in (ours, flax_bn):
    bn.scale[...] = jnp.linspace(0.5, 2.0, 48)
    bn.bias[...] = jnp.linspace(-1.0, 1.0, 48)

  def loss(bn, x):
    return jnp.sum(jnp.sin(bn(x).astype(jnp.float32)))

  (loss_ours, grad_ours), (loss_flax, grad_flax) = (
      nnx.value_and_grad(loss, argnums=1)(bn, x) for bn in (ours, flax_bn))
  np.testing.assert_allclose(loss_ours, loss_flax, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad_ours, np.float32), np.asarray(grad_flax, np.float32), atol=tolerance)
  np.testing.assert_allclose(ours.mean[...], flax_bn.mean[...], rtol=1e-6)
  np.testing.assert_allclose(ours.var[...], flax_bn.var[...], rtol=1e-6)
  assert not np.allclose(ours.mean[...], 0.0)  # The running statistics moved.
  ours.eval()
  flax_bn.eval()
  np.testing.assert_array_equal(ours(x), flax_bn(x))
