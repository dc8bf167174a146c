"""Building blocks of the Residual UNet++ (CBAM attention, residual units, upsampling) and of its baselines.

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


class BatchNorm(nnx.BatchNorm):
  """nnx.BatchNorm over the last axis, with the same arithmetic, that traces faster in training mode.

  Why: Flax writes the running statistics with `self.mean[...] = ...`, whose check of the new value's
  `sharding` makes every JAX tracer build an error message by walking the whole trace: 5.8 of the 20 s
  that tracing the train step took here (121 BatchNorms, 2 writes each). `set_value` replaces the value
  without that check (and without the scatter that the indexed write traces to). The formulas are Flax's:
  float32 statistics as E[x^2] - E[x]^2, normalisation in float32, the result in the compute dtype; results
  agree with nnx.BatchNorm to float32 rounding.
  """

  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    use_running_average = self.use_running_average if use_running_average is None else use_running_average
    if use_running_average:
      return super().__call__(x, use_running_average=True)
    axes = tuple(range(x.ndim - 1))
    x, scale, bias = self.promote_dtype((x, self.scale[...], self.bias[...]), dtype=self.dtype)
    x32 = jnp.asarray(x, jnp.promote_types(self.dtype or x.dtype, jnp.float32))
    mean = x32.mean(axes)
    var = jnp.maximum(0.0, jax.lax.square(x32).mean(axes) - jax.lax.square(mean))
    self.mean.set_value(jax.lax.stop_gradient(self.momentum * self.mean[...] + (1 - self.momentum) * mean))
    self.var.set_value(jax.lax.stop_gradient(self.momentum * self.var[...] + (1 - self.momentum) * var))
    y = (x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
    return jnp.asarray(y, self.dtype or y.dtype)


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


def conv_transpose_2x(in_features: int, out_features: int, *, dtype: Any, rngs: nnx.Rngs) -> nnx.ConvTranspose:
  """2x2 transposed convolution with stride 2, with bias: each input pixel paints one 2x2 output block.

  The U-Net paper's 'up-convolution'. Flax keeps the kernel HWIO and applies it flipped relative to PyTorch's
  ConvTranspose2d and Keras' Conv2DTranspose, which for a learned kernel spans the same functions.
  """
  return nnx.ConvTranspose(in_features, out_features, (2, 2), strides=2, padding='VALID', kernel_init=KERNEL_INIT,
                           dtype=dtype, rngs=rngs)


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
    gate = self.avg_mlp(jnp.mean(y, axis=(1, 2))) + self.max_mlp(jnp.max(y, axis=(1, 2)))
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
  """The network's one block: pre-activation unit, channel then spatial attention, plus a projected shortcut.

  The defaults build the original's block. The ablation switches (issue 28) take parts out:
  `residual=False` replaces the pre-activation unit and its shortcut by the UNet++'s ConvBlock (post-activation,
  no shortcut; `strides` on its first convolution), `attention=False` drops both CBAM gates (no `ca`, no `sa`).
  """

  def __init__(self, in_features: int, out_features: int, strides: int = 1, *, dtype: Any = jnp.float32,
               bn_momentum: float = BN_MOMENTUM, residual: bool = True, attention: bool = True,
               rngs: nnx.Rngs):
    self.residual = residual
    self.attention = attention
    if residual:
      self.unit = PreActivationUnit(in_features, out_features, strides, dtype=dtype, bn_momentum=bn_momentum,
                                    rngs=rngs)
    else:
      self.unit = ConvBlock(in_features, out_features, strides, dtype=dtype, bn_momentum=bn_momentum, rngs=rngs)
    if attention:
      self.ca = ChannelAttention(out_features, dtype=dtype, rngs=rngs)
      self.sa = SpatialAttention(dtype=dtype, bn_momentum=bn_momentum, rngs=rngs)
    if residual:
      self.short_conv = conv(in_features, out_features, 1, strides=strides, dtype=dtype, rngs=rngs)
      self.short_bn = batch_norm(out_features, dtype, rngs, bn_momentum)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.unit(x)
    if self.attention:
      y = self.sa(self.ca(y))
    return y + self.short_bn(self.short_conv(x)) if self.residual else y


class ConvBlock(nnx.Module):
  """(Conv3x3 -> BN -> ReLU) twice: the block of U-Net and UNet++ as the polyp literature's baselines build them.

  The convolutions have no bias: the BatchNorm after each one subtracts any constant shift. `strides` applies to
  the first one (the ResUNet++'s `resunetpp_block='plain'` ablation with strided downsampling).
  """

  def __init__(self, in_features: int, out_features: int, strides: int = 1, *, dtype: Any = jnp.float32,
               bn_momentum: float = BN_MOMENTUM, rngs: nnx.Rngs):
    self.conv1 = conv(in_features, out_features, 3, strides=strides, use_bias=False, dtype=dtype, rngs=rngs)
    self.bn1 = batch_norm(out_features, dtype, rngs, bn_momentum)
    self.conv2 = conv(out_features, out_features, 3, use_bias=False, dtype=dtype, rngs=rngs)
    self.bn2 = batch_norm(out_features, dtype, rngs, bn_momentum)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    return jax.nn.relu(self.bn2(self.conv2(y)))


class UpConv(nnx.Module):
  """Nearest 2x upsampling -> Conv3x3 (with bias) -> ReLU; the original's replacement for transposed convs."""

  def __init__(self, in_features: int, out_features: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    self.conv = conv(in_features, out_features, 3, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.relu(self.conv(upsample_nearest_2x(x)))
