"""Checks a config before anything is built or compiled.

Every error names the key, the value given and what is allowed, so a typo in a
32-hour run's command line costs seconds, not a failed compile.
"""
from collections.abc import Iterable
import math

import ml_collections

from resunetpp_jax.data.plan import DataPlan
from resunetpp_jax.errors import ConfigError

DTYPES = ('float32', 'bfloat16')
AUGMENT_POLICIES = ('original', 'light', 'none')
OPTIMIZERS = ('nadam', 'adam', 'adamw', 'sgd')
SCHEDULES = ('constant', 'cosine', 'warmup_cosine')
# The largest image_size side: it sets the memory of every batch (and of predict on any image), so a typo or a
# damaged model file must not ask for terabytes.
MAX_IMAGE_SIDE = 4096


def _require_finite(config):
  """NaN or Inf in any float key (`--config.learning_rate=nan`) would pass every range check below."""
  for key, value in config.items():
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f'config.{key}={value!r} must be a finite number.')


def _require_choice(config, key: str, allowed: Iterable[str]):
  allowed = tuple(allowed)
  if config[key] not in allowed:
    raise ConfigError(f'config.{key}={config[key]!r} is not one of {", ".join(map(repr, allowed))}.')


def _require_positive(config, key: str, allow_zero: bool = False):
  value = config[key]
  if not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
    raise ConfigError(f'config.{key}={value!r} must be a {"non-negative" if allow_zero else "positive"} number.')


def _validate_data(config, datasets: list[str]) -> DataPlan:
  """The data keys: well-formed, known datasets, one kind of validation; parsed once into the plan."""
  plan = DataPlan.from_config(config)
  if not plan.train:
    raise ConfigError("config.train_data is empty: name the training data, e.g. 'kvasir_seg:pranet_train'.")
  named = {'train_data': plan.train, 'validation_data': plan.validation, 'test_data': plan.test,
           'manual_dirs': [name for name, _ in plan.manual_dirs]}
  for key, items in named.items():
    for item in items:
      name = getattr(item, 'name', item)
      if name not in datasets:
        raise ConfigError(f'config.{key} names {name!r}, which is not one of {", ".join(map(repr, datasets))}.')
  if not 0.0 <= config.validation_fraction < 1.0:
    raise ConfigError(f'config.validation_fraction={config.validation_fraction!r} must be in [0, 1).')
  if config.validation_fraction > 0 and plan.validation:
    raise ConfigError(f'config.validation_fraction={config.validation_fraction} and '
                      f'config.validation_data={config.validation_data!r} both choose the validation data: '
                      "set one (the other to 0 or '').")
  return plan


def _validate_resunetpp_switches(config):
  """Each switch one of its choices (the original's first), and away from it only when the ResUNet++ is built."""
  from resunetpp_jax.models import resunetpp  # pylint: disable=import-outside-toplevel (see validate)
  switches = {'resunetpp_block': resunetpp.BLOCKS, 'resunetpp_attention': resunetpp.ATTENTIONS,
              'resunetpp_downsample': resunetpp.DOWNSAMPLES, 'resunetpp_upsample': resunetpp.UPSAMPLES}
  for key, allowed in switches.items():
    value = config.get(key, allowed[0])  # A model file written before the switches holds the original.
    if value not in allowed:
      raise ConfigError(f'config.{key}={value!r} is not one of {", ".join(map(repr, allowed))}.')
    if value != allowed[0] and config.model != 'resunetpp':
      raise ConfigError(f'config.{key}={value!r} applies only to model=\'resunetpp\' '
                        f'(config.model={config.model!r}): leave it at {allowed[0]!r}.')


def validate_model(config: ml_collections.ConfigDict):
  """The keys that build the network (model, dtype, filters, image_size, num_classes): what a model file's
  embedded config must satisfy too."""
  from resunetpp_jax import models  # pylint: disable=import-outside-toplevel (see validate)
  _require_finite(config)
  _require_choice(config, 'model', models.MODELS)
  _require_choice(config, 'dtype', DTYPES)
  _validate_resunetpp_switches(config)
  filters = tuple(config.filters) if isinstance(config.filters, (list, tuple)) else (config.filters,)
  if len(filters) < 2 or any(not isinstance(f, int) or isinstance(f, bool) or f < 1 for f in filters):
    raise ConfigError(f'config.filters={filters!r} must be at least two positive integers, one per level.')
  factor = 2 ** (len(filters) - 1)
  size = tuple(config.image_size) if isinstance(config.image_size, (list, tuple)) else (config.image_size,)
  if len(size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 or s % factor for s in size):
    raise ConfigError(
        f'config.image_size={size!r} must be (height, width) with both divisible by {factor} '
        f'(the network halves the resolution {len(filters) - 1} times); e.g. (288, 384).')
  if max(size) > MAX_IMAGE_SIDE:
    raise ConfigError(f'config.image_size={size!r}: each side must be at most {MAX_IMAGE_SIDE} pixels (it sets the'
                      ' memory of every batch).')
  _require_positive(config, 'num_classes')
  if not isinstance(config.num_classes, int):
    raise ConfigError(f'config.num_classes={config.num_classes!r} must be a positive integer.')


def validate(config: ml_collections.ConfigDict, *, num_devices: int, num_processes: int = 1) -> DataPlan:
  """Raises ConfigError for the first value that cannot work; returns the data plan, parsed once."""
  # Imported here: the registries pull in JAX/Flax/TFDS, which validation of the
  # plain values above must not wait for.
  from resunetpp_jax.data import registry
  from resunetpp_jax.models import losses

  validate_model(config)
  _require_choice(config, 'loss', sorted(losses.LOSSES))
  _require_choice(config, 'augment', AUGMENT_POLICIES)
  _require_choice(config, 'optimizer', OPTIMIZERS)
  _require_choice(config, 'schedule', SCHEDULES)

  _require_positive(config, 'batch_size')
  if config.batch_size % num_devices:
    raise ConfigError(f'config.batch_size={config.batch_size} must be divisible by the number of devices '
                      f'({num_devices}): the global batch is split evenly over them.')
  if config.batch_size % num_processes:
    raise ConfigError(f'config.batch_size={config.batch_size} must be divisible by the number of processes '
                      f'({num_processes}).')
  if not 0.0 <= config.bn_momentum < 1.0:
    raise ConfigError(f'config.bn_momentum={config.bn_momentum!r} must be in [0, 1).')
  if not 0.0 <= config.ema_decay < 1.0:
    raise ConfigError(f'config.ema_decay={config.ema_decay!r} must be in [0, 1): 0 keeps no moving average.')
  _require_positive(config, 'learning_rate')
  _require_positive(config, 'head_l2', allow_zero=True)
  _require_positive(config, 'epoch_multiplier')
  _require_positive(config, 'num_workers', allow_zero=True)
  _require_positive(config, 'log_every_steps')
  _require_positive(config, 'checkpoint_every_steps')
  _require_positive(config, 'keep_checkpoints')
  _require_positive(config, 'keep_best_checkpoints')
  _require_positive(config, 'plateau_patience', allow_zero=True)
  _require_positive(config, 'early_stop_patience', allow_zero=True)
  _require_positive(config, 'warmup_steps', allow_zero=True)
  if config.plateau_factor <= 1:
    raise ConfigError(f'config.plateau_factor={config.plateau_factor!r} must be > 1 (the learning rate is '
                      'divided by it).')
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise ConfigError('config.num_epochs or config.num_train_steps must be positive.')
  if config.eval_every_steps == 0 or config.eval_every_steps < -1:
    raise ConfigError(f'config.eval_every_steps={config.eval_every_steps} must be positive, or -1 for once '
                      'per epoch.')
  # Last: the plan copies the values checked above.
  return _validate_data(config, sorted(registry.DATASETS))
