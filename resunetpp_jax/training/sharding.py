"""The device mesh, and turning per-host numpy batches into global sharded arrays.

One code path for 1 CPU, several GPUs and several hosts: the batch is split on the
mesh's 'data' axis, the training state is replicated, and jit inserts the
collectives (BatchNorm statistics, loss and gradient sums span the global batch).
"""
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

DATA_AXIS = 'data'


def create_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every device of every host."""
  return jax.make_mesh(
      (jax.device_count(),), (DATA_AXIS,),
      axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assembles each host's slice of the batch into one array sharded on 'data'."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}
