"""The ResUNet++'s ablation switches (issue 28): each builds what it says, and the defaults stay the original.

Parameter counts are derived by hand below from the layer formulas (SPEC.md; models/layers.py), not from the model.
"""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.numpy_reference import random_input
from helpers.numpy_reference import run_eval
from helpers.numpy_reference import with_random_weights
from resunetpp_jax.config import defaults
from resunetpp_jax.config import validation
from resunetpp_jax.errors import ConfigError
from resunetpp_jax.models import ResUNetPP
from resunetpp_jax.models import UNetPP
from resunetpp_jax.models import create_model
from resunetpp_jax.models import layers

FILTERS = (4, 8, 16)
ORIGINAL = dict(block='preact_residual', attention='cbam', downsample='stride', upsample='nearest_conv')
ABLATED = dict(block='plain', attention='none', downsample='pool', upsample='transpose')


def build(**switches):
  return nnx.eval_shape(lambda: ResUNetPP(FILTERS, **switches, rngs=nnx.Rngs(0)))


def count(model, kind=nnx.Param):
  return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, kind)))


def paths(model):
  return {'.'.join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(model))}


# --- Hand counts (trainable parameters) ---------------------------------------------------------------------------


def conv(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


def bn(c):
  return 2 * c  # scale and bias


def block_count(cin, cout, residual, attention):
  if residual:  # BN, conv3x3 (bias), BN, conv3x3 (bias), 1x1 shortcut (bias) + BN
    n = bn(cin) + conv(3, cin, cout) + bn(cout) + conv(3, cout, cout) + conv(1, cin, cout) + bn(cout)
  else:  # (conv3x3 without bias, BN) x 2
    n = conv(3, cin, cout, False) + bn(cout) + conv(3, cout, cout, False) + bn(cout)
  if attention:  # two bias-free MLPs c -> max(c // 16, 1) -> c, spatial conv7x7 2 -> 1 (no bias) + BN(1)
    n += 2 * 2 * cout * max(cout // 16, 1) + conv(7, 2, 1, False) + bn(1)
  return n


def hand_count(block='preact_residual', attention='cbam', downsample='stride', upsample='nearest_conv'):
  del downsample  # Pooling has no parameters, and a stride changes none.
  residual, cbam = block == 'preact_residual', attention == 'cbam'
  f = FILTERS
  n = sum(block_count(3 if i == 0 else f[i - 1], f[i], residual, cbam) for i in range(len(f)))
  for j in range(1, len(f)):
    for i in range(len(f) - j):
      n += conv(3, f[i + 1], f[i]) if upsample == 'nearest_conv' else conv(2, f[i + 1], f[i])
      n += block_count(f[i] * (j + 1), f[i], residual, cbam)
  return n + (len(f) - 1) * conv(1, f[0], 1)  # deep supervision: a head on each X[0, j]


def test_block_count_agrees_with_the_summary_tests_hand_count():
  # tests/models/test_summary.py counts enc.0 (3 -> 4) as 438 with the BatchNorm statistics (mean and var of
  # bn1, bn2, the spatial gate's BN and short_bn: 2 * (3 + 4 + 1 + 4) = 24); trainable is the rest.
  assert block_count(3, 4, True, True) == 438 - 24


@pytest.mark.parametrize('switch, value', [(None, None)] + [(k, v) for k, v in ABLATED.items()])
def test_each_switch_changes_the_parameter_count_by_the_hand_count(switch, value):
  switches = {} if switch is None else {switch: value}
  assert count(build(**switches)) == hand_count(**switches)


@pytest.mark.slow
def test_defaults_are_the_original_network():
  model = nnx.eval_shape(lambda: ResUNetPP(rngs=nnx.Rngs(0)))
  assert count(model) == 10_759_430 and count(model, nnx.BatchStat) == 12_644
  assert paths(build()) == paths(build(**ORIGINAL))


def test_attention_none_has_no_cbam():
  with_cbam, without = build(), build(attention='none')
  assert any(isinstance(m, (layers.ChannelAttention, layers.SpatialAttention)) for _, m in nnx.iter_modules(with_cbam))
  assert not any(isinstance(m, (layers.ChannelAttention, layers.SpatialAttention))
                 for _, m in nnx.iter_modules(without))
  assert not any('.ca.' in p or '.sa.' in p for p in paths(without))
  # Exactly the CBAM parameters are gone, from the 6 blocks at filters (4, 8, 16): 3 encoder, 3 decoder nodes.
  cbam = lambda c: 4 * c * max(c // 16, 1) + 98 + 2
  blocks_out = [4, 8, 16] + [4, 8] + [4]  # X[0..2, 0], X[0, 1], X[1, 1], X[0, 2]
  assert count(build()) - count(without) == sum(cbam(c) for c in blocks_out)


def strides(conv_module):
  s = conv_module.strides
  return (s, s) if isinstance(s, int) else tuple(s)


def strided_convs(model):
  return [path for path, m in nnx.iter_modules(model) if isinstance(m, nnx.Conv) and strides(m) != (1, 1)]


def test_pool_downsampling_has_no_strided_convolutions_and_the_same_shapes():
  # Stride: each encoder level but the first strides its first conv and its shortcut (2 per level).
  assert len(strided_convs(build())) == 2 * (len(FILTERS) - 1)
  pooled = build(downsample='pool')
  assert strided_convs(pooled) == []
  shapes = lambda m: {k: v.shape for k, v in nnx.eval_shape(
      lambda m, x: m.node_outputs(x), m, jax.ShapeDtypeStruct((2, 16, 24, 3), jnp.float32)).items()}
  assert shapes(pooled) == shapes(build())
  assert shapes(pooled)['enc.2'] == (2, 4, 6, 16)


def test_plain_block_has_no_shortcut_or_preactivation_and_keeps_the_stride():
  model = build(block='plain')
  assert not any('short_' in p for p in paths(model))
  assert all(isinstance(b.unit, layers.ConvBlock) for b in model.enc)
  assert strides(model.enc[1].unit.conv1) == (2, 2) and strides(model.enc[1].unit.conv2) == (1, 1)


def test_transpose_upsampling_builds_2x2_stride_2_transposed_convs():
  model = build(upsample='transpose')
  for name, up in model.up.items():
    assert isinstance(up, nnx.ConvTranspose), name
    assert up.kernel.shape[:2] == (2, 2) and strides(up) == (2, 2)
  assert all(isinstance(up, layers.UpConv) for up in build().up.values())


@pytest.mark.parametrize('switches', [ORIGINAL, ABLATED] + [{k: v} for k, v in ABLATED.items()])
def test_every_variant_returns_one_full_size_map_per_head(switches):
  model = build(**switches)
  logits = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((2, 16, 24, 3), jnp.float32))
  assert [l.shape for l in logits] == [(2, 16, 24, 1)] * (len(FILTERS) - 1)
  assert all(l.dtype == jnp.float32 for l in logits)


def test_all_four_switches_compute_the_unetpp():
  """Every part swapped is the UNet++ itself: same parameter count, and the same logits for the same weights."""
  ablated = with_random_weights(lambda: ResUNetPP(FILTERS, **ABLATED, rngs=nnx.Rngs(0)))
  unetpp = nnx.eval_shape(lambda: UNetPP(FILTERS, rngs=nnx.Rngs(0)))
  assert count(ablated) == count(unetpp) and count(ablated, nnx.BatchStat) == count(unetpp, nnx.BatchStat)
  # The same weights, by path without the block's `unit`.
  source = {tuple(p for p in path if p != 'unit'): v for path, v in nnx.to_flat_state(nnx.state(ablated))}
  target = nnx.state(unetpp)
  nnx.update(unetpp, nnx.from_flat_state({path: source[path] for path, _ in nnx.to_flat_state(target)}))
  x = random_input((2, 16, 16, 3))
  expected, got = run_eval(ablated, x), run_eval(unetpp, x)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert np.ptp(expected) > 0


def test_a_plain_block_without_attention_is_the_conv_block():
  block_ = with_random_weights(lambda: layers.CbamResidualBlock(3, 8, 2, residual=False, attention=False,
                                                                rngs=nnx.Rngs(0)))
  conv_block = nnx.eval_shape(lambda: layers.ConvBlock(3, 8, 2, rngs=nnx.Rngs(0)))
  nnx.update(conv_block, nnx.state(block_.unit))
  x = random_input((2, 8, 8, 3))
  out = run_eval(block_, x)
  assert out.shape == (2, 4, 4, 8)
  np.testing.assert_array_equal(out, run_eval(conv_block, x))


def test_create_model_passes_the_switches():
  config = defaults.get_default_config()
  config.update(filters=FILTERS, resunetpp_attention='none', resunetpp_downsample='pool')
  model = nnx.eval_shape(lambda: create_model(config, nnx.Rngs(0)))
  assert count(model) == hand_count(attention='none', downsample='pool')
  assert strided_convs(model) == []


@pytest.mark.parametrize('key', ['resunetpp_block', 'resunetpp_attention', 'resunetpp_downsample',
                                 'resunetpp_upsample'])
def test_validation_rejects_unknown_values_and_switches_on_other_models(key):
  config = defaults.get_default_config()
  validation.validate(config, num_devices=1)
  config[key] = 'bogus'
  with pytest.raises(ConfigError, match=f"config.{key}='bogus' is not one of"):
    validation.validate(config, num_devices=1)
  config[key] = dict(resunetpp_block='plain', resunetpp_attention='none', resunetpp_downsample='pool',
                     resunetpp_upsample='transpose')[key]
  validation.validate(config, num_devices=1)
  config.model = 'unetpp'
  with pytest.raises(ConfigError, match=f"config.{key}=.* applies only to model='resunetpp'"):
    validation.validate(config, num_devices=1)


def test_model_rejects_unknown_switch_values():
  with pytest.raises(ValueError, match="attention='se' is not one of"):
    ResUNetPP(FILTERS, attention='se', rngs=nnx.Rngs(0))
