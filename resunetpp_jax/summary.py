"""Prints a Keras-style summary of the configured network: one row per block, output shapes, parameter counts.

  python -m resunetpp_jax.summary --config=configs/kvasir.py [--config.filters='(16, 32, 64, 128, 256)']
      [--config.model=unet]

--config takes a file or the name of a packaged config (`--config=polyp`). Nothing is computed (models/summary.py),
so even the full-size network summarises in seconds on a CPU.
"""
from collections.abc import Sequence

from absl import app
from ml_collections import config_flags

from resunetpp_jax.cli import config_files
from resunetpp_jax.cli import reporting
from resunetpp_jax.models import summary as summary_lib

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Configuration file (e.g. configs/kvasir.py) or name (kvasir).')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _CONFIG.value is None:
    raise app.UsageError('--config is required, e.g. --config=configs/kvasir.py')
  print(summary_lib.summary(_CONFIG.value))


def run():
  reporting.run(main, flags_parser=config_files.flags_parser)


if __name__ == '__main__':
  run()
