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
pysodmetrics' `FmeasureV2` with `DICEHandler` and `IOUHandler` (`with_dynamic=True`), fed the saved map, gives
the same curves to the last bit: its division returns 0 where the denominator is 0, and 2 TP / (|G| + |P|) is
0 whenever TP = 0 otherwise, so it needs no TP = 0 rule (tests/test_literature_metrics.py).

The other four numbers papers report (weighted F-measure, S-measure, E-measure, MAE) come from pysodmetrics
(`py_sod_metrics`), the library of the salient-object and polyp literature, fed the same 8-bit map; see
`BenchmarkMetrics`.
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
  """The 8-bit map (uint8) that PraNet's `MyTest.py` would save for `prob`, as the toolbox reads it."""
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
  return levels.astype(np.uint8)


def _dice_iou_curves(levels: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Dice and IoU at the 256 thresholds of the 8-bit map `levels` against the bool `gt`."""
  # One histogram of (gt, level) pairs; pixels at level >= j are foreground at threshold j, so reverse
  # cumulative sums give every threshold's counts.
  codes = levels.astype(np.intp)
  codes[gt] += NUM_THRESHOLDS
  histogram = np.bincount(codes.ravel(), minlength=2 * NUM_THRESHOLDS).reshape(2, NUM_THRESHOLDS)
  at_or_above = np.cumsum(histogram[:, ::-1], axis=1)[:, ::-1]
  true_pos = at_or_above[1]
  predicted = at_or_above[0] + true_pos
  num_gt = np.count_nonzero(gt)
  hit = true_pos > 0
  safe_denominator = np.where(hit, num_gt + predicted, 1)
  dice = np.where(hit, 2.0 * true_pos / safe_denominator, 0.0)
  iou = np.where(hit, true_pos / (safe_denominator - true_pos), 0.0)
  return dice, iou


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
  return _dice_iou_curves(_pranet_levels(prob), gt)


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


class BenchmarkMetrics:
  """The six numbers polyp papers report for a test set, accumulated one image at a time.

  Each image is scored on the 8-bit map `MyTest.py` saves for it (`_pranet_levels`) against its 0/255 mask:
  mDice and mIoU by this module (the toolbox's means over 256 thresholds); weighted F-measure (beta 1),
  S-measure (alpha 0.5), E-measure and MAE by pysodmetrics, which reads the map as the toolbox's `main.m` does
  (im2double, mapminmax) and binarises the mask at 128. Only per-image numbers are kept (for the E-measure a
  256-threshold curve), never the maps, so splits of full-resolution images stream through.

  Split numbers, as the toolbox forms them: mDice, mIoU, F^w_beta, S_alpha and MAE are means over images;
  E^max_xi and mean E_xi are the maximum and the mean over thresholds of the image-averaged E-measure curve.
  pysodmetrics binarises at level >= j for j = 0..255, PraNet's `main.m` at level > j: the curves share 255
  thresholds, and the remaining one, everything (pysodmetrics) or nothing (toolbox) called polyp, scores
  N / (4 (N - 1)) either way for an N-pixel image holding polyp and background, so both numbers agree. They
  differ only on an image without polyp, where pysodmetrics also scores the weighted F-measure 0 (the toolbox
  gives NaN); the polyp test sets have none.
  """

  def __init__(self):
    # Imported here: pysodmetrics imports scikit-learn and scikit-image (seconds), and only scoring a split needs
    # it, not the rest of this module nor the evaluate CLI's argument checks.
    import py_sod_metrics  # pylint: disable=import-outside-toplevel
    self._mdice = []
    self._miou = []
    self._weighted_fmeasure = py_sod_metrics.WeightedFmeasure()
    self._smeasure = py_sod_metrics.Smeasure()
    self._emeasure = py_sod_metrics.Emeasure()
    self._mae = py_sod_metrics.MAE()

  def add(self, prob: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Scores one image; returns its {'mdice', 'miou'}.

    Args:
      prob: (H, W) predicted foreground probability at the ground truth's size (min-max normalised here).
      gt: (H, W) binary ground truth (bool or 0/1).
    """
    prob = np.asarray(prob)
    gt = _check_pair(prob, np.asarray(gt))
    saved_map = _pranet_levels(prob)
    dice, iou = _dice_iou_curves(saved_map, gt)
    saved_mask = gt.astype(np.uint8) * 255
    for meter in (self._weighted_fmeasure, self._smeasure, self._emeasure, self._mae):
      meter.step(pred=saved_map, gt=saved_mask)
    scores = {'mdice': float(dice.mean()), 'miou': float(iou.mean())}
    self._mdice.append(scores['mdice'])
    self._miou.append(scores['miou'])
    return scores

  def results(self) -> dict[str, float]:
    """The split's mdice, miou, weighted_fmeasure, smeasure, max_emeasure, mean_emeasure and mae."""
    if not self._mdice:
      raise ValueError('No image to summarize: the split is empty.')
    emeasure_curve = self._emeasure.get_results()['em']['curve']
    return {
        'mdice': float(np.mean(self._mdice)),
        'miou': float(np.mean(self._miou)),
        'weighted_fmeasure': float(self._weighted_fmeasure.get_results()['wfm']),
        'smeasure': float(self._smeasure.get_results()['sm']),
        'max_emeasure': float(emeasure_curve.max()),
        'mean_emeasure': float(emeasure_curve.mean()),
        'mae': float(self._mae.get_results()['mae']),
    }
