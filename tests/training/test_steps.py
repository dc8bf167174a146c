"""The step functions' interface: the train state's form."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resunetpp_jax.config import defaults
from resunetpp_jax.training import sharding
from resunetpp_jax.training import state as train_state
from resunetpp_jax.training import steps


def _tiny_config():
  config = defaults.get_default_config()
  config.filters = (4, 8)
  config.image_size = (16, 16)
  config.batch_size = 2
  return config


@pytest.mark.slow
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


@pytest.mark.slow
def test_moving_average_blends_each_step_and_is_what_evaluation_scores():
  config = _tiny_config()
  config.ema_decay = 0.75
  mesh = sharding.create_mesh()
  graphdef, state = train_state.create_train_state(config, mesh, total_steps=10)
  initial = jax.tree.map(np.asarray, state[0])
  np.testing.assert_equal(jax.tree.map(np.asarray, state[2]['params']), initial)  # It starts at the weights.
  rng = np.random.default_rng(0)
  batch = {'image': jnp.asarray(rng.integers(0, 256, (2, 16, 16, 3)), jnp.uint8),
           'mask': jnp.asarray(rng.integers(0, 2, (2, 16, 16, 1)), jnp.uint8)}
  state, _ = steps.jit_train_step(config, graphdef, mesh)(state, batch)
  trained = jax.tree.map(np.asarray, state[0])
  # Parameters and BatchNorm statistics alike: 0.75 * before + 0.25 * after the step.
  expected = jax.tree.map(lambda a, b: 0.75 * a + 0.25 * b, initial, trained)
  jax.tree.map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7),
               jax.tree.map(np.asarray, state[2]['params']), expected)
  assert not np.allclose(trained['enc'][0]['unit']['conv1']['kernel'], expected['enc'][0]['unit']['conv1']['kernel'])

  # Evaluation and prediction run the average: the same numbers as a model holding the averaged weights.
  config.ema_decay = 0.0
  plain_graphdef, plain_state = train_state.create_train_state(config, mesh, total_steps=10)
  averaged = {0: state[2]['params'], 1: plain_state[1]}
  batch['weight'] = jnp.ones((2,), jnp.float32)
  np.testing.assert_allclose(steps.jit_predict_step(graphdef, mesh)(state, batch),
                             steps.jit_predict_step(plain_graphdef, mesh)(averaged, batch), rtol=1e-6)
  got, want = (steps.jit_eval_step(g, mesh)(s, batch) for g, s in ((graphdef, state), (plain_graphdef, averaged)))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
