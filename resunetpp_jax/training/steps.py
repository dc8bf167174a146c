"""The jitted training and evaluation steps: the code the trainer and the benchmark both run.

The state is the pure-dict NNX state of (model, optimizer[, EMA]) (`train_state`),
replicated over the mesh; evaluation and prediction run the EMA's weights when the
state has them. The batch is sharded on its 'data' axis. Images arrive as uint8
and are scaled to [0, 1] on the device (a quarter of the host-to-device traffic
of float32).
"""
import functools
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections

from resunetpp_jax.evaluation import metrics
from resunetpp_jax.models import losses
from resunetpp_jax.training import sharding
from resunetpp_jax.training import state as train_state_lib

_DICE_EPS = 1e-7


def _inputs(batch):
  return batch['image'].astype(jnp.float32) / 255.0, batch['mask'].astype(jnp.float32)


def loss_and_grads(model: nnx.Module, images: jax.Array, labels: jax.Array, *, loss_name: str,
                   head_l2: float):
  """Training-mode loss (all heads plus the heads' L2 penalty) and its gradient w.r.t. the parameters.

  Returns ((loss, (last head's logits, per-head losses, L2 penalty)), grads);
  BatchNorm statistics in `model` are updated as a side effect.
  """
  def loss_fn(model):
    logits = model(images)
    segmentation_loss, per_head = losses.supervision_loss(loss_name, logits, labels)
    l2_penalty = head_l2 * model.head_kernel_sq_sum()
    return segmentation_loss + l2_penalty, (logits[-1], per_head, l2_penalty)

  return nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param), has_aux=True)(model)


def train_step(graphdef: nnx.GraphDef, state: train_state_lib.TrainState, batch: dict[str, jax.Array], *,
               loss_name: str, head_l2: float) -> tuple[train_state_lib.TrainState, dict[str, jax.Array]]:
  """One optimizer step (and moving-average update); returns the new state and additive metric sums."""
  model, optimizer, ema = train_state_lib.merge(graphdef, state)
  model.train()
  images, labels = _inputs(batch)
  (loss, (logits, per_head, l2_penalty)), grads = loss_and_grads(
      model, images, labels, loss_name=loss_name, head_l2=head_l2)
  optimizer.update(model, grads)
  if ema is not None:
    ema.update(model)
  sums = metrics.segmentation_sums(logits, labels)
  # Losses are per batch; summed over steps they average correctly via 'steps'.
  sums.update(loss=loss, l2_penalty=l2_penalty, steps=jnp.ones((), jnp.float32))
  for k in range(per_head.shape[0]):
    sums[f'loss_head{k}'] = per_head[k]
  return train_state_lib.pure_state(model, optimizer, ema), sums


def eval_step(graphdef: nnx.GraphDef, state: train_state_lib.TrainState,
              batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Inference-mode metric sums, with padded examples (weight 0) left out.

  Besides the thresholded counts it sums each head's soft Dice terms, so the
  validation Dice loss is computed over the whole split at once (as the training
  loss is over a whole batch), whatever the batching or number of devices.
  """
  model = train_state_lib.inference_model(graphdef, state)
  images, labels = _inputs(batch)
  weights = batch['weight'].astype(jnp.float32)
  logits = model(images)
  sums = metrics.segmentation_sums(logits[-1], labels, weights)
  w = weights[:, None, None, None]
  for k, head_logits in enumerate(logits):
    probs = jax.nn.sigmoid(head_logits) * w
    sums[f'soft_intersection{k}'] = jnp.sum(probs * labels)
    sums[f'soft_prediction{k}'] = jnp.sum(probs)
    sums[f'soft_label{k}'] = jnp.sum(labels * w)
  return sums


def predict_step(graphdef: nnx.GraphDef, state: train_state_lib.TrainState,
                 batch: dict[str, jax.Array]) -> jax.Array:
  """Foreground probabilities of the last head, in inference mode."""
  model = train_state_lib.inference_model(graphdef, state)
  return jax.nn.sigmoid(model(_inputs(batch)[0])[-1])


def dice_loss_from_sums(sums: dict[str, Any]) -> float:
  """Sum over heads of the soft Dice loss over the whole evaluated split."""
  total, k = 0.0, 0
  while f'soft_intersection{k}' in sums:
    inter, pred, label = (float(sums[f'{n}{k}']) for n in ('soft_intersection', 'soft_prediction', 'soft_label'))
    total += 1.0 - (2.0 * inter + _DICE_EPS) / (pred + label + _DICE_EPS)
    k += 1
  return total


def jit_train_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh):
  """The train step compiled for `mesh`, donating the old state."""
  step = functools.partial(train_step, graphdef, loss_name=config.loss, head_l2=config.head_l2)
  repl = sharding.replicated(mesh)
  return jax.jit(step, in_shardings=(repl, sharding.batch_sharded(mesh)), out_shardings=(repl, repl),
                 donate_argnums=0)


def jit_eval_step(graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh):
  repl = sharding.replicated(mesh)
  return jax.jit(functools.partial(eval_step, graphdef),
                 in_shardings=(repl, sharding.batch_sharded(mesh)), out_shardings=repl)


def jit_predict_step(graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh):
  batch = sharding.batch_sharded(mesh)
  return jax.jit(functools.partial(predict_step, graphdef),
                 in_shardings=(sharding.replicated(mesh), batch), out_shardings=batch)


def batch_spec(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of a global training batch, to compile the step before the data arrives."""
  height, width = config.image_size
  batch = sharding.batch_sharded(mesh)
  return {
      'image': jax.ShapeDtypeStruct((config.batch_size, height, width, 3), jnp.uint8, sharding=batch),
      'mask': jax.ShapeDtypeStruct((config.batch_size, height, width, 1), jnp.uint8, sharding=batch),
  }
