"""Command line: `python -m resunetpp_jax.main --config=configs/kvasir.py --workdir=DIR`.

Override any config key on the command line (`--config.batch_size=16`). Running it
again on the same workdir resumes where it stopped. For several hosts, start one
process per host with the same flags plus `--coordinator_address=HOST:PORT
--num_processes=N --process_id=I` (or `--distributed` where JAX detects the
cluster itself, e.g. under SLURM or Open MPI).
"""
import logging as python_logging
import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from resunetpp_jax import config_validation
from resunetpp_jax import train

_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, TensorBoard logs and the config go.',
                               required=True)
config_flags.DEFINE_config_file('config', None, 'A config file of configs/.', lock_config=True)
_DISTRIBUTED = flags.DEFINE_bool('distributed', False,
                                 'Call jax.distributed.initialize() with cluster auto-detection.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for multi-host runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes in a multi-host run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process\' index in a multi-host run.')


_CHATTY_LIBRARIES = ('/orbax/', '/tensorflow_datasets/', '/grain/', '/jax/_src/xla_bridge')


def _hide_library_info_logs():
  """Keeps the console to our own progress: libraries' INFO lines (orbax logs ~30 per save) are dropped."""
  def keep(record: python_logging.LogRecord) -> bool:
    return record.levelno >= python_logging.WARNING or not any(p in record.pathname for p in _CHATTY_LIBRARIES)
  logging.get_absl_handler().addFilter(keep)


def initialize_distributed():
  """Joins a multi-process run when asked to; a single process needs nothing."""
  if _COORDINATOR.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  elif _DISTRIBUTED.value:
    jax.distributed.initialize()


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with ml_collections' unknown-key error turned into a one-line message."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as error:
    sys.exit(f'Error in the command line: {error}\nEvery config key is listed in README.md, "Configuration".')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  _hide_library_info_logs()
  initialize_distributed()
  logging.info('JAX process %d of %d, %d local / %d global devices (%s).', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)
  try:
    train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
  except config_validation.ConfigError as error:
    sys.exit(f'Configuration error: {error}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main, flags_parser=parse_flags)
