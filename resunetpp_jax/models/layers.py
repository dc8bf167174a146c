"""Building blocks of the Residual UNet++: CBAM attention, residual units, upsampling.

Every layer follows the Keras original (SPEC.md): TensorFlow 'SAME' padding, BatchNorm with Keras' momentum 0.99
and epsilon 1e-3, Glorot-uniform kernels and zero biases. Parameters are float32; `dtype` is the compute dtype.
"""
import functools
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

# Keras BatchNormalization defaults (the original never overrides them).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
# Keras' default kernel initializer; Flax would otherwise use LeCun-normal.
KERNEL_INIT = nnx.initializers.glorot_uniform()


def _normalize(x: jax.Array, mean: jax.Array, multiplier: jax.Array, bias: jax.Array, relu: bool) -> jax.Array:
  """(x - mean) * multiplier + bias [then ReLU] in float32 registers, returned in x's dtype."""
  y = (x.astype(jnp.float32) - mean) * multiplier + bias
  return (jnp.maximum(y, 0.0) if relu else y).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float, relu: bool
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode BatchNorm [+ ReLU] over all axes but the last: (output, batch mean, batch variance)."""
  return _batch_norm_train_forward(x, scale, bias, epsilon, relu)[0]


def _batch_norm_train_forward(x, scale, bias, epsilon, relu):
  axes = tuple(range(x.ndim - 1))
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axes)
  # E[x^2] - E[x]^2 in one pass, as Flax's default (use_fast_variance); clipped against round-off.
  var = jnp.maximum(jnp.mean(jnp.square(x32), axes) - jnp.square(mean), 0.0)
  inv_std = jax.lax.rsqrt(var + epsilon)
  y = _normalize(x, mean, scale * inv_std, bias, relu)
  # Only x (compute dtype) and per-channel vectors are kept for the backward pass: no float32 activations.
  return (y, mean, var), (x, mean, inv_std, scale, bias)


def _batch_norm_train_backward(epsilon, relu, residuals, cotangents):
  del epsilon
  x, mean, inv_std, scale, bias = residuals
  dy = cotangents[0].astype(jnp.float32)  # The mean and variance only feed the running averages: no gradient.
  axes = tuple(range(x.ndim - 1))
  centred = x.astype(jnp.float32) - mean
  if relu:  # The forward pass's own expression, so that the mask matches it bit for bit.
    dy = jnp.where(centred * (scale * inv_std) + bias > 0.0, dy, 0.0)
  x_hat = centred * inv_std
  d_bias = jnp.sum(dy, axes)
  d_scale = jnp.sum(dy * x_hat, axes)
  count = x.size // x.shape[-1]
  dx = (scale * inv_std) * (dy - d_bias / count - x_hat * (d_scale / count))
  return dx.astype(x.dtype), d_scale, d_bias


_batch_norm_train.defvjp(_batch_norm_train_forward, _batch_norm_train_backward)


class BatchNorm(nnx.BatchNorm):
  """nnx.BatchNorm (same variables, momentum and running averages) with an optional fused ReLU.

  Normalisation runs in float32 registers and returns the compute dtype. The hand-written gradient keeps only the
  input and per-channel vectors for the backward pass, which is two passes over the input (a reduction, then the
  input gradient): autodiff of the textbook formula keeps float32 copies of whole activations instead.
  """

  def __call__(self, x: jax.Array, *, relu: bool = False) -> jax.Array:
    if self.use_running_average:
      multiplier = self.scale[...] * jax.lax.rsqrt(self.var[...] + self.epsilon)
      return _normalize(x, self.mean[...], multiplier, self.bias[...], relu)
    y, mean, var = _batch_norm_train(x, self.scale[...], self.bias[...], self.epsilon, relu)
    self.mean[...] = jax.lax.stop_gradient(self.momentum * self.mean[...] + (1.0 - self.momentum) * mean)
    self.var[...] = jax.lax.stop_gradient(self.momentum * self.var[...] + (1.0 - self.momentum) * var)
    return y


def batch_norm(num_features: int, dtype: Any, rngs: nnx.Rngs) -> BatchNorm:
  return BatchNorm(num_features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=dtype, rngs=rngs)


def conv(in_features: int, out_features: int, kernel_size: int, *, strides: int = 1, use_bias: bool = True,
         dtype: Any, output_dtype: Any = None, rngs: nnx.Rngs) -> nnx.Conv:
  """A 'SAME' convolution; with stride 2 on an even size XLA pads bottom/right only, like TensorFlow.

  `output_dtype` (e.g. float32 under bfloat16 compute) makes the convolution accumulate into and return that
  dtype without first casting its input up.
  """
  return nnx.Conv(in_features, out_features, (kernel_size, kernel_size), strides=strides, padding='SAME',
                  use_bias=use_bias, kernel_init=KERNEL_INIT, dtype=dtype, preferred_element_type=output_dtype,
                  rngs=rngs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def reduce_max(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  """jnp.max(x, axes, keepdims=True), differentiated like it (ties share the gradient equally).

  Autodiff of jnp.max keeps a full-size mask of the maxima for the backward pass; this recomputes the mask there
  from x, which the backward pass holds anyway.
  """
  return jnp.max(x, axes, keepdims=True)


def _reduce_max_forward(x, axes):
  maximum = jnp.max(x, axes, keepdims=True)
  return maximum, (x, maximum)


def _reduce_max_backward(axes, residuals, cotangent):
  x, maximum = residuals
  is_max = x == maximum
  ties = jnp.sum(is_max, axes, keepdims=True, dtype=jnp.float32)
  return (jnp.where(is_max, (cotangent.astype(jnp.float32) / ties).astype(x.dtype), jnp.zeros((), x.dtype)),)


reduce_max.defvjp(_reduce_max_forward, _reduce_max_backward)


# Nearest 2x upsampling followed by a 3x3 'SAME' convolution, seen from the low-resolution grid: output row 2i + a
# reads input rows {i - 1, i} (a = 0) or {i, i + 1} (a = 1), with the 3 kernel rows summed onto 2 taps.
# SUBPIXEL_TAPS[a, tap, kernel_row]; the same matrix maps kernel columns.
_SUBPIXEL_TAPS = np.array([[[1, 0, 0], [0, 1, 1]],
                           [[1, 1, 0], [0, 0, 1]]], np.float32)


def subpixel_kernel(kernel: jax.Array) -> jax.Array:
  """(3, 3, I, O) kernel -> (2, 2, I, 4 * O): one 2x2 kernel per output phase (a, b), phases major."""
  taps = jnp.asarray(_SUBPIXEL_TAPS, kernel.dtype)
  phases = jnp.einsum('auy,bvx,yxio->uviabo', taps, taps, kernel)
  return phases.reshape(2, 2, kernel.shape[2], 4 * kernel.shape[3])


class BottleneckMlp(nnx.Module):
  """Dense(hidden, no bias) -> ReLU -> Dense(channels, no bias): the shared-shape MLP of channel attention."""

  def __init__(self, channels: int, hidden: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    self.reduce = nnx.Linear(channels, hidden, use_bias=False, kernel_init=KERNEL_INIT, dtype=dtype, rngs=rngs)
    self.expand = nnx.Linear(hidden, channels, use_bias=False, kernel_init=KERNEL_INIT, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.expand(jax.nn.relu(self.reduce(x)))


class ChannelAttention(nnx.Module):
  """CBAM channel gate: y * sigmoid(MLP_avg(mean_hw y) + MLP_max(max_hw y)), two MLPs with separate weights."""

  def __init__(self, channels: int, ratio: int = 16, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    # At least one hidden unit, so that tiny test widths (< ratio channels) still build a working gate.
    hidden = max(channels // ratio, 1)
    self.avg_mlp = BottleneckMlp(channels, hidden, dtype=dtype, rngs=rngs)
    self.max_mlp = BottleneckMlp(channels, hidden, dtype=dtype, rngs=rngs)

  def __call__(self, y: jax.Array) -> jax.Array:
    gate = self.avg_mlp(jnp.mean(y, axis=(1, 2))) + self.max_mlp(reduce_max(y, (1, 2))[:, 0, 0])
    return y * jax.nn.sigmoid(gate)[:, None, None, :]


class SpatialAttention(nnx.Module):
  """CBAM spatial gate: y * sigmoid(BN(Conv7x7([mean_c y, max_c y]))), one gate value per pixel."""

  def __init__(self, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    self.conv = conv(2, 1, 7, use_bias=False, dtype=dtype, rngs=rngs)
    self.bn = batch_norm(1, dtype, rngs)

  def __call__(self, y: jax.Array) -> jax.Array:
    pooled = jnp.concatenate([jnp.mean(y, axis=-1, keepdims=True), reduce_max(y, (3,))], axis=-1)
    return y * jax.nn.sigmoid(self.bn(self.conv(pooled)))


class PreActivationUnit(nnx.Module):
  """Full pre-activation residual branch: BN -> ReLU -> Conv3x3(stride) -> BN -> ReLU -> Conv3x3, with biases."""

  def __init__(self, in_features: int, out_features: int, strides: int = 1, *, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    self.bn1 = batch_norm(in_features, dtype, rngs)
    self.conv1 = conv(in_features, out_features, 3, strides=strides, dtype=dtype, rngs=rngs)
    self.bn2 = batch_norm(out_features, dtype, rngs)
    self.conv2 = conv(out_features, out_features, 3, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv1(self.bn1(x, relu=True))
    return self.conv2(self.bn2(y, relu=True))


class CbamResidualBlock(nnx.Module):
  """The network's one block: pre-activation unit, channel then spatial attention, plus a projected shortcut."""

  def __init__(self, in_features: int, out_features: int, strides: int = 1, *, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    self.unit = PreActivationUnit(in_features, out_features, strides, dtype=dtype, rngs=rngs)
    self.ca = ChannelAttention(out_features, dtype=dtype, rngs=rngs)
    self.sa = SpatialAttention(dtype=dtype, rngs=rngs)
    self.short_conv = conv(in_features, out_features, 1, strides=strides, dtype=dtype, rngs=rngs)
    self.short_bn = batch_norm(out_features, dtype, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.sa(self.ca(self.unit(x)))
    return y + self.short_bn(self.short_conv(x))


class UpConv(nnx.Module):
  """Nearest 2x upsampling -> Conv3x3 (with bias) -> ReLU; the original's replacement for transposed convs.

  Computed without the upsampled tensor: one 2x2 convolution of the low-resolution input (padded by one pixel)
  gives the four output phases as 4 x out_features channels, interleaved into the full-resolution map. That is
  16/36 of the multiply-adds of the 3x3 convolution at full resolution, and the 4x larger input is never written.
  """

  def __init__(self, in_features: int, out_features: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    # Holds the original 3x3 kernel and bias (checkpoints and reference weights name them); never called.
    self.conv = conv(in_features, out_features, 3, dtype=dtype, rngs=rngs)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    n, h, w, _ = x.shape
    out_features = self.conv.out_features
    phases = jax.lax.conv_general_dilated(
        x.astype(self.dtype), subpixel_kernel(self.conv.kernel[...]).astype(self.dtype), window_strides=(1, 1),
        padding=((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    phases = phases.reshape(n, h + 1, w + 1, 2, 2, out_features)
    # Phase (a, b) of output pixel (2i + a, 2j + b) sits at padded position (i + a, j + b).
    rows = [jnp.stack([phases[:, a:a + h, b:b + w, a, b] for b in (0, 1)], axis=3) for a in (0, 1)]
    y = jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, out_features)
    return jax.nn.relu(y + self.conv.bias[...].astype(self.dtype))
