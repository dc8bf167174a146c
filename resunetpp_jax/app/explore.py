"""The evaluation explorer's data: `evaluate`'s JSON files, a dataset folder's pairs, per-image scores of a model.

A dataset folder holds images/ and masks/ with files of the same stem (Kvasir-SEG's layout). `evaluate_folder`
scores a model on it and writes a JSON in the format of `evaluation.runner` (one record per image under 'images'),
so the explorer reads its own runs and the command's alike.
"""
import glob
import json
import os
from typing import Callable

import numpy as np

from resunetpp_jax import errors
from resunetpp_jax import visualize
from resunetpp_jax.data import image_io
from resunetpp_jax.evaluation import scoring
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.runtime import outputs

COLUMNS = ('name', 'dice', 'iou', 'polyp_size_%', 'width', 'height')


def read_evaluation(folder_or_file: str) -> dict[str, dict]:
  """{file stem: result} of the JSON files `evaluate` wrote in a folder (or one such file)."""
  path = os.path.expanduser(folder_or_file.strip())
  files = [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, '*.json')))
  if not os.path.exists(path):
    raise errors.UserError(f'{folder_or_file}: no such folder or file.')
  results = {}
  for file in files:
    try:
      with open(file, encoding='utf-8') as f:
        result = json.load(f)
    except (OSError, ValueError) as e:
      raise errors.UserError(f'{file}: not a JSON file of evaluate ({e}).') from e
    if isinstance(result, dict) and isinstance(result.get('images'), list):
      results[os.path.splitext(os.path.basename(file))[0]] = result
  if not results:
    raise errors.UserError(f'{folder_or_file}: holds no JSON file of `resunetpp evaluate` with per-image records.')
  return results


def rows(result: dict) -> list[list]:
  """One row per image, in COLUMNS order; polyp size is the true mask's share of the image."""
  table = []
  for record in result['images']:
    pixels = record['height'] * record['width']
    size = 100.0 * (record['tp'] + record['fn']) / pixels if pixels else 0.0
    table.append([record['name'], round(record['dice'], 4), round(record['iou'], 4), round(size, 2),
                  record['width'], record['height']])
  return table


def sort_and_filter(table: list[list], sort_by: str = 'dice', descending: bool = False,
                    name_contains: str = '', dice_below: float = 1.0) -> list[list]:
  """The rows whose name contains `name_contains` and Dice <= `dice_below`, sorted by a column of COLUMNS."""
  if sort_by not in COLUMNS:
    raise errors.UserError(f'Cannot sort by {sort_by!r}: expected one of {", ".join(COLUMNS)}.')
  column = COLUMNS.index(sort_by)
  kept = [row for row in table if name_contains.lower() in str(row[0]).lower() and row[1] <= dice_below]
  return sorted(kept, key=lambda row: row[column], reverse=descending)


def list_pairs(folder: str) -> dict[str, tuple[str, str]]:
  """{stem: (image path, mask path)} of a folder with images/ and masks/; UserError where it is not one."""
  folder = os.path.expanduser(folder.strip())
  images_dir, masks_dir = os.path.join(folder, 'images'), os.path.join(folder, 'masks')
  if not (os.path.isdir(images_dir) and os.path.isdir(masks_dir)):
    raise errors.UserError(f'{folder}: expected a dataset folder with images/ and masks/ in it.')

  def by_stem(path):
    return {os.path.splitext(name)[0]: os.path.join(path, name) for name in sorted(os.listdir(path))
            if name.lower().endswith(image_io.IMAGE_EXTENSIONS)}

  images, masks = by_stem(images_dir), by_stem(masks_dir)
  pairs = {stem: (images[stem], masks[stem]) for stem in images if stem in masks}
  if not pairs:
    raise errors.UserError(f'{folder}: no image in images/ has a mask of the same name in masks/.')
  return pairs


def evaluate_folder(predictor: predictor_lib.Predictor, folder: str, output_json: str, *, model_name: str,
                    limit: int | None = None, tta: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> dict:
  """Scores `predictor` on the pairs of `folder` (the first `limit`), writes and returns the result JSON."""
  pairs = list(list_pairs(folder).items())[:limit]
  records = []
  for done, (stem, (image_path, mask_path)) in enumerate(pairs):
    image, truth = image_io.read_image(image_path), image_io.read_mask(mask_path)
    if truth.shape != image.shape[:2]:
      raise errors.UserError(f'{mask_path} is {truth.shape[1]}x{truth.shape[0]}, its image'
                             f' {image.shape[1]}x{image.shape[0]}.')
    probabilities = predictor.predict_proba(image, tta)
    records.append({'name': stem, 'height': int(image.shape[0]), 'width': int(image.shape[1]),
                    **scoring.score_image(probabilities, truth)})
    if progress:
      progress(done + 1, len(pairs))
  result = {'dataset': os.path.abspath(folder), 'split': 'folder', 'model': predictor.config.model,
            'checkpoint': model_name, 'checkpoint_step': predictor.step, 'tta': tta,
            'threshold': scoring.THRESHOLD, **scoring.summarize(records), 'images': records}
  outputs.prepare_folder(os.path.dirname(os.path.abspath(output_json)), 'the evaluation folder')
  outputs.write_text(output_json, json.dumps(result, indent=2))
  return result


def error_picture(predictor: predictor_lib.Predictor, image_path: str, mask_path: str,
                  tta: bool = False) -> tuple[np.ndarray, float]:
  """The error overlay (yellow found, green missed, red false alarm) of one pair, and its Dice."""
  image, truth = image_io.read_image(image_path), image_io.read_mask(mask_path)
  predicted = predictor.predict_mask(image, tta)
  dice = scoring.score_image(predicted.astype(np.float32), truth)['dice']
  return visualize.error_overlay(image, truth, predicted), dice


def result_map(predictor: predictor_lib.Predictor, image: np.ndarray, tta: bool = False) -> np.ndarray:
  """PraNet's MyTest.py result map: logits upsampled to the image, sigmoid, min-max normalised, 8-bit."""
  probabilities = predictor.predict_proba(image, tta)  # Logits resized bilinearly, then the sigmoid.
  low, high = float(probabilities.min()), float(probabilities.max())
  normalised = (probabilities - low) / (high - low + 1e-8)
  return np.round(normalised * 255).astype(np.uint8)
