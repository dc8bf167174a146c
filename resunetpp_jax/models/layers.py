"""Building blocks of the Residual UNet++: CBAM attention, residual units, upsampling.

Every layer follows the Keras original (SPEC.md): TensorFlow 'SAME' padding, BatchNorm with Keras' momentum 0.99
and epsilon 1e-3, Glorot-uniform kernels and zero biases. Parameters are float32; `dtype` is the compute dtype.
"""
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp

# Keras BatchNormalization defaults (the original never overrides them).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
# Keras' default kernel initializer; Flax would otherwise use LeCun-normal.
KERNEL_INIT = nnx.initializers.glorot_uniform()


# Reductions over the pixels of an NHWC tensor run on a (rows, _FOLD_WIDTH) view (see `reduce_pixels`).
_FOLD_WIDTH = 1024


def reduce_pixels(x: jax.Array, reducer, keep_batch: bool = False) -> jax.Array:
  """`reducer` (jnp.sum or jnp.max) of NHWC `x` over H, W (and N unless `keep_batch`), per channel.

  Why: reduced as (pixels, C), a 32-channel tensor is a column reduction only 32 wide, which XLA:GPU ran at
  a fraction of memory bandwidth (80-90 us for 57 MB on an H200, scripts/PERF.md). Folding k consecutive
  pixels into the row, (pixels / k, k * C) with k * C <= 1024, is a free reshape of the row-major array;
  the k partial results are then reduced on a tiny (k, C) array.
  """
  n, h, w, c = x.shape
  pixels = h * w if keep_batch else n * h * w
  fold = 1
  while 2 * fold * c <= _FOLD_WIDTH and pixels % (2 * fold) == 0:
    fold *= 2
  lead = (n,) if keep_batch else ()
  partial = reducer(x.reshape(lead + (pixels // fold, fold * c)), axis=-2)
  return reducer(partial.reshape(lead + (fold, c)), axis=-2)


class BatchNorm(nnx.BatchNorm):
  """nnx.BatchNorm over NHWC whose training-mode statistics use `reduce_pixels`.

  Same variables, defaults and arithmetic as nnx.BatchNorm (float32 statistics with E[x^2] - E[x]^2);
  only the order of the float32 sums differs.
  """

  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    use_running_average = self.use_running_average if use_running_average is None else use_running_average
    if use_running_average or x.ndim != 4:
      return super().__call__(x, use_running_average=use_running_average)
    dtype = self.dtype or x.dtype
    x = x.astype(dtype)
    x32 = x.astype(jnp.promote_types(dtype, jnp.float32))
    count = x.size // x.shape[-1]
    mean = reduce_pixels(x32, jnp.sum) / count
    var = jnp.maximum(0.0, reduce_pixels(x32 * x32, jnp.sum) / count - mean * mean)
    self.mean[...] = jax.lax.stop_gradient(self.momentum * self.mean[...] + (1 - self.momentum) * mean)
    self.var[...] = jax.lax.stop_gradient(self.momentum * self.var[...] + (1 - self.momentum) * var)
    # As nnx.BatchNorm: input, scale and bias in the compute dtype, float32 statistics, so the arithmetic is
    # float32 until the result is cast back.
    scale, bias = self.scale[...].astype(dtype), self.bias[...].astype(dtype)
    return ((x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias).astype(dtype)


def batch_norm(num_features: int, dtype: Any, rngs: nnx.Rngs, momentum: float = BN_MOMENTUM) -> BatchNorm:
  return BatchNorm(num_features, momentum=momentum, epsilon=BN_EPSILON, dtype=dtype, rngs=rngs)


def conv(in_features: int, out_features: int, kernel_size: int, *, strides: int = 1, use_bias: bool = True,
         dtype: Any, output_dtype: Any = None, rngs: nnx.Rngs) -> nnx.Conv:
  """A 'SAME' convolution; with stride 2 on an even size XLA pads bottom/right only, like TensorFlow.

  `output_dtype` (e.g. float32 under bfloat16 compute) makes the convolution accumulate into and return that
  dtype without first casting its input up.
  """
  return nnx.Conv(in_features, out_features, (kernel_size, kernel_size), strides=strides, padding='SAME',
                  use_bias=use_bias, kernel_init=KERNEL_INIT, dtype=dtype, preferred_element_type=output_dtype,
                  rngs=rngs)


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x upsampling of NHWC as a broadcast + reshape (one fused copy, no gather)."""
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
  return x.reshape(n, 2 * h, 2 * w, c)


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
    mean = reduce_pixels(y.astype(jnp.float32), jnp.sum, keep_batch=True) / (y.shape[1] * y.shape[2])
    gate = self.avg_mlp(mean.astype(y.dtype)) + self.max_mlp(reduce_pixels(y, jnp.max, keep_batch=True))
    return y * jax.nn.sigmoid(gate)[:, None, None, :]


class SpatialAttention(nnx.Module):
  """CBAM spatial gate: y * sigmoid(BN(Conv7x7([mean_c y, max_c y]))), one gate value per pixel."""

  def __init__(self, *, dtype: Any = jnp.float32, bn_momentum: float = BN_MOMENTUM, rngs: nnx.Rngs):
    self.conv = conv(2, 1, 7, use_bias=False, dtype=dtype, rngs=rngs)
    self.bn = batch_norm(1, dtype, rngs, bn_momentum)

  def __call__(self, y: jax.Array) -> jax.Array:
    pooled = jnp.concatenate([jnp.mean(y, axis=-1, keepdims=True), jnp.max(y, axis=-1, keepdims=True)], axis=-1)
    return y * jax.nn.sigmoid(self.bn(self.conv(pooled)))


class PreActivationUnit(nnx.Module):
  """Full pre-activation residual branch: BN -> ReLU -> Conv3x3(stride) -> BN -> ReLU -> Conv3x3, with biases."""

  def __init__(self, in_features: int, out_features: int, strides: int = 1, *, dtype: Any = jnp.float32,
               bn_momentum: float = BN_MOMENTUM, rngs: nnx.Rngs):
    self.bn1 = batch_norm(in_features, dtype, rngs, bn_momentum)
    self.conv1 = conv(in_features, out_features, 3, strides=strides, dtype=dtype, rngs=rngs)
    self.bn2 = batch_norm(out_features, dtype, rngs, bn_momentum)
    self.conv2 = conv(out_features, out_features, 3, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv1(jax.nn.relu(self.bn1(x)))
    return self.conv2(jax.nn.relu(self.bn2(y)))


class CbamResidualBlock(nnx.Module):
  """The network's one block: pre-activation unit, channel then spatial attention, plus a projected shortcut."""

  def __init__(self, in_features: int, out_features: int, strides: int = 1, *, dtype: Any = jnp.float32,
               bn_momentum: float = BN_MOMENTUM, rngs: nnx.Rngs):
    self.unit = PreActivationUnit(in_features, out_features, strides, dtype=dtype, bn_momentum=bn_momentum,
                                  rngs=rngs)
    self.ca = ChannelAttention(out_features, dtype=dtype, rngs=rngs)
    self.sa = SpatialAttention(dtype=dtype, bn_momentum=bn_momentum, rngs=rngs)
    self.short_conv = conv(in_features, out_features, 1, strides=strides, dtype=dtype, rngs=rngs)
    self.short_bn = batch_norm(out_features, dtype, rngs, bn_momentum)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.sa(self.ca(self.unit(x)))
    return y + self.short_bn(self.short_conv(x))


class UpConv(nnx.Module):
  """Nearest 2x upsampling -> Conv3x3 (with bias) -> ReLU; the original's replacement for transposed convs."""

  def __init__(self, in_features: int, out_features: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    self.conv = conv(in_features, out_features, 3, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.relu(self.conv(upsample_nearest_2x(x)))
