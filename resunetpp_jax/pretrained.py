r"""Command line: writes a training run's checkpoint as a model file (`resunetpp convert`).

  python -m resunetpp_jax.pretrained --workdir=WORKDIR [--checkpoint=latest] \
      --output=model.safetensors [--card=card.json]

The file holds the network and its config (checkpoints/model_file.py says how); predict, evaluate and export read
it with --model, and `Predictor.pretrained(path)` in Python. An existing --output is not replaced without
--overwrite, and never a file of the workdir itself (config.json, the lock, checkpoints); the file is written under
a temporary name and renamed (`runtime.outputs`), so a full or read-only disk keeps the old file and says so.
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
from resunetpp_jax.runtime import outputs


def define_flags():
  """The converter's flags; defined only when run as a program."""
  flags.DEFINE_string('workdir', None, 'The training workdir (config.json, checkpoints/).', required=True)
  flags.DEFINE_string('checkpoint', 'latest', "'best', 'latest' or a step.")
  flags.DEFINE_string('output', None, 'The model file to write (.safetensors).', required=True)
  flags.DEFINE_string('card', None, 'A JSON file of model-card facts to store in the metadata.')
  flags.DEFINE_bool('overwrite', False, 'Replace an existing --output (without it, the converter refuses before'
                    ' any work). Never a file of --workdir.')


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  workdir, output = os.path.realpath(args.workdir), os.path.realpath(args.output)
  if os.path.commonpath([workdir, output]) == workdir:
    raise outputs.OutputError(f'--output={args.output} is inside --workdir={args.workdir}, whose files (config.json,'
                              ' checkpoints) it could replace: write the model file elsewhere.')
  outputs.check_folder(os.path.dirname(os.path.abspath(args.output)))
  outputs.refuse_existing([args.output], overwrite=args.overwrite)
  card = None
  if args.card:
    try:
      card = json.loads(pathlib.Path(args.card).read_text())
    except (OSError, ValueError) as error:
      raise errors.UserError(f'--card={args.card} cannot be read as JSON ({error}): give a JSON file of model-card'
                             ' facts, or leave --card out.') from error
  config = workdir_config.load_config(args.workdir)
  model, step = model_sources.restore_model(args.workdir, config, model_sources.parse_checkpoint(args.checkpoint))
  model_file.save(model, config, args.output, step=step, card=card, overwrite=args.overwrite)
  print(f'Wrote {args.output}: step {step} of {args.workdir}, {os.path.getsize(args.output) / 2**20:.1f} MiB.')


def run():
  define_flags()
  reporting.run(main)


if __name__ == '__main__':
  run()
