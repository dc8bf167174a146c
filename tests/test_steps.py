"""The step functions' interface: the train state's form."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from resunetpp_jax import default_config
from resunetpp_jax import sharding
from resunetpp_jax import steps
from resunetpp_jax import train_state


def _tiny_config():
  config = default_config.get_default_config()
  config.filters = (4, 8)
  config.image_size = (16, 16)
  config.batch_size = 2
  return config


def test_train_state_holds_arrays_only_and_merges_back():
  config = _tiny_config()
  graphdef, state = train_state.create_train_state(config, sharding.create_mesh(), total_steps=10)
  # No nnx.Variable nodes: the step's inputs and outputs flatten in C++, not in Python per Variable.
  nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  assert nodes and all(isinstance(x, jax.Array) for x in nodes)
  model, optimizer = nnx.merge(graphdef, state)
  assert isinstance(optimizer, nnx.Optimizer)
  kernel = model.enc[0].unit.conv1.kernel[...]
  np.testing.assert_array_equal(kernel, state[0]['enc'][0]['unit']['conv1']['kernel'])
  # A train step returns the same structure, so the compiled step can be fed its own output.
  step = steps.jit_train_step(config, graphdef, sharding.create_mesh())
  batch = {'image': jnp.zeros((2, 16, 16, 3), jnp.uint8), 'mask': jnp.ones((2, 16, 16, 1), jnp.uint8)}
  structure = jax.tree.structure(state)
  new_state, _ = step(state, batch)
  assert jax.tree.structure(new_state) == structure
