r"""Command line: writes a training run's checkpoint as a model file (`resunetpp convert`).

  python -m resunetpp_jax.pretrained --workdir=WORKDIR [--checkpoint=latest] \
      --output=model.safetensors [--card=card.json]

The file holds the network and its config (checkpoints/model_file.py says how); predict, evaluate and export read
it with --model, and `Predictor.pretrained(path)` in Python.
"""
import json
import os
import pathlib

from absl import flags

from resunetpp_jax import errors
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.cli import reporting
from resunetpp_jax.inference import model_sources


def define_flags():
  """The converter's flags; defined only when run as a program."""
  flags.DEFINE_string('workdir', None, 'The training workdir (config.json, checkpoints/).', required=True)
  flags.DEFINE_string('checkpoint', 'latest', "'best', 'latest' or a step.")
  flags.DEFINE_string('output', None, 'The model file to write (.safetensors).', required=True)
  flags.DEFINE_string('card', None, 'A JSON file of model-card facts to store in the metadata.')


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  config = workdir_config.load_config(args.workdir)
  model, step = model_sources.restore_model(args.workdir, config, model_sources.parse_checkpoint(args.checkpoint))
  card = json.loads(pathlib.Path(args.card).read_text()) if args.card else None
  model_file.save(model, config, args.output, step=step, card=card)
  print(f'Wrote {args.output}: step {step} of {args.workdir}, {os.path.getsize(args.output) / 2**20:.1f} MiB.')


def run():
  define_flags()
  reporting.run(main)


if __name__ == '__main__':
  run()
