"""The hand-written gradients (BatchNorm) and the reformulated UpConv against autodiff of the plain formulas."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resunetpp_jax.models import layers

EPSILON = 1e-3


def textbook_batch_norm(x, scale, bias, relu):
  mean = jnp.mean(x, axis=(0, 1, 2))
  var = jnp.var(x, axis=(0, 1, 2))
  y = (x - mean) / jnp.sqrt(var + EPSILON) * scale + bias
  return jnp.maximum(y, 0.0) if relu else y


def fused_batch_norm(x, scale, bias, relu):
  norm = nnx.eval_shape(lambda: layers.batch_norm(x.shape[-1], x.dtype, nnx.Rngs(0)))
  for name, value in (('scale', scale), ('bias', bias), ('mean', jnp.zeros_like(scale)),
                      ('var', jnp.ones_like(scale))):
    getattr(norm, name).set_value(value)
  norm.train()
  return norm(x, relu=relu)


@pytest.mark.parametrize('relu', [False, True])
def test_batch_norm_gradient_matches_autodiff(relu):
  rng = np.random.default_rng(0)
  # An offset mean and a non-unit spread, so that every term of the gradient matters.
  x = jnp.asarray(rng.normal(0.7, 2.0, (3, 5, 4, 6)), jnp.float32)
  scale = jnp.asarray(rng.normal(1.0, 0.5, 6), jnp.float32)
  bias = jnp.asarray(rng.normal(0.0, 0.5, 6), jnp.float32)
  cotangent = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  loss = lambda f: lambda *args: jnp.sum(f(*args, relu) * cotangent)
  expected = jax.grad(loss(textbook_batch_norm), argnums=(0, 1, 2))(x, scale, bias)
  got = jax.jit(jax.grad(loss(fused_batch_norm), argnums=(0, 1, 2)))(x, scale, bias)
  for name, g, e in zip(('x', 'scale', 'bias'), got, expected):
    np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-5, err_msg=name)


def test_bfloat16_batch_norm_keeps_bfloat16_activations_and_float32_parameter_gradients():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 4, 8)), jnp.bfloat16)
  scale, bias = jnp.full((8,), 1.5), jnp.full((8,), 0.1)
  out, vjp = jax.vjp(lambda *a: fused_batch_norm(*a, True), x, scale, bias)
  dx, dscale, dbias = vjp(jnp.ones_like(out))
  assert out.dtype == dx.dtype == jnp.bfloat16
  assert dscale.dtype == dbias.dtype == jnp.float32
  exact = textbook_batch_norm(x.astype(jnp.float32), scale, bias, True)
  np.testing.assert_allclose(np.asarray(out, np.float32), exact, atol=0.05)


def test_up_conv_gradient_matches_upsample_then_conv():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 3, 5, 6)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 6, 4)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
  cotangent = jnp.asarray(rng.normal(size=(2, 6, 10, 4)), jnp.float32)

  def reference(x, kernel, bias):
    upsampled = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    y = jax.lax.conv_general_dilated(upsampled, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                     precision='highest')
    return jnp.sum(jax.nn.relu(y + bias) * cotangent)

  def up_conv(x, kernel, bias):
    up = nnx.eval_shape(lambda: layers.UpConv(6, 4, rngs=nnx.Rngs(0)))
    up.conv.kernel.set_value(kernel)
    up.conv.bias.set_value(bias)
    return jnp.sum(up(x) * cotangent)

  expected = jax.value_and_grad(reference, argnums=(0, 1, 2))(x, kernel, bias)
  got = jax.jit(jax.value_and_grad(up_conv, argnums=(0, 1, 2)))(x, kernel, bias)
  np.testing.assert_allclose(got[0], expected[0], rtol=1e-5)
  for name, g, e in zip(('x', 'kernel', 'bias'), got[1], expected[1]):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize('axes', [(1, 2), (3,)])
def test_reduce_max_gradient_matches_jnp_max_with_ties(axes):
  # Small integers make ties common; the gradient splits equally among tied maxima, as jnp.max's does.
  x = jnp.asarray(np.random.default_rng(3).integers(0, 3, (2, 3, 4, 5)), jnp.float32)
  cotangent = jnp.asarray(np.random.default_rng(4).normal(size=jnp.max(x, axes, keepdims=True).shape), jnp.float32)
  expected = jax.grad(lambda x: jnp.sum(jnp.max(x, axes, keepdims=True) * cotangent))(x)
  got = jax.grad(lambda x: jnp.sum(layers.reduce_max(x, axes) * cotangent))(x)
  np.testing.assert_array_equal(jnp.max(x, axes, keepdims=True), layers.reduce_max(x, axes))
  np.testing.assert_allclose(got, expected, rtol=1e-6)
