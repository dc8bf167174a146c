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
with --save_overlay DIR/<stem>_overlay.png. Files that cannot be read
(corrupt, truncated, or declaring more than --max_pixels pixels) are listed at
the end and make the exit status 1; the others are still processed. Entries of
an input folder that are not image files (other extensions, folders, devices)
are skipped and listed. A video file (mp4, avi, mov, mkv, ...) gets an overlay
video and a CSV with a row per frame instead: see `video`.
"""
import collections
import os
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np

from resunetpp_jax import cli
from resunetpp_jax import config_validation
from resunetpp_jax import inference
from resunetpp_jax import video
from resunetpp_jax import visualize
from resunetpp_jax.data import image_io

def list_inputs(path: str) -> tuple[list[str], list[str]]:
  """The image files at `path` (itself if a file, else the folder's, sorted)
  and the names of the folder's other entries (folders end with '/')."""
  if os.path.isfile(path):
    return [path], []
  if not os.path.isdir(path):
    raise config_validation.ConfigError(
        f'--input={path} is neither a file nor a folder.')
  files, skipped = [], []
  for entry in sorted(os.scandir(path), key=lambda entry: entry.name):
    if entry.is_dir():
      skipped.append(entry.name + os.sep)
    elif (entry.is_file() and
          entry.name.lower().endswith(image_io.IMAGE_EXTENSIONS)):
      files.append(entry.path)
    else:  # Another extension, a device, a pipe, a broken link.
      skipped.append(entry.name)
  if not files:
    raise config_validation.ConfigError(
        f'--input={path} holds no image file (expected one of'
        f' {", ".join(image_io.IMAGE_EXTENSIONS)}).')
  return files, skipped


def output_stems(paths: Sequence[str]) -> dict[str, str]:
  """Path -> output name: the file's stem, or its whole name where two files
  share a stem (e.g. 1.png and 1.tif), so no mask overwrites another."""
  stem = lambda path: os.path.splitext(os.path.basename(path))[0]
  counts = collections.Counter(stem(path) for path in paths)
  return {path: stem(path) if counts[stem(path)] == 1 else
          os.path.basename(path) for path in paths}


def _write_png(path: str, array: np.ndarray):
  with open(path, 'wb') as f:
    f.write(image_io.encode_png(array))


def predict_files(predictor: inference.Predictor, paths: Sequence[str],
                  output_dir: str, *, tta: bool = False,
                  save_probabilities: bool = False,
                  save_overlay: bool = False) -> dict[str, str]:
  """Writes the mask (and extras) of every readable file in `paths`.

  Returns:
    Path -> reason, for the files that could not be read.
  """
  os.makedirs(output_dir, exist_ok=True)
  stems = output_stems(paths)
  failures = {}
  done = 0
  for start in range(0, len(paths), predictor.batch_size):
    images = {}
    for path in paths[start:start + predictor.batch_size]:
      try:
        images[path] = image_io.read_image(path)
      except image_io.ImageReadError as e:
        failures[path] = str(e)
        logging.warning('Skipped: %s', e)
    if not images:
      continue
    probabilities = predictor.predict_proba(list(images.values()), tta)
    for (path, image), prob in zip(images.items(), probabilities):
      stem = os.path.join(output_dir, stems[path])
      mask = prob >= inference.THRESHOLD
      _write_png(f'{stem}.png', mask.astype(np.uint8) * 255)
      if save_probabilities:
        _write_png(f'{stem}_probability.png',
                   np.round(prob * 255).astype(np.uint8))
      if save_overlay:
        _write_png(f'{stem}_overlay.png', visualize.overlay(image, mask))
    done += len(images)
    logging.info('%d / %d images segmented.', done, len(paths))
  return failures


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
  flags.DEFINE_integer('batch_size', 8, 'Images per device call.')
  flags.DEFINE_float(
      'temporal_smoothing', 0.0, 'Video only: the weight alpha of the past in'
      ' an exponential moving average of the probability maps across frames,'
      ' in [0, 1) (0: off). Steadies masks that flicker, at the cost of lag.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  checkpoint = inference.parse_checkpoint(args.checkpoint)
  paths, skipped = list_inputs(args.input)
  if video.is_video(args.input):
    if args.save_probabilities:
      raise config_validation.ConfigError(
          '--save_probabilities is for images; a video gets its per-frame'
          ' values in the CSV.')
    if not 0 <= args.temporal_smoothing < 1:
      raise config_validation.ConfigError(
          f'--temporal_smoothing={args.temporal_smoothing}: expected a weight'
          ' in [0, 1) (0: off).')
  elif args.temporal_smoothing:
    raise config_validation.ConfigError(
        '--temporal_smoothing is for a video --input.')
  input_folder = (args.input if os.path.isdir(args.input)
                  else os.path.dirname(args.input) or '.')
  if os.path.realpath(input_folder) == os.path.realpath(args.output):
    raise config_validation.ConfigError(
        f'--output={args.output} is the input folder; masks named <stem>.png'
        ' could overwrite the images: choose another folder.')
  predictor = inference.Predictor.from_flags(
      args.workdir, args.model, checkpoint, args.batch_size)
  if video.is_video(args.input):
    return video.report(video.segment_video(
        predictor, args.input, args.output, tta=args.tta,
        smoothing=args.temporal_smoothing), predictor.step)
  failures = predict_files(
      predictor, paths, args.output, tta=args.tta,
      save_probabilities=args.save_probabilities,
      save_overlay=args.save_overlay)
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


if __name__ == '__main__':
  define_flags()
  cli.run(main)
