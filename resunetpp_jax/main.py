"""Trains: `python -m resunetpp_jax.main --config=configs/kvasir.py --workdir=DIR` (or `resunetpp train`).

--config takes a config file or the name of one shipped in the package (`--config=polyp`).

Override any config key on the command line (`--config.batch_size=16`). Running it
again on the same workdir resumes where it stopped. For several hosts, start one
process per host with the same flags plus `--coordinator_address=HOST:PORT
--num_processes=N --process_id=I` (or `--distributed` where JAX detects the
cluster itself, e.g. under SLURM or Open MPI).

Exit status: 0 when training ended (all steps, or early stopping); 1 for a
problem its message explains (bad config, workdir in use, disk full, NaN loss,
out of memory);
130 or 143 when Ctrl-C or SIGTERM stopped it after saving a checkpoint of the
step it was in (128 + the signal's number, as a shell reports a process that the
signal ended).
"""
import difflib
import re
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from resunetpp_jax import errors
from resunetpp_jax.cli import config_files
from resunetpp_jax.cli import reporting
from resunetpp_jax.config import defaults
from resunetpp_jax.training import loop

_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, TensorBoard logs and the config go.',
                               required=True)
config_flags.DEFINE_config_file('config', None, 'A config file (configs/kvasir.py) or the name of a packaged one'
                                ' (kvasir, polyp, synthetic).', lock_config=True)
_DISTRIBUTED = flags.DEFINE_bool('distributed', False,
                                 'Call jax.distributed.initialize() with cluster auto-detection.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for multi-host runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes in a multi-host run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process\' index in a multi-host run.')


def initialize_distributed():
  """Joins a multi-process run when asked to; a single process needs nothing."""
  if _COORDINATOR.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  elif _DISTRIBUTED.value:
    jax.distributed.initialize()


def _unknown_config_key_message(argv: list[str]) -> str | None:
  """Names the first --config.KEY override whose KEY no config has, with the keys it may have meant."""
  keys = sorted(defaults.get_default_config().keys())
  for arg in argv[1:]:
    match = re.match(r'--(?:no)?config\.(\w+)', arg)
    if match and match.group(1) not in keys:
      key = match.group(1)
      close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
      hint = 'Did you mean ' + ' or '.join(f'"{k}"' for k in close) + '? ' if close else ''
      return (f'{arg.split("=")[0]}: there is no config key {key!r}. {hint}Every key is listed in docs/configuration.md '
              'and in resunetpp_jax/config/defaults.py.')
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with its errors and ml_collections' unknown-key error as one message."""
  try:
    return flags.FLAGS(config_files.resolve(argv))
  except errors.ConfigError as error:  # --config names neither a file nor a shipped config.
    reporting.report(error)
    sys.exit(1)
  except (flags.Error, AttributeError, KeyError) as error:
    message = _unknown_config_key_message(argv) or f'In the command line: {error}'
    reporting.report(errors.UserError(message))
    sys.exit(1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  initialize_distributed()
  logging.info('JAX process %d of %d, %d local / %d global devices (%s).', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)
  metrics = loop.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
  return 128 + metrics['stopped_by_signal'] if 'stopped_by_signal' in metrics else 0


def run():
  flags.mark_flags_as_required(['config'])
  reporting.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  run()
