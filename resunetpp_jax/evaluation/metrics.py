"""Segmentation metrics as sums that add across batches, devices and hosts (scenic style).

`segmentation_sums` runs under jit on a (possibly sharded) batch and returns scalar sums; `merge_sums` adds two
such dicts; `summarize` turns the totals into ratios once, at the end, so that pooled metrics are exact over
the whole evaluation set rather than means of per-batch ratios.

Empty-mask convention (used everywhere in this package, and by `literature_metrics.per_image_dice_iou`): when
ground truth and prediction are both empty there is nothing to find and nothing was falsely found, so Dice,
IoU, precision and recall are 1; any other 0/0 (e.g. precision with no predicted pixel but a missed polyp) is
0, as in scikit-learn's `zero_division=0`.
"""
from collections.abc import Mapping
import math

import jax
import jax.numpy as jnp
import numpy as np

SUM_KEYS = ('tp', 'fp', 'fn', 'tn', 'dice_sum', 'iou_sum', 'num_images')


def segmentation_sums(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None,
                      threshold: float = 0.5) -> dict[str, jax.Array]:
  """Pooled foreground pixel counts and per-image Dice/IoU sums of a batch, as float32 scalars.

  Args:
    logits: (N, H, W, C) foreground logits.
    labels: (N, H, W, C) ground truth in {0, 1}.
    weights: (N,) 1 for a real image, 0 for padding (contributes to no sum); None means all real.
    threshold: probability threshold; a pixel is foreground when sigmoid(logit) >= threshold, decided as
      logit >= logit(threshold) so that no probability is computed.

  Returns:
    tp, fp, fn, tn: pixel counts pooled over the batch (all channels);
    dice_sum, iou_sum: sums over images of each image's Dice and IoU (pixels of all channels together);
    num_images: number of real images. Exact integer counts while a batch holds fewer than 2**24 pixels.
  """
  if not 0.0 < threshold < 1.0:
    raise ValueError(f'threshold must lie strictly between 0 and 1, got {threshold}.')
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.shape != labels.shape or logits.ndim < 2:
    raise ValueError(f'logits {logits.shape} and labels {labels.shape} must have the same shape (N, H, W, C).')
  num_examples = logits.shape[0]
  if weights is None:
    weights = jnp.ones((num_examples,), jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  if weights.shape != (num_examples,):
    raise ValueError(f'weights must have shape ({num_examples},), one per image, got {weights.shape}.')

  predicted = logits >= math.log(threshold / (1.0 - threshold))
  truth = labels >= 0.5
  pixel_axes = tuple(range(1, logits.ndim))

  def count(mask):
    return jnp.sum(mask, axis=pixel_axes, dtype=jnp.int32).astype(jnp.float32)

  tp = count(predicted & truth)
  fp = count(predicted & ~truth)
  fn = count(~predicted & truth)
  tn = count(~predicted & ~truth)
  union = tp + fp + fn
  nonempty = union > 0
  safe_union = jnp.where(nonempty, union, 1.0)
  dice = jnp.where(nonempty, 2.0 * tp / (safe_union + tp), 1.0)
  iou = jnp.where(nonempty, tp / safe_union, 1.0)
  return {
      'tp': jnp.sum(weights * tp),
      'fp': jnp.sum(weights * fp),
      'fn': jnp.sum(weights * fn),
      'tn': jnp.sum(weights * tn),
      'dice_sum': jnp.sum(weights * dice),
      'iou_sum': jnp.sum(weights * iou),
      'num_images': jnp.sum(weights),
  }


def merge_sums(a: Mapping[str, jax.Array], b: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """Elementwise sum of two `segmentation_sums` results (jax or numpy values)."""
  if set(a) != set(b):
    raise ValueError(f'Cannot merge metric sums with different keys: {sorted(a)} vs {sorted(b)}.')
  return {key: a[key] + b[key] for key in a}


def _ratio(numerator: float, denominator: float, nothing_to_find: bool) -> float:
  if denominator > 0:
    return numerator / denominator
  return 1.0 if nothing_to_find else 0.0


def summarize(sums: Mapping[str, jax.Array]) -> dict[str, float]:
  """Pooled dice, iou, precision, recall and per-image mean_dice, mean_iou from summed counts.

  Empty cases follow the module's convention: all four pooled ratios are 1 when no pixel is foreground in
  either ground truth or prediction, and any other 0/0 is 0.
  """
  missing = [key for key in SUM_KEYS if key not in sums]
  if missing:
    raise ValueError(f'Metric sums lack {missing}; build them with metrics.segmentation_sums.')
  tp, fp, fn, num_images, dice_sum, iou_sum = (
      float(np.asarray(sums[key], np.float64)) for key in ('tp', 'fp', 'fn', 'num_images', 'dice_sum', 'iou_sum'))
  if num_images <= 0:
    raise ValueError('No image was evaluated (num_images == 0): the evaluation split is empty or all padding.')
  nothing_to_find = tp + fp + fn == 0
  return {
      'dice': _ratio(2.0 * tp, 2.0 * tp + fp + fn, nothing_to_find),
      'iou': _ratio(tp, tp + fp + fn, nothing_to_find),
      'precision': _ratio(tp, tp + fp, nothing_to_find),
      'recall': _ratio(tp, tp + fn, nothing_to_find),
      'mean_dice': dice_sum / num_images,
      'mean_iou': iou_sum / num_images,
  }
