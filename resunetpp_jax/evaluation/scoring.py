"""Scores probability maps against ground truth at the original size: per image, then per split.

Pooled pixel counts, per-image Dice and IoU at the threshold, and the numbers the polyp papers report
(`literature_metrics`), as `python -m resunetpp_jax.evaluate` writes them.
"""
import itertools
import os
from typing import Any
from typing import Iterable
from typing import Mapping
from typing import Sequence

from absl import logging
import numpy as np

from resunetpp_jax import visualize
from resunetpp_jax.data import image_io
from resunetpp_jax.data import pipeline
from resunetpp_jax.evaluation import literature_metrics
from resunetpp_jax.evaluation import metrics
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.runtime import outputs

THRESHOLD = predictor_lib.THRESHOLD


def score_image(probabilities: np.ndarray, ground_truth: np.ndarray,
                threshold: float = THRESHOLD) -> dict[str, Any]:
  """One image's scores at `threshold` and pixel counts; inputs at the same
  (H, W) size. `literature_metrics.BenchmarkMetrics` adds the papers' numbers.

  Args:
    probabilities: float (H, W) foreground probabilities.
    ground_truth: bool (H, W) mask.
    threshold: a pixel is predicted foreground when its probability >= this.
  """
  ground_truth = np.asarray(ground_truth, bool)
  predicted = probabilities >= threshold
  dice, iou = literature_metrics.per_image_dice_iou(predicted, ground_truth)
  return {
      'dice': dice, 'iou': iou,
      'tp': int(np.count_nonzero(predicted & ground_truth)),
      'fp': int(np.count_nonzero(predicted & ~ground_truth)),
      'fn': int(np.count_nonzero(~predicted & ground_truth)),
      'tn': int(np.count_nonzero(~predicted & ~ground_truth)),
  }


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """Split-level scores at the threshold from `score_image` records.

  Pooled ratios and per-image means follow `metrics.summarize`, so they agree
  with the validation metrics of training on the same pixels.
  """
  if not records:
    raise ValueError('No image to summarize: the split is empty.')
  sums = {key: sum(record[key] for record in records)
          for key in ('tp', 'fp', 'fn', 'tn')}
  sums['dice_sum'] = sum(record['dice'] for record in records)
  sums['iou_sum'] = sum(record['iou'] for record in records)
  sums['num_images'] = len(records)
  return {'num_images': len(records), **metrics.summarize(sums)}


def evaluate_pairs(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
  """Split-level scores, the papers' included, of (probabilities, ground
  truth) pairs."""
  papers = literature_metrics.BenchmarkMetrics()
  records = [{**score_image(prob, truth), **papers.add(prob, truth)}
             for prob, truth in pairs]
  return {**summarize(records), **papers.results()}


def _batches(iterable: Iterable, size: int):
  iterator = iter(iterable)
  while batch := list(itertools.islice(iterator, size)):
    yield batch


def _safe_file_name(name: str) -> str:
  return name.replace(os.sep, '_').replace('/', '_')


def _write_pictures(folder: str, name: str, image: np.ndarray,
                    ground_truth: np.ndarray, predicted: np.ndarray):
  stem = os.path.join(folder, _safe_file_name(name))
  outputs.write_bytes(f'{stem}.png', image_io.encode_png(
      visualize.side_by_side(image, ground_truth, predicted)), setting='--output_dir')
  outputs.write_bytes(f'{stem}_overlay.png', image_io.encode_png(
      visualize.error_overlay(image, ground_truth, predicted)), setting='--output_dir')


def evaluate_split(predictor: predictor_lib.Predictor,
                   examples: pipeline.Examples, *,
                   tta: bool = False,
                   image_folder: str | None = None) -> dict[str, Any]:
  """Scores `predictor` on every image of `examples` (one dataset's split, or the validation data).

  Args:
    predictor: the trained model.
    examples: the images and masks scored.
    tta: average flipped predictions.
    image_folder: where to write the per-image pictures; None writes none.

  Returns:
    The summaries of `summarize` and `BenchmarkMetrics` plus 'images': the
    per-image records.
  """
  if image_folder:
    os.makedirs(image_folder, exist_ok=True)
  papers = literature_metrics.BenchmarkMetrics()
  records = []
  originals = pipeline.iterate_originals(examples)
  for batch in _batches(originals, predictor.batch_size):
    probabilities = predictor.predict_proba([x['image'] for x in batch], tta)
    for example, prob in zip(batch, probabilities):
      records.append({'name': example['name'],
                      'height': int(prob.shape[0]), 'width': int(prob.shape[1]),
                      **score_image(prob, example['mask']),
                      **papers.add(prob, example['mask'])})
      if image_folder:
        _write_pictures(image_folder, example['name'], example['image'],
                        example['mask'], prob >= THRESHOLD)
    logging.log_every_n_seconds(logging.INFO, '%s: %d images scored.', 10,
                                examples.describe(), len(records))
  if not records:
    raise ValueError(f'{examples.describe()} holds no image.')
  return {**summarize(records), **papers.results(), 'images': records}
