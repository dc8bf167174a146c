"""The optimizer: schedules, and the plateau factor that loop.py sets in its state."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from resunetpp_jax.config import defaults
from resunetpp_jax.training import optimizer as optimizer_lib


def _update(config, scale):
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  before = np.asarray(model.kernel[...])
  optimizer = nnx.Optimizer(model, optimizer_lib.create_optimizer(config, total_steps=10), wrt=nnx.Param)
  optimizer_lib.plateau_scale(optimizer).set_value(jnp.float32(scale))
  optimizer.update(model, jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param)))
  return np.asarray(model.kernel[...]) - before


@pytest.mark.parametrize('name', ['nadam', 'sgd'])
def test_plateau_factor_scales_the_update(name):
  config = defaults.get_default_config()
  config.optimizer, config.learning_rate = name, 1e-2
  full, tenth = _update(config, 1.0), _update(config, 0.1)
  assert np.all(full != 0)
  np.testing.assert_allclose(tenth, 0.1 * full, rtol=1e-4)  # Read back through float32 weights.


def test_nadam_first_step_is_optax_nadam():
  config = defaults.get_default_config()
  config.learning_rate = 1e-2
  expected_tx = optax.nadam(1e-2)
  params = {'w': jnp.ones((2,))}
  updates, _ = expected_tx.update({'w': jnp.ones((2,))}, expected_tx.init(params), params)
  np.testing.assert_allclose(_update(config, 1.0), float(updates["w"][0]), rtol=1e-4)


@pytest.mark.parametrize('schedule, at_end', [('constant', 1e-3), ('cosine', 0.0), ('warmup_cosine', 0.0)])
def test_schedules(schedule, at_end):
  config = defaults.get_default_config()
  config.learning_rate, config.schedule, config.warmup_steps = 1e-3, schedule, 10
  lr = optimizer_lib.learning_rate_schedule(config, total_steps=100)
  assert float(lr(100)) == pytest.approx(at_end, abs=1e-9)
  if schedule == 'warmup_cosine':
    assert float(lr(0)) == 0.0 and float(lr(10)) == pytest.approx(1e-3)


def test_trainer_writes_the_plateau_factor_into_the_replicated_state():
  from resunetpp_jax.models import initialization  # pylint: disable=import-outside-toplevel
  from resunetpp_jax.training import periodic
  from resunetpp_jax.training import sharding
  config = defaults.get_default_config()
  config.filters = (8, 16)
  model = initialization.create_initialized_model(config)
  optimizer = nnx.Optimizer(model, optimizer_lib.create_optimizer(config, total_steps=10), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  state = periodic.set_lr_scale(graphdef, state, 0.01, sharding.create_mesh())
  scale = optimizer_lib.plateau_scale(nnx.merge(graphdef, state)[1]).get_value()
  assert float(scale) == pytest.approx(0.01) and scale.sharding.is_fully_replicated
