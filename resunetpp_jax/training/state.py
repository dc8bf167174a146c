"""The training state: the NNX state of (model, optimizer[, EMA]) as plain nested dicts, replicated on the mesh.

The state crosses the jitted step's boundary every step, so its form is a cost on the host: as `nnx.State`
(a tree of `Variable` objects) flattening and rebuilding it took 10 ms per step on the H200 host, a third
of a batch-8 step; as the pure dicts of `nnx.to_pure_dict` it takes under 1 ms. `nnx.merge(graphdef, state)`
accepts the pure form, and it is also what the checkpoints hold.

With `config.ema_decay > 0` a third entry holds `nnx.EMA`'s moving average of the model state (parameters and
BatchNorm statistics, the structure of entry 0 under 'params'): the weights that validation scores and that
`evaluate`, `predict` and exports use.
"""
from typing import Any

from flax import nnx
import jax
import ml_collections
import numpy as np

from resunetpp_jax.models import initialization
from resunetpp_jax.training import fine_tuning
from resunetpp_jax.training import optimizer as optimizer_lib
from resunetpp_jax.training import sharding

# {0: model state, 1: optimizer state[, 2: EMA state]}: `nnx.to_pure_dict` of `nnx.state((model, optimizer[, ema]))`.
TrainState = dict[int, Any]


def pure_state(model: nnx.Module, optimizer: nnx.Optimizer, ema: nnx.EMA | None = None) -> TrainState:
  return nnx.to_pure_dict(nnx.state((model, optimizer) if ema is None else (model, optimizer, ema)))


def merge(graphdef: nnx.GraphDef, state: TrainState) -> tuple[nnx.Module, nnx.Optimizer, nnx.EMA | None]:
  """The live (model, optimizer, EMA or None) of a state."""
  merged = nnx.merge(graphdef, state)
  return merged if len(merged) == 3 else (*merged, None)


def inference_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
  """The model that is scored and shipped, in eval mode: the moving average when the run keeps one."""
  model, _, ema = merge(graphdef, state)
  model = model if ema is None else ema.apply_to(model)
  model.eval()
  return model


def create_train_state(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, total_steps: int, *,
                       read_init_from: bool = True) -> tuple[nnx.GraphDef, TrainState]:
  """Initial weights from the host (the same on every host, given the seed or config.init_from), replicated on
  `mesh`. Without `read_init_from` the seed's weights stand in for the file's: the shapes a restore needs."""
  model = initialization.create_initialized_model(config)
  if config.init_from and read_init_from:
    fine_tuning.load_into(model, config)
  tx = optimizer_lib.create_optimizer(config, total_steps)
  # Under jit: run eagerly, optax's init is ~900 tiny computations, each compiled on the spot (5.3 s here, 2.3 s
  # as one jitted function); the values are the same.
  optimizer = nnx.jit(lambda model: nnx.Optimizer(model, tx, wrt=nnx.Param))(model)
  ema = nnx.EMA(model, decay=config.ema_decay) if config.ema_decay > 0 else None
  replicated = sharding.replicated(mesh)
  parts = (model, optimizer) if ema is None else (model, optimizer, ema)
  return nnx.graphdef(parts), jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(replicated, np.asarray(x)), pure_state(*parts))


def abstract_like(state: TrainState) -> TrainState:
  """Shapes, dtypes and shardings of `state`, the target of a checkpoint restore."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
