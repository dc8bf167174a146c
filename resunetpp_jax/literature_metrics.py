"""Per-image metrics as the polyp-segmentation literature reports them, for predictions at original size.

Most papers since PraNet (Fan et al., MICCAI 2020) report "mDice" and "mIoU" from PraNet's evaluation
toolbox. This module reproduces that pipeline for one image, following DengPingFan/PraNet `MyTest.py` and the
toolbox's MATLAB `eval/main.m` + `Fmeasure_calu.m` (ported to Python as `utils/eval_functions.py` in
plemeri/UACANet, with the same `Fmeasure_calu`):

1. `MyTest.py` min-max normalises the probability map, `(p - min) / (max - min + 1e-8)`, and saves it as an
   8-bit PNG; `scipy.misc.imsave` rescales it to 0..255 and rounds, so the toolbox reads levels
   round(255 (p - min) / (max - min)), and its own `mapminmax` leaves them so. A constant map is all level 0.
2. For each of the 256 thresholds `Thresholds = 1:-1/255:0`, a pixel is foreground when its level / 255 >=
   the threshold (`Fmeasure_calu`: `Label3(sMap >= threshold) = 1`); Dice = 2 TP / (|G| + |P|) and
   IoU = TP / (|G| + |P| - TP), except that both are 0 whenever TP = 0 - so an image with empty ground truth
   scores 0 at every threshold.
3. mDice (mIoU) of the image is the mean over the 256 thresholds; the toolbox's meanDic is then the mean over
   images (the order of the two means does not matter).

Thresholds are compared as exact 8-bit levels (level >= j for threshold j/255); the toolbox's floating-point
thresholds may round either way at exact equality. One histogram pass replaces the 256 threshold passes.
"""
import numpy as np

NUM_THRESHOLDS = 256
# PRANET_THRESHOLDS[j] = j / 255: the curves below are indexed by ascending threshold (the toolbox lists them
# from 1 down to 0).
PRANET_THRESHOLDS = np.arange(NUM_THRESHOLDS) / (NUM_THRESHOLDS - 1)


def _check_pair(prediction: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """Validates shapes and returns the ground truth as bool."""
  if prediction.ndim != 2 or prediction.shape != gt.shape:
    raise ValueError(f'prediction {prediction.shape} and ground truth {gt.shape} must be (H, W) of the same size; '
                     'resize the prediction to the ground truth first.')
  if gt.dtype != bool:
    if gt.size and (gt.min() < 0 or gt.max() > 1):
      raise ValueError(f'ground truth must be binary (bool or 0/1), got values in [{gt.min()}, {gt.max()}]; '
                       'threshold the mask first (e.g. mask > 127 for 8-bit masks).')
    gt = gt > 0.5
  return gt


def _pranet_levels(prob: np.ndarray) -> np.ndarray:
  """The 8-bit levels the toolbox reads from the PNG that PraNet's `MyTest.py` would save for `prob`."""
  levels = prob.astype(np.float64)  # A copy, worked on in place: full-resolution maps are large.
  low, high = levels.min(), levels.max()
  if not (np.isfinite(low) and np.isfinite(high)):
    raise ValueError('The probability map holds NaN or infinite values.')
  # MyTest.py: (p - min) / (max - min + 1e-8); its minimum is then exactly 0 and its maximum `span`.
  levels -= low
  levels /= high - low + 1e-8
  span = (high - low) / (high - low + 1e-8)
  # scipy.misc.imsave -> bytescale: stretch by the map's own range (a span of 0 counts as 1), round half up.
  levels *= 255.0 / (span if span else 1.0)
  levels += 0.5
  np.floor(levels, out=levels)
  return levels.astype(np.intp)


def pranet_dice_iou_curves(prob: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Dice and IoU of one image at each of the toolbox's 256 thresholds, index j <-> threshold j / 255.

  Args:
    prob: (H, W) predicted foreground probability (any real range: it is min-max normalised).
    gt: (H, W) binary ground truth (bool or 0/1).

  Returns:
    (dice, iou), float64 arrays of shape (256,).
  """
  prob = np.asarray(prob)
  gt = _check_pair(prob, np.asarray(gt))
  levels = _pranet_levels(prob)
  # One histogram of (gt, level) pairs; pixels at level >= j are foreground at threshold j, so reverse
  # cumulative sums give every threshold's counts.
  levels[gt] += NUM_THRESHOLDS
  histogram = np.bincount(levels.ravel(), minlength=2 * NUM_THRESHOLDS).reshape(2, NUM_THRESHOLDS)
  at_or_above = np.cumsum(histogram[:, ::-1], axis=1)[:, ::-1]
  true_pos = at_or_above[1]
  predicted = at_or_above[0] + true_pos
  num_gt = np.count_nonzero(gt)
  hit = true_pos > 0
  safe_denominator = np.where(hit, num_gt + predicted, 1)
  dice = np.where(hit, 2.0 * true_pos / safe_denominator, 0.0)
  iou = np.where(hit, true_pos / (safe_denominator - true_pos), 0.0)
  return dice, iou


def pranet_mean_dice_iou(prob: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
  """(mDice, mIoU) of one image as the PraNet toolbox computes them: means over the 256 thresholds."""
  dice, iou = pranet_dice_iou_curves(prob, gt)
  return float(dice.mean()), float(iou.mean())


def per_image_dice_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
  """(Dice, IoU) of one binary prediction; both 1 when prediction and ground truth are empty (as metrics.py)."""
  pred = np.asarray(pred)
  if pred.dtype != bool:
    raise ValueError(f'per_image_dice_iou takes a bool prediction (threshold it first), got {pred.dtype}.')
  gt = _check_pair(pred, np.asarray(gt))
  true_pos = np.count_nonzero(pred & gt)
  union = np.count_nonzero(pred | gt)
  if union == 0:
    return 1.0, 1.0
  return 2.0 * true_pos / (union + true_pos), true_pos / union
