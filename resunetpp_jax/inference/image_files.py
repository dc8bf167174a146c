"""Segments a batch of image files into mask files: what `predict` does for an image or a folder."""
import collections
import os
from typing import Sequence

from absl import logging
import numpy as np

from resunetpp_jax import errors
from resunetpp_jax import visualize
from resunetpp_jax.data import image_io
from resunetpp_jax.inference import predictor as predictor_lib


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


def _write_png(path: str, array: np.ndarray):
  with open(path, 'wb') as f:
    f.write(image_io.encode_png(array))


def predict_files(predictor: predictor_lib.Predictor, paths: Sequence[str],
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
      mask = prob >= predictor_lib.THRESHOLD
      _write_png(f'{stem}.png', mask.astype(np.uint8) * 255)
      if save_probabilities:
        _write_png(f'{stem}_probability.png',
                   np.round(prob * 255).astype(np.uint8))
      if save_overlay:
        _write_png(f'{stem}_overlay.png', visualize.overlay(image, mask))
    done += len(images)
    logging.info('%d / %d images segmented.', done, len(paths))
  return failures
