"""Runs in a subprocess for test_sharding.py: JAX's device count and process group are fixed at start-up.

Modes:
  grads OUT                 (4 fake CPU devices) gradients of the training loss with the batch sharded over
                            4 devices, and on one device; both saved to OUT.
  step OUT [PORT ID COUNT]  one real training step (steps.jit_train_step) on the fixed global batch, in one
                            process or as process ID of COUNT joined at 127.0.0.1:PORT; process 0 saves the
                            loss and the updated parameters to OUT.
"""
import sys

import jax
import numpy as np

from resunetpp_jax.config import defaults
from resunetpp_jax.training import sharding
from resunetpp_jax.training import state as train_state
from resunetpp_jax.training import steps

BATCH, SIZE = 8, 16


def tiny_config():
  config = defaults.get_default_config()
  config.filters = (8, 16, 32)
  config.image_size = (SIZE, SIZE)
  config.batch_size = BATCH
  # SGD: Adam would normalise the float noise of near-zero gradients (conv biases
  # before BatchNorm) up to a full learning-rate step and hide real differences.
  config.optimizer = 'sgd'
  config.learning_rate = 0.1
  return config


def global_batch_numpy():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)
  masks = (images[..., :1] > 150).astype(np.uint8)  # Learnable and varied per image.
  return {'image': images, 'mask': masks}


def flat(tree) -> dict[str, np.ndarray]:
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(tree))
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def grads_on(mesh, config, batch_np):
  graphdef, state = train_state.create_train_state(config, mesh, total_steps=10)
  batch = {k: jax.device_put(v, sharding.batch_sharded(mesh)) for k, v in batch_np.items()}

  def grads(state, batch):
    model, _ = train_state.nnx.merge(graphdef, state)
    model.train()
    images = batch['image'].astype(np.float32) / 255.0
    labels = batch['mask'].astype(np.float32)
    (loss, _), g = steps.loss_and_grads(model, images, labels, loss_name=config.loss, head_l2=config.head_l2)
    return loss, g

  loss, g = jax.jit(grads, out_shardings=sharding.replicated(mesh))(state, batch)
  return float(loss), flat(g)


def main_grads(out):
  assert jax.device_count() == 4, jax.devices()
  config = tiny_config()
  batch_np = global_batch_numpy()
  mesh4 = sharding.create_mesh()
  mesh1 = jax.make_mesh((1,), (sharding.DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                        devices=jax.devices()[:1])
  loss4, g4 = grads_on(mesh4, config, batch_np)
  loss1, g1 = grads_on(mesh1, config, batch_np)
  np.savez(out, loss4=loss4, loss1=loss1, **{'4' + k: v for k, v in g4.items()},
           **{'1' + k: v for k, v in g1.items()})


def main_step(out, port=None, process_id=0, num_processes=1):
  if port is not None:
    jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=num_processes,
                               process_id=process_id)
  config = tiny_config()
  mesh = sharding.create_mesh()
  graphdef, state = train_state.create_train_state(config, mesh, total_steps=10)
  batch_np = global_batch_numpy()
  local = BATCH // jax.process_count()
  mine = {k: v[jax.process_index() * local:(jax.process_index() + 1) * local] for k, v in batch_np.items()}
  state, sums = steps.jit_train_step(config, graphdef, mesh)(state, sharding.global_batch(mine, mesh))
  params = flat(train_state.nnx.state(train_state.nnx.merge(graphdef, state)[0], train_state.nnx.Param))
  if jax.process_index() == 0:
    np.savez(out, loss=float(sums['loss']), dice_sum=float(sums['dice_sum']), **params)


if __name__ == '__main__':
  mode, out_path, *rest = sys.argv[1:]
  if mode == 'grads':
    main_grads(out_path)
  else:
    main_step(out_path, *(int(a) for a in rest))
