"""NumPy computations of SPEC.md's layer formulas, and NumPy weights for modules built abstractly.

Modules are built with `nnx.eval_shape` and given NumPy weights, which skips Flax's per-shape compiled random
initialisation (slow on CPU) and fixes every value the NumPy reference uses.
"""
from flax import nnx
import jax.numpy as jnp
import numpy as np

EPSILON = 1e-3


def variables_of(module):
  return {'.'.join(map(str, path)): node for path, node in nnx.iter_graph(module)
          if isinstance(node, (nnx.Param, nnx.BatchStat))}


def with_random_weights(make_module, seed=0):
  """`make_module()` built abstractly, then every array drawn from NumPy (variances positive)."""
  module = nnx.eval_shape(make_module)
  rng = np.random.default_rng(seed)
  for path, variable in variables_of(module).items():
    if path.endswith('.var') or path == 'var':
      value = rng.uniform(0.5, 1.5, variable.shape)
    else:
      value = rng.normal(0.0, 0.5, variable.shape)
    variable.set_value(jnp.asarray(value, variable.dtype))
  return module


def weights_of(module):
  return {path: np.asarray(variable[...], np.float64) for path, variable in variables_of(module).items()}


def run_eval(module, *args):
  module.eval()
  return np.asarray(nnx.jit(lambda m, *a: m(*a))(module, *args), np.float64)


# --- NumPy references -------------------------------------------------------------------------------------------


def np_conv_same(x, kernel, bias=None, stride=1):
  """TensorFlow 'SAME' convolution of NHWC by HWIO: total padding split with the extra pixel at bottom/right."""
  kh, kw = kernel.shape[:2]
  _, h, w, _ = x.shape
  oh, ow = -(-h // stride), -(-w // stride)
  pad_h, pad_w = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
  x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
  out = np.zeros((x.shape[0], oh, ow, kernel.shape[-1]))
  for dy in range(kh):
    for dx in range(kw):
      out += x[:, dy:dy + (oh - 1) * stride + 1:stride, dx:dx + (ow - 1) * stride + 1:stride] @ kernel[dy, dx]
  return out if bias is None else out + bias


def np_bn(x, w, prefix):
  return (x - w[f'{prefix}.mean']) / np.sqrt(w[f'{prefix}.var'] + EPSILON) * w[f'{prefix}.scale'] + w[f'{prefix}.bias']


def np_sigmoid(x):
  return 1 / (1 + np.exp(-x))


def np_relu(x):
  return np.maximum(x, 0)


def np_channel_attention(y, w, prefix):
  mlp = lambda v, name: np_relu(v @ w[f'{prefix}{name}.reduce.kernel']) @ w[f'{prefix}{name}.expand.kernel']
  gate = mlp(y.mean(axis=(1, 2)), 'avg_mlp') + mlp(y.max(axis=(1, 2)), 'max_mlp')
  return y * np_sigmoid(gate)[:, None, None, :]


def np_spatial_attention(y, w, prefix):
  pooled = np.concatenate([y.mean(axis=-1, keepdims=True), y.max(axis=-1, keepdims=True)], axis=-1)
  return y * np_sigmoid(np_bn(np_conv_same(pooled, w[f'{prefix}conv.kernel']), w, f'{prefix}bn'))


def np_pre_activation_unit(x, w, prefix, stride):
  y = np_conv_same(np_relu(np_bn(x, w, f'{prefix}bn1')), w[f'{prefix}conv1.kernel'], w[f'{prefix}conv1.bias'], stride)
  return np_conv_same(np_relu(np_bn(y, w, f'{prefix}bn2')), w[f'{prefix}conv2.kernel'], w[f'{prefix}conv2.bias'])


def random_input(shape, seed=1):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --- Layers -----------------------------------------------------------------------------------------------------


