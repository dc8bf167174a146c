"""Residual UNet++ with CBAM attention and deep supervision (SPEC.md, 'The network').

Node X[i, 0] is encoder level i; for j >= 1,
X[i, j] = Block(f_i)(concat([Up(f_i)(X[i+1, j-1]), X[i, 0], ..., X[i, j-1]])), upsampled tensor first.
Submodules are named like the PyTorch peer (bench/torch_peer.py): `enc[i]`, `up['i_j']`, `dec['i_j']`, `heads[k]`.
"""
from collections.abc import Sequence
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp

from resunetpp_jax.models import layers

IMAGE_CHANNELS = 3


def check_levels(filters: Sequence[int]) -> tuple[int, ...]:
  """`filters` as a tuple of ints; ValueError unless there are at least 2 levels (one downsampling step)."""
  filters = tuple(int(f) for f in filters)
  if len(filters) < 2:
    raise ValueError(f'filters={filters}: the network needs at least 2 levels (one downsampling step).')
  return filters


def check_image_shape(model_name: str, shape: Sequence[int], num_levels: int) -> None:
  """Raises ValueError unless `shape` is (N, H, W, 3) with H, W divisible by 2**(num_levels - 1)."""
  factor = 2 ** (num_levels - 1)
  if len(shape) != 4 or shape[-1] != IMAGE_CHANNELS:
    raise ValueError(f'{model_name} expects NHWC RGB images (N, H, W, {IMAGE_CHANNELS}); got shape {tuple(shape)}.')
  if shape[1] % factor or shape[2] % factor:
    raise ValueError(
        f'Image height and width must be divisible by {factor} (2**(len(filters)-1) for '
        f'{num_levels} levels); got {shape[1]}x{shape[2]}. Resize or crop the images (config.image_size).')


def node_name(i: int, j: int) -> str:
  """The key of node X[i, j] (j >= 1) in `up` and `dec`, as in the PyTorch peer."""
  return f'{i}_{j}'


class SupervisedHeads(nnx.Module):
  """What the trainer needs of every network here: one logits map per supervision head, and the heads' penalty.

  Subclasses define `heads`, `num_levels` and `node_outputs(x)`, whose 'heads.k' entries are the heads' logits.
  """

  def check_input(self, shape: Sequence[int]) -> None:
    check_image_shape(type(self).__name__, shape, self.num_levels)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
    outputs = self.node_outputs(x)
    return tuple(outputs[f'heads.{k}'] for k in range(len(self.heads)))

  def head_kernel_sq_sum(self) -> jax.Array:
    """Sum of squares of the heads' kernels: the original's l2(1e-4) penalty before its weight."""
    return sum(jnp.sum(jnp.square(head.kernel[...])) for head in self.heads)


# The ablation switches of issue 28 (config keys resunetpp_block, _attention, _downsample, _upsample); the first
# of each is the original's. With the second of all four the network is the UNet++ (models/unet.py) parameter
# for parameter: ConvBlocks, max pooling, 2x2 transposed convolutions, no attention.
BLOCKS = ('preact_residual', 'plain')
ATTENTIONS = ('cbam', 'none')
DOWNSAMPLES = ('stride', 'pool')
UPSAMPLES = ('nearest_conv', 'transpose')


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
  if value not in allowed:
    raise ValueError(f'{name}={value!r} is not one of {", ".join(map(repr, allowed))}.')


class ResUNetPP(SupervisedHeads):
  """Residual UNet++; `__call__` returns one float32 logits map per supervision head.

  With deep supervision there is a head on each X[0, j], j = 1..L-1 (L = len(filters)); without it only the
  head on X[0, L-1] exists. The nested decoder is complete either way, since X[0, L-1] depends on every node.

  The defaults are the original network (SPEC.md). The ablation switches replace one part each by the UNet++'s:
  block='plain' (ConvBlock, no shortcut), attention='none' (no CBAM), downsample='pool' (2x2 max pooling before
  each encoder block, which then has stride 1), upsample='transpose' (2x2 transposed convolution, no ReLU).
  """

  def __init__(self, filters: Sequence[int] = (32, 64, 128, 256, 512), num_classes: int = 1,
               deep_supervision: bool = True, dtype: Any = jnp.float32,
               bn_momentum: float = layers.BN_MOMENTUM, *, block: str = 'preact_residual',
               attention: str = 'cbam', downsample: str = 'stride', upsample: str = 'nearest_conv',
               rngs: nnx.Rngs):
    filters = check_levels(filters)
    _check_choice('block', block, BLOCKS)
    _check_choice('attention', attention, ATTENTIONS)
    _check_choice('downsample', downsample, DOWNSAMPLES)
    _check_choice('upsample', upsample, UPSAMPLES)
    self.filters = filters
    self.num_levels = len(filters)
    self.dtype = dtype
    self.pool = downsample == 'pool'
    encoder_stride = 1 if self.pool else 2
    make_block = lambda cin, cout, strides=1: layers.CbamResidualBlock(
        cin, cout, strides, dtype=dtype, bn_momentum=bn_momentum, residual=block == 'preact_residual',
        attention=attention == 'cbam', rngs=rngs)
    if upsample == 'nearest_conv':
      make_up = lambda cin, cout: layers.UpConv(cin, cout, dtype=dtype, rngs=rngs)
    else:
      make_up = lambda cin, cout: layers.conv_transpose_2x(cin, cout, dtype=dtype, rngs=rngs)

    self.enc = nnx.List([
        make_block(IMAGE_CHANNELS if i == 0 else filters[i - 1], filters[i], 1 if i == 0 else encoder_stride)
        for i in range(self.num_levels)])
    self.up = nnx.Dict()
    self.dec = nnx.Dict()
    for j in range(1, self.num_levels):
      for i in range(self.num_levels - j):
        self.up[node_name(i, j)] = make_up(filters[i + 1], filters[i])
        self.dec[node_name(i, j)] = make_block(filters[i] * (j + 1), filters[i])
    self.head_columns = tuple(range(1, self.num_levels) if deep_supervision else (self.num_levels - 1,))
    # Heads read the compute dtype but accumulate into and return float32 logits, which the losses need,
    # without a float32 copy of the full-resolution features they read.
    self.heads = nnx.List([
        layers.conv(filters[0], num_classes, 1, dtype=dtype, output_dtype=jnp.float32, rngs=rngs)
        for _ in self.head_columns])

  def node_outputs(self, x: jax.Array) -> dict[str, jax.Array]:
    """Every submodule's output keyed by its path, in execution order: 'enc.i', 'up.i_j', 'dec.i_j', 'heads.k'."""
    self.check_input(x.shape)
    x = x.astype(self.dtype)
    outputs = {}
    grid = {}  # (i, j) -> X[i, j]
    for i in range(self.num_levels):
      if i and self.pool:
        # window_shape by keyword, as in unet.py (jax2onnx's stand-in for nnx.max_pool takes no other form).
        x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
      x = self.enc[i](x)
      grid[i, 0] = outputs[f'enc.{i}'] = x
      # UNet++ order: once X[i, 0] exists, fill the anti-diagonal X[i-j, j].
      for j in range(1, i + 1):
        k, name = i - j, node_name(i - j, j)
        upsampled = outputs[f'up.{name}'] = self.up[name](grid[k + 1, j - 1])
        merged = jnp.concatenate([upsampled] + [grid[k, t] for t in range(j)], axis=-1)
        grid[k, j] = outputs[f'dec.{name}'] = self.dec[name](merged)
    for k, (head, j) in enumerate(zip(self.heads, self.head_columns)):
      outputs[f'heads.{k}'] = head(grid[0, j])
    return outputs
