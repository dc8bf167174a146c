"""Loads weights named like the PyTorch peer (shared/bench/torch_peer.py) into a ResUNetPP.

The reference file (shared/reference/parity_w16.npz) names every array `<module>.<layer>.<leaf>`, where
<module> is `enc.{i}`, `dec.{i}_{j}`, `up.{i}_{j}`, or `heads.{k}`, and keeps kernels in the layout Flax uses
(HWIO for convolutions, (in, out) for dense layers), so only the layer names inside a block differ.
"""
from collections.abc import Mapping
import os
import re

from flax import nnx
import jax.numpy as jnp
import numpy as np

from resunetpp_jax.models import resunetpp

# PyTorch peer layer name inside a CBAM block -> path of the same layer in layers.CbamResidualBlock.
BLOCK_LAYER_NAMES = {
    'bn1': 'unit.bn1',
    'conv1': 'unit.conv1',
    'bn2': 'unit.bn2',
    'conv2': 'unit.conv2',
    'ca.avg_mlp.0': 'ca.avg_mlp.reduce',
    'ca.avg_mlp.2': 'ca.avg_mlp.expand',
    'ca.max_mlp.0': 'ca.max_mlp.reduce',
    'ca.max_mlp.2': 'ca.max_mlp.expand',
    'sa.conv': 'sa.conv',
    'sa.bn': 'sa.bn',
    'short.0': 'short_conv',
    'short.1': 'short_bn',
}
# Up units and heads hold a single layer named alike on both sides.
SAME_NAMED_LAYERS = {'up': 'conv', 'heads': ''}
# BatchNorm arrays are `scale, bias, mean, var` on both sides; convolutions and dense layers `kernel, bias`.
LEAVES = ('kernel', 'bias', 'scale', 'mean', 'var')
# The parity file also holds its test batch and expected outputs, which are not weights.
REFERENCE_DATA_NAME = re.compile(r'input|logits_(eval|train)_\d+')


def model_path(name: str) -> str:
  """The dotted path in ResUNetPP of the array a reference weight name refers to; ValueError if unknown."""
  parts = name.split('.')
  if len(parts) < 3 or parts[-1] not in LEAVES:
    raise ValueError(f'Reference weight {name!r} is not <module>.<index>[.<layer>].<{"|".join(LEAVES)}>.')
  group, index, layer, leaf = parts[0], parts[1], '.'.join(parts[2:-1]), parts[-1]
  if group in ('enc', 'dec') and layer in BLOCK_LAYER_NAMES:
    layer = BLOCK_LAYER_NAMES[layer]
  elif group not in SAME_NAMED_LAYERS or layer != SAME_NAMED_LAYERS[group]:
    raise ValueError(f'Reference weight {name!r} names no layer of ResUNetPP.')
  return '.'.join(p for p in (group, index, layer, leaf) if p)


def model_variables(model: resunetpp.ResUNetPP) -> dict[str, nnx.Variable]:
  """Every parameter and BatchNorm statistic of `model`, keyed by its dotted path (e.g. 'enc.0.unit.bn1.mean')."""
  return {'.'.join(map(str, path)): node for path, node in nnx.iter_graph(model)
          if isinstance(node, (nnx.Param, nnx.BatchStat))}


def load_reference_weights(model: resunetpp.ResUNetPP,
                           weights: str | os.PathLike[str] | Mapping[str, np.ndarray]) -> None:
  """Overwrites every parameter and BatchNorm statistic of `model` in place, from an .npz file or a mapping.

  Raises ValueError, before changing anything, if a model array has no reference weight, a reference weight
  has no model array, or shapes differ. Values are cast to each variable's dtype (the file stores float16).
  Since every array is replaced, `model` may be an abstract one from `nnx.eval_shape` (skips initialisation).
  """
  source = os.fspath(weights) if not isinstance(weights, Mapping) else 'the given mapping'
  if not isinstance(weights, Mapping):
    with np.load(source) as npz:
      weights = {name: npz[name] for name in npz.files}
  by_path = {model_path(name): name for name in weights if not REFERENCE_DATA_NAME.fullmatch(name)}
  variables = model_variables(model)

  problems = [f'no reference weight for model array {path}' for path in sorted(variables.keys() - by_path.keys())]
  problems += [f'reference weight {by_path[path]} (-> {path}) is not in the model'
               for path in sorted(by_path.keys() - variables.keys())]
  for path in sorted(variables.keys() & by_path.keys()):
    expected, given = variables[path].shape, np.shape(weights[by_path[path]])
    if expected != given:
      problems.append(f'{by_path[path]}: shape {given} != model {path} shape {expected}')
  if problems:
    raise ValueError(f'Cannot load reference weights from {source} into ResUNetPP(filters={model.filters}, '
                     f'{len(model.heads)} heads):\n  ' + '\n  '.join(problems))

  for path, variable in variables.items():
    # A whole-value replace: also fills the abstract variables of a model built with nnx.eval_shape.
    variable.set_value(jnp.asarray(weights[by_path[path]], dtype=variable.dtype))
