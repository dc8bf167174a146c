"""A Keras-style summary of a network: one row per block, output shapes, parameter counts.

Nothing is computed: the model is built with `nnx.eval_shape` and run with `jax.eval_shape` at batch 1 and
`config.image_size`, so even the full-size network summarises in seconds on a CPU.
"""
from collections.abc import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections

from resunetpp_jax.models import factory
from resunetpp_jax.models import resunetpp

COLUMNS = (('Layer (type)', 40), ('Output Shape', 26), ('Param #', 12))


def count(state: nnx.State) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(state))


def layer_rows(config: ml_collections.ConfigDict) -> tuple[list[tuple[str, str, int]], nnx.Module]:
  """(name (type), output shape, parameter + statistic count) per block, in execution order; and the model."""
  model = nnx.eval_shape(lambda: factory.create_model(config, nnx.Rngs(0)))
  model.eval()
  image = jax.ShapeDtypeStruct((1, *config.image_size, resunetpp.IMAGE_CHANNELS), jnp.float32)
  order = []

  def outputs_in_order(model, image):
    outputs = model.node_outputs(image)
    order.extend(outputs)  # Traced once; a returned dict would come back sorted by key.
    return list(outputs.values())

  shapes = nnx.eval_shape(outputs_in_order, model, image)
  submodules = {'.'.join(map(str, path)): module for path, module in nnx.iter_modules(model)}
  rows = [('image (Input)', str(image.shape), 0)]
  for name, shape in zip(order, shapes):
    module = submodules[name]
    rows.append((f'{name} ({type(module).__name__})', str(shape.shape), count(nnx.state(module))))
  return rows, model


def format_table(rows: Sequence[tuple[str, str, int]], trainable: int, non_trainable: int) -> str:
  widths = [width for _, width in COLUMNS]
  line = lambda cells: ''.join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip()
  lines = ['_' * sum(widths), line([title for title, _ in COLUMNS]), '=' * sum(widths)]
  lines += [line((name, shape, f'{params:,}')) for name, shape, params in rows]
  lines += ['=' * sum(widths),
            f'Total params: {trainable + non_trainable:,}',
            f'Trainable params: {trainable:,}',
            f'Non-trainable params: {non_trainable:,}']
  return '\n'.join(lines)


def summary(config: ml_collections.ConfigDict) -> str:
  """The whole summary; BatchNorm statistics are the non-trainable parameters, as in Keras."""
  rows, model = layer_rows(config)
  trainable, non_trainable = count(nnx.state(model, nnx.Param)), count(nnx.state(model, nnx.BatchStat))
  if sum(params for _, _, params in rows) != trainable + non_trainable:
    raise AssertionError('Some parameters belong to no row of the summary; layer_rows misses a submodule.')
  heads = ', '.join(f'X[0,{j}]' for j in model.head_columns)
  title = (f'Model: {type(model).__name__}(filters={tuple(config.filters)}, num_classes={config.num_classes}, '
           f'heads on {heads}, dtype={config.dtype})')
  return title + '\n' + format_table(rows, trainable, non_trainable)
