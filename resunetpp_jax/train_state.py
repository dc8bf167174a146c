"""The training state: the NNX state of (model, optimizer), replicated on the mesh."""
import jax
import ml_collections
import numpy as np
from flax import nnx

from resunetpp_jax import optimizer as optimizer_lib
from resunetpp_jax import sharding
from resunetpp_jax.models import initialization


def create_train_state(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, total_steps: int
                       ) -> tuple[nnx.GraphDef, nnx.State]:
  """Initial weights from the host (the same on every host, given the seed), replicated on `mesh`."""
  model = initialization.create_initialized_model(config)
  optimizer = nnx.Optimizer(model, optimizer_lib.create_optimizer(config, total_steps), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  replicated = sharding.replicated(mesh)
  return graphdef, jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(replicated, np.asarray(x)), state)


def abstract_like(state: nnx.State) -> nnx.State:
  """Shapes, dtypes and shardings of `state`, the target of a checkpoint restore."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
