r"""Segments image files with a trained model: one mask PNG per image.

  python -m resunetpp_jax.predict --workdir=WORKDIR --input=IMAGE_OR_FOLDER \
      --output=DIR [--checkpoint=best|latest|STEP] [--tta] \
      [--save_probabilities] [--save_overlay]
  python -m resunetpp_jax.predict --workdir=WORKDIR --input=VIDEO --output=DIR \
      [--temporal_smoothing=ALPHA]
  python -m resunetpp_jax.predict --model=MODEL.onnx --input=... --output=...
  python -m resunetpp_jax.predict --input=... --output=...   # the shipped model

Reads JPEG, PNG, BMP and TIFF (including the CVC-ClinicDB TIFFs Pillow refuses
and OpenCV reads as grayscale) through `data.image_io`. For each image it writes
DIR/<stem>.png, the mask at the image's original size (0 background, 255
polyp); with --save_probabilities DIR/<stem>_probability.png (8-bit, 255 = 1.0);
with --save_overlay DIR/<stem>_overlay.png. Existing files are never replaced
without --overwrite (the refusal lists them before any work), and never a
folder's image files named like the inputs that predict did not write (a
dataset's masks, e.g. --output=data/masks next to --input=data/images);
inputs whose outputs would share a name are refused. Each file is written
under a temporary name and renamed: a failed run leaves no truncated file and
keeps the old ones. Files that cannot be read
(corrupt, truncated, or declaring more than --max_pixels pixels) are listed at
the end and make the exit status 1; the others are still processed. Entries of
an input folder that are not image files (other extensions, folders, devices)
are skipped and listed. A video file (mp4, avi, mov, mkv, ...) gets an overlay
video and a CSV with a row per frame instead: see `video`.
"""
import sys

from absl import app
from absl import flags

from resunetpp_jax import errors
from resunetpp_jax.cli import reporting
from resunetpp_jax.inference import image_files
from resunetpp_jax.inference import model_sources
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.inference import video


def define_flags():
  """The command line's flags; defined only when run as a program, so that
  importing this module next to other CLIs (main, evaluate) defines nothing."""
  flags.DEFINE_string(
      'workdir', None, 'The training workdir (config.json, checkpoints/).')
  flags.DEFINE_string(
      'model', None, 'Instead of --workdir: an ONNX file of'
      ' resunetpp_jax.export (run with onnxruntime on the CPU) or a model file'
      ' of resunetpp_jax.pretrained (.safetensors). Without --workdir and'
      ' --model, the model shipped with the package.')
  flags.DEFINE_string(
      'input', None, 'An image file, a folder whose image files are all'
      ' read (not its subfolders), or a video file.', required=True)
  flags.DEFINE_string(
      'output', None, 'Folder for the masks; created if missing.',
      required=True)
  flags.DEFINE_string(
      'checkpoint', 'best',
      "'best' (highest validation Dice), 'latest' or a step.")
  flags.DEFINE_bool(
      'tta', False, 'Average the predictions of the image and its left-right'
      ' and upside-down flips (3x slower).')
  flags.DEFINE_bool(
      'save_probabilities', False, 'Also write the probability map as an'
      ' 8-bit PNG.')
  flags.DEFINE_bool(
      'save_overlay', False, 'Also write the image with the mask overlaid.')
  flags.DEFINE_bool(
      'overwrite', False, 'Replace outputs that already exist in --output'
      ' (without it, predict lists them and writes nothing). Never replaces'
      ' image files predict did not write that share the inputs\' names.')
  flags.DEFINE_integer('batch_size', 8, 'Images per device call.')
  flags.DEFINE_float(
      'temporal_smoothing', 0.0, 'Video only: the weight alpha of the past in'
      ' an exponential moving average of the probability maps across frames,'
      ' in [0, 1) (0: off). Steadies masks that flicker, at the cost of lag.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  checkpoint = model_sources.parse_checkpoint(args.checkpoint)
  paths, skipped = image_files.list_inputs(args.input)
  if video.is_video(args.input):
    if args.save_probabilities:
      raise errors.ConfigError(
          '--save_probabilities is for images; a video gets its per-frame'
          ' values in the CSV.')
    if not 0 <= args.temporal_smoothing < 1:
      raise errors.ConfigError(
          f'--temporal_smoothing={args.temporal_smoothing}: expected a weight'
          ' in [0, 1) (0: off).')
  elif args.temporal_smoothing:
    raise errors.ConfigError(
        '--temporal_smoothing is for a video --input.')
  if video.is_video(args.input):
    video.check_outputs(args.input, args.output, overwrite=args.overwrite)
  else:
    image_files.check_outputs(
        paths, args.output, overwrite=args.overwrite,
        save_probabilities=args.save_probabilities,
        save_overlay=args.save_overlay)
  predictor = predictor_lib.Predictor.from_flags(
      args.workdir, args.model, checkpoint, args.batch_size)
  if video.is_video(args.input):
    return video.report(video.segment_video(
        predictor, args.input, args.output, tta=args.tta,
        smoothing=args.temporal_smoothing, overwrite=args.overwrite),
        predictor.step)
  failures = image_files.predict_files(
      predictor, paths, args.output, tta=args.tta,
      save_probabilities=args.save_probabilities,
      save_overlay=args.save_overlay, overwrite=args.overwrite)
  print(f'{len(paths) - len(failures)} of {len(paths)} images segmented into'
        f' {args.output} (checkpoint step {predictor.step}).')
  if skipped:
    print(f'Entries of {args.input} that are not image files (skipped):'
          f' {len(skipped)} ({", ".join(skipped[:5])}'
          f'{", ..." if len(skipped) > 5 else ""})')
  if failures:
    print(f'{len(failures)} files could not be read:', file=sys.stderr)
    for reason in failures.values():
      print(f'  {reason}', file=sys.stderr)
    return 1
  return 0


def run():
  define_flags()
  reporting.run(main)


if __name__ == '__main__':
  run()
