r"""Exports the trained network for runtimes that do not run our Python: ONNX, or StableHLO through jax.export.

  python -m resunetpp_jax.export --output=model.onnx [--workdir=WORKDIR [--checkpoint=best|latest|STEP]]
  python -m resunetpp_jax.export --output=model.stablehlo.zip [...]

The format follows the extension. Without --workdir the packaged model (`resunetpp_jax.pretrained`) is exported.
An existing --output is not replaced without --overwrite (refused before the slow part); the file is written under
a temporary name and renamed, so a failed export keeps the old file, and a link under its name is refused.

What the files hold and how to feed them: resunetpp_jax/inference/export_writer.py and docs/export.md.
"""
import os
import pathlib

from absl import flags

from resunetpp_jax import errors
from resunetpp_jax.cli import reporting
from resunetpp_jax.inference import export_writer
from resunetpp_jax.inference import model_sources
from resunetpp_jax.runtime import compilation_cache
from resunetpp_jax.runtime import outputs


def define_flags():
  """The command line's flags; defined only when run as a program."""
  flags.DEFINE_string('output', None, f'The file to write: *{export_writer.ONNX_SUFFIX} or *{export_writer.STABLEHLO_SUFFIX}.', required=True)
  flags.DEFINE_string('workdir', None, 'A training workdir to export; default: the packaged model.')
  flags.DEFINE_string('checkpoint', 'best', "With --workdir: 'best' (highest validation Dice), 'latest' or a step.")
  flags.DEFINE_bool('overwrite', False, 'Replace an existing --output (without it, export refuses before any work).')


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise errors.UserError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  export_writer.output_format(args.output)  # Refuse a wrong name, a taken one or an unwritable folder before the slow part.
  outputs.check_folder(os.path.dirname(os.path.abspath(args.output)))
  outputs.refuse_existing([args.output], overwrite=args.overwrite)
  if args.workdir is None and args['checkpoint'].present:
    raise errors.UserError('--checkpoint selects a checkpoint of --workdir; give --workdir too.')
  model, config, source, step = model_sources.load_model(args.workdir, args.checkpoint)
  values = export_writer.metadata(config, source, step)
  # jax2onnx builds its example models on its first conversion (seconds of compiles): cached for the next export.
  compilation_cache.enable(config.compilation_cache_dir)
  try:
    export_writer.save(model, config, args.output, values, overwrite=args.overwrite)
  except OSError as error:
    raise errors.UserError(f'Cannot write --output={args.output} ({error.strerror or error}); choose a writable'
                        ' folder.') from error
  size_mb = pathlib.Path(args.output).stat().st_size / 2**20
  origin = source.partition(', model card ')[0]  # The card (its per-image scores too) stays in the metadata.
  print(f'Wrote {args.output} ({size_mb:.1f} MB) from the {origin}: input {values["input"]}, image_size'
        f' {values["image_size"]}; output {values["output"]}.')
  return 0


def run():
  define_flags()
  reporting.run(main)


if __name__ == '__main__':
  run()
