"""The optimizer: a base rule with a schedule, times a plateau factor kept in its state.

`optax.nadam` is Adam with Nesterov momentum (Dozat 2016, as optax writes it: eps
1e-8 added outside the square root, constant beta1). Keras' `Nadam`, which the
original used, differs: eps 1e-7 and a warming beta1 "momentum schedule"
(mu_t = beta1 * (1 - 0.5 * 0.96 ** (0.004 * t))). The two agree after a few
thousand steps; the README says so.

The learning-rate-on-plateau factor lives in the optimizer state (an injected
`optax.scale`), so it is checkpointed with everything else and changing it never
recompiles the step.
"""
from flax import nnx
import ml_collections
import optax

_PLATEAU_INDEX = 1  # Position of the injected scale in the chain below.


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  lr = config.learning_rate
  if config.schedule == 'constant':
    return optax.constant_schedule(lr)
  if config.schedule == 'cosine':
    return optax.cosine_decay_schedule(lr, decay_steps=max(total_steps, 1))
  if config.schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=config.warmup_steps, decay_steps=max(total_steps, config.warmup_steps + 1))
  raise ValueError(f'Unknown config.schedule={config.schedule!r}.')


def create_optimizer(config: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(config, total_steps)
  base = {
      'nadam': lambda: optax.nadam(schedule),
      'adam': lambda: optax.adam(schedule),
      'adamw': lambda: optax.adamw(schedule, weight_decay=1e-4),
      'sgd': lambda: optax.sgd(schedule, momentum=0.9, nesterov=True),
  }[config.optimizer]()
  return optax.chain(base, optax.inject_hyperparams(optax.scale)(step_size=1.0))


def plateau_scale(optimizer: nnx.Optimizer) -> nnx.Variable:
  """The variable holding the plateau factor (1, then 0.1, 0.01, ...)."""
  return optimizer.opt_state[_PLATEAU_INDEX].hyperparams['step_size']
