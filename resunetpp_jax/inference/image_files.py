"""Segments a batch of image files into mask files: what `predict` does for an image or a folder."""
import collections
import os
import struct
from typing import Sequence
import zlib

from absl import logging
import numpy as np

from resunetpp_jax import errors
from resunetpp_jax import visualize
from resunetpp_jax.data import image_io
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.runtime import outputs

# A PNG tEXt chunk in every file predict writes: a later run may replace its own masks (with --overwrite), never a
# dataset's ground truth that shares their names.
_MARK = b'Software\0resunetpp_jax predict'
_PNG_SIGNATURE_AND_HEADER = 8 + 25  # The signature, then the IHDR chunk (4 length + 4 type + 13 data + 4 CRC).
# The suffixes of the extra outputs next to <stem>.png.
PROBABILITY_SUFFIX = '_probability.png'
OVERLAY_SUFFIX = '_overlay.png'


def list_inputs(path: str) -> tuple[list[str], list[str]]:
  """The image files at `path` (itself if a file, else the folder's, sorted)
  and the names of the folder's other entries (folders end with '/')."""
  if os.path.isfile(path):
    return [path], []
  if not os.path.isdir(path):
    raise errors.ConfigError(
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
    raise errors.ConfigError(
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


def marked_png(array: np.ndarray) -> bytes:
  """The PNG of `array` with predict's tEXt mark after its header."""
  data = image_io.encode_png(array)
  chunk = struct.pack('>I', len(_MARK)) + b'tEXt' + _MARK + struct.pack('>I', zlib.crc32(b'tEXt' + _MARK))
  return data[:_PNG_SIGNATURE_AND_HEADER] + chunk + data[_PNG_SIGNATURE_AND_HEADER:]


def written_by_predict(path: str) -> bool:
  """Whether the file at `path` is a PNG that predict wrote (its mark follows the header)."""
  try:
    with open(path, 'rb') as f:
      return _MARK in f.read(_PNG_SIGNATURE_AND_HEADER + 12 + len(_MARK))
  except OSError:
    return False


def planned_outputs(paths: Sequence[str], output_dir: str, *, save_probabilities: bool = False,
                    save_overlay: bool = False) -> dict[str, list[str]]:
  """Input path -> the paths of the files predict writes for it, in `output_dir`."""
  stems = output_stems(paths)
  suffixes = ['.png'] + [PROBABILITY_SUFFIX] * save_probabilities + [OVERLAY_SUFFIX] * save_overlay
  return {path: [os.path.join(output_dir, stems[path] + suffix) for suffix in suffixes] for path in paths}


def check_outputs(paths: Sequence[str], output_dir: str, *, overwrite: bool = False,
                  save_probabilities: bool = False, save_overlay: bool = False) -> None:
  """Refuses, before any work, an output folder where predict would lose or mix up files.

  Refused: two inputs' outputs with one name (a.jpg's overlay and the mask of a_overlay.jpg); an output folder that
  holds the inputs, or image files sharing the inputs' stems that predict did not write (a dataset's ground-truth
  masks, e.g. PraNet's masks/ next to images/), even with --overwrite; links and folders under an output's name;
  existing outputs without `overwrite`.
  """
  planned = planned_outputs(paths, output_dir, save_probabilities=save_probabilities, save_overlay=save_overlay)
  writers = collections.defaultdict(list)
  for path, names in planned.items():
    for name in names:
      writers[name].append(os.path.basename(path))
  outputs.refuse_collisions(writers)
  outputs.check_folder(output_dir)
  if not os.path.isdir(output_dir):
    return
  real_output = os.path.realpath(output_dir)
  if any(os.path.realpath(os.path.dirname(os.path.abspath(path))) == real_output for path in paths):
    raise outputs.OutputError(f'--output={output_dir} is the input folder; masks named <stem>.png could overwrite'
                              ' the images: choose another folder.')
  stem = lambda name: os.path.splitext(os.path.basename(name))[0]
  input_stems = {stem(path) for path in paths} | {stem(names[0]) for names in planned.values()}
  foreign = sorted(entry.name for entry in os.scandir(output_dir)
                   if entry.name.lower().endswith(image_io.IMAGE_EXTENSIONS) and stem(entry.name) in input_stems
                   and not entry.is_symlink() and not written_by_predict(entry.path))
  if foreign:
    raise outputs.OutputError(
        f'--output={output_dir} holds {len(foreign)} image files named like the inputs that predict did not write'
        f' ({outputs.listed(foreign)}): it looks like the dataset\'s masks or images, which the masks would'
        ' replace. Choose another folder (even --overwrite does not replace them).')
  outputs.refuse_existing(sorted(name for names in planned.values() for name in names), overwrite=overwrite)


def _write_png(path: str, array: np.ndarray, overwrite: bool):
  outputs.write_bytes(path, marked_png(array), overwrite=overwrite, setting='--output')


def predict_files(predictor: predictor_lib.Predictor, paths: Sequence[str],
                  output_dir: str, *, tta: bool = False,
                  save_probabilities: bool = False,
                  save_overlay: bool = False, overwrite: bool = True) -> dict[str, str]:
  """Writes the mask (and extras) of every readable file in `paths`, each file atomically (`runtime.outputs`).

  Returns:
    Path -> reason, for the files that could not be read, or whose output name was taken meanwhile (an existing
    file without `overwrite`, a link): the other files are still processed.
  """
  outputs.prepare_folder(output_dir)
  planned = planned_outputs(paths, output_dir, save_probabilities=save_probabilities, save_overlay=save_overlay)
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
      mask = prob >= predictor_lib.THRESHOLD
      pictures = [mask.astype(np.uint8) * 255]
      if save_probabilities:
        pictures.append(np.round(prob * 255).astype(np.uint8))
      if save_overlay:
        pictures.append(visualize.overlay(image, mask))
      try:
        for name, picture in zip(planned[path], pictures):
          _write_png(name, picture, overwrite)
      except (outputs.OutputExistsError, outputs.LinkError) as e:
        failures[path] = str(e)
        logging.warning('Not written: %s', e)
    done += len(images)
    logging.info('%d / %d images segmented.', done, len(paths))
  return failures
