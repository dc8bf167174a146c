"""The baselines the ResUNet++ paper compared against: U-Net and UNet++, built from plain convolution blocks.

Both live on the UNet++ grid of nodes X[i, j] (level i, column j) with L = len(filters) levels:
- encoder: X[0, 0] = ConvBlock(image), X[i, 0] = ConvBlock(MaxPool2x2(X[i-1, 0]));
- decoder: X[i, j] = ConvBlock(concat([Up(X[i+1, j-1]), the nodes of row i left of column j])), upsampled first,
  where Up is a 2x2 transposed convolution to f_i channels and ConvBlock is (Conv3x3 -> BN -> ReLU) x 2.

U-Net (Ronneberger et al., MICCAI 2015) keeps only the decoder nodes X[i, L-1-i], so each one concatenates the
encoder's X[i, 0]: the classic skip connection; one head on X[0, L-1]. UNet++ (Zhou et al., DLMIA 2018 and IEEE TMI
2020) keeps every X[i, j] with i + j <= L-1 (nested dense skips) and, with deep supervision, a head on each X[0, j],
j = 1..L-1, exactly where ResUNetPP has its heads. The up-sampling is the papers' own (U-Net's 'up-convolution',
Conv2DTranspose in Zhou's UNet++ code): learned, and it halves the channels before the concatenation.
Submodules are named like ResUNetPP's (`enc[i]`, `up['i_j']`, `dec['i_j']`, `heads[k]`), so the summary, the
initialiser and the checkpoints treat all three networks alike.
"""
from collections.abc import Sequence
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp

from resunetpp_jax.models import layers
from resunetpp_jax.models import resunetpp


class _ConvUNet(resunetpp.SupervisedHeads):
  """The UNet-family network whose decoder holds the nodes `decoder_nodes`; heads on X[0, j] for `head_columns`."""

  def __init__(self, filters: Sequence[int], num_classes: int, decoder_nodes: Sequence[tuple[int, int]],
               head_columns: Sequence[int], dtype: Any, bn_momentum: float, *, rngs: nnx.Rngs):
    self.filters = filters
    self.num_levels = len(filters)
    self.dtype = dtype
    self.decoder_nodes = tuple(decoder_nodes)
    block = lambda cin, cout: layers.ConvBlock(cin, cout, dtype=dtype, bn_momentum=bn_momentum, rngs=rngs)

    self.enc = nnx.List([block(resunetpp.IMAGE_CHANNELS if i == 0 else filters[i - 1], filters[i])
                         for i in range(self.num_levels)])
    self.up = nnx.Dict()
    self.dec = nnx.Dict()
    for i, j in self.decoder_nodes:
      name = resunetpp.node_name(i, j)
      self.up[name] = layers.conv_transpose_2x(filters[i + 1], filters[i], dtype=dtype, rngs=rngs)
      self.dec[name] = block(filters[i] * (1 + len(self._row_before(i, j))), filters[i])
    self.head_columns = tuple(head_columns)
    # As in ResUNetPP: float32 logits for the losses, without a float32 copy of the features the heads read.
    self.heads = nnx.List([
        layers.conv(filters[0], num_classes, 1, dtype=dtype, output_dtype=jnp.float32, rngs=rngs)
        for _ in self.head_columns])

  def _row_before(self, i: int, j: int) -> list[int]:
    """The columns t < j of row i that hold a node: X[i, 0] and the decoder nodes left of X[i, j]."""
    return [t for t in range(j) if t == 0 or (i, t) in self.decoder_nodes]

  def node_outputs(self, x: jax.Array) -> dict[str, jax.Array]:
    """Every submodule's output keyed by its path, in execution order: 'enc.i', 'up.i_j', 'dec.i_j', 'heads.k'."""
    self.check_input(x.shape)
    x = x.astype(self.dtype)
    outputs = {}
    grid = {}  # (i, j) -> X[i, j]
    for i in range(self.num_levels):
      if i:
        # window_shape by keyword: jax2onnx 0.17's stand-in for nnx.max_pool (ONNX export) takes no other form.
        x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
      x = self.enc[i](x)
      grid[i, 0] = outputs[f'enc.{i}'] = x
      # Once X[i, 0] exists, every node of the anti-diagonal X[i-j, j] has its inputs.
      for j in range(1, i + 1):
        k, name = i - j, resunetpp.node_name(i - j, j)
        if (k, j) not in self.decoder_nodes:
          continue
        upsampled = outputs[f'up.{name}'] = self.up[name](grid[k + 1, j - 1])
        merged = jnp.concatenate([upsampled] + [grid[k, t] for t in self._row_before(k, j)], axis=-1)
        grid[k, j] = outputs[f'dec.{name}'] = self.dec[name](merged)
    for k, (head, j) in enumerate(zip(self.heads, self.head_columns)):
      outputs[f'heads.{k}'] = head(grid[0, j])
    return outputs



class UNet(_ConvUNet):
  """U-Net: decoder nodes X[i, L-1-i] with skip connections from X[i, 0]; one float32 logits map (a 1-tuple).

  It has one output, so it takes no deep_supervision flag.
  """

  def __init__(self, filters: Sequence[int] = (32, 64, 128, 256, 512), num_classes: int = 1,
               dtype: Any = jnp.float32, bn_momentum: float = layers.BN_MOMENTUM, *, rngs: nnx.Rngs):
    filters = resunetpp.check_levels(filters)
    last = len(filters) - 1
    super().__init__(filters, num_classes, [(last - j, j) for j in range(1, last + 1)], (last,), dtype,
                     bn_momentum, rngs=rngs)


class UNetPP(_ConvUNet):
  """UNet++: every decoder node X[i, j], i + j <= L-1, with dense skips; one float32 logits map per head.

  With deep supervision a head on each X[0, j], j = 1..L-1; without it only the head on X[0, L-1].
  """

  def __init__(self, filters: Sequence[int] = (32, 64, 128, 256, 512), num_classes: int = 1,
               deep_supervision: bool = True, dtype: Any = jnp.float32,
               bn_momentum: float = layers.BN_MOMENTUM, *, rngs: nnx.Rngs):
    filters = resunetpp.check_levels(filters)
    last = len(filters) - 1
    nodes = [(i, j) for j in range(1, last + 1) for i in range(last + 1 - j)]
    super().__init__(filters, num_classes, nodes, range(1, last + 1) if deep_supervision else (last,), dtype,
                     bn_momentum, rngs=rngs)
