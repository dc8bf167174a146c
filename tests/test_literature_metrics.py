"""Tests of resunetpp_jax.literature_metrics against a literal transcription of the PraNet toolbox loop."""
import numpy as np
import pytest

from resunetpp_jax import literature_metrics


def _toolbox_curves(prob, gt):
  """The PraNet toolbox, literally: the 8-bit map MyTest.py saves, then Fmeasure_calu at 256 thresholds."""
  prob = prob.astype(np.float64)
  normalised = (prob - prob.min()) / (prob.max() - prob.min() + 1e-8)
  # scipy.misc.imsave -> bytescale: stretch to [0, 255] by the map's own min and max, round half up.
  span = normalised.max() - normalised.min()
  scale = 255.0 / (span if span else 1.0)
  resmap = np.floor((normalised - normalised.min()) * scale + 0.5).astype(np.uint8) / 255.0
  dice, iou = np.zeros(256), np.zeros(256)
  for j in range(256):
    label3 = resmap >= j / 255.0
    num_rec = np.count_nonzero(label3)
    num_and = np.count_nonzero(label3 & gt)
    num_obj = np.count_nonzero(gt)
    if num_and:
      dice[j] = 2 * num_and / (num_obj + num_rec)
      iou[j] = num_and / (num_obj - num_and + num_rec)
  return dice, iou


@pytest.mark.parametrize('seed', range(4))
def test_histogram_curves_equal_the_literal_threshold_loop(seed):
  rng = np.random.default_rng(seed)
  height, width = rng.integers(5, 40, size=2)
  gt = rng.random((height, width)) < rng.uniform(0.05, 0.6)
  # A noisy probability map that agrees with the ground truth more often than not, in a sub-range of [0, 1].
  prob = np.clip(0.5 * gt + rng.normal(0.25, 0.2, (height, width)), 0.0, 1.0) * rng.uniform(0.3, 1.0)
  if seed == 3:
    prob = np.round(prob * 255) / 255  # Values on the threshold grid, where >= ties matter.
  dice, iou = literature_metrics.pranet_dice_iou_curves(prob, gt)
  expected_dice, expected_iou = _toolbox_curves(prob, gt)
  np.testing.assert_allclose(dice, expected_dice, rtol=1e-12, atol=0)
  np.testing.assert_allclose(iou, expected_iou, rtol=1e-12, atol=0)
  mdice, miou = literature_metrics.pranet_mean_dice_iou(prob, gt)
  assert mdice == pytest.approx(expected_dice.mean()) and miou == pytest.approx(expected_iou.mean())


def test_graded_map_by_hand():
  prob = np.array([[0.0, 0.2], [0.6, 1.0]])
  gt = np.array([[0, 0], [1, 1]])
  # Levels 0, 51, 153, 255. Threshold j: j = 0 -> all 4 predicted; 1..51 -> 3; 52..153 -> 2 (exact); 154..255
  # -> only the 255 pixel. TP is 2, 2, 2, 1.
  dice, iou = literature_metrics.pranet_dice_iou_curves(prob, gt)
  assert dice[0] == pytest.approx(2 / 3) and iou[0] == pytest.approx(1 / 2)
  assert dice[51] == pytest.approx(4 / 5) and iou[51] == pytest.approx(2 / 3)
  assert dice[52] == 1.0 and dice[153] == 1.0 and iou[153] == 1.0
  assert dice[154] == pytest.approx(2 / 3) and iou[255] == pytest.approx(1 / 2)
  mdice, miou = literature_metrics.pranet_mean_dice_iou(prob, gt)
  assert mdice == pytest.approx((2 / 3 + 51 * 4 / 5 + 102 * 1 + 102 * 2 / 3) / 256)
  assert miou == pytest.approx((1 / 2 + 51 * 2 / 3 + 102 * 1 + 102 * 1 / 2) / 256)


def test_perfect_prediction():
  gt = np.array([[1, 0], [0, 0]], bool)
  # Threshold 0 marks every pixel (Dice 2/5, IoU 1/4); the 255 others reproduce the ground truth.
  mdice, miou = literature_metrics.pranet_mean_dice_iou(gt.astype(np.float32), gt)
  assert mdice == pytest.approx((255 + 2 / 5) / 256)
  assert miou == pytest.approx((255 + 1 / 4) / 256)


def test_empty_prediction_is_a_constant_map():
  gt = np.array([[1, 0], [0, 0]], bool)
  dice, iou = literature_metrics.pranet_dice_iou_curves(np.zeros((2, 2)), gt)
  # A constant map saves as level 0: foreground everywhere at threshold 0, nowhere above.
  assert dice[0] == pytest.approx(2 / 5) and iou[0] == pytest.approx(1 / 4)
  assert not np.any(dice[1:]) and not np.any(iou[1:])
  # Min-max normalisation makes any constant map, however confident, the same.
  np.testing.assert_array_equal(literature_metrics.pranet_dice_iou_curves(np.full((2, 2), 0.9), gt)[0], dice)


def test_empty_ground_truth_scores_zero_as_in_the_toolbox():
  gt = np.zeros((3, 3), bool)
  for prob in (np.zeros((3, 3)), np.linspace(0, 1, 9).reshape(3, 3)):
    assert literature_metrics.pranet_mean_dice_iou(prob, gt) == (0.0, 0.0)


def test_per_image_dice_iou_conventions():
  per_image = literature_metrics.per_image_dice_iou
  gt = np.array([[1, 1], [0, 0]], bool)
  assert per_image(gt.copy(), gt) == (1.0, 1.0)
  assert per_image(np.array([[1, 0], [1, 0]], bool), gt) == pytest.approx((0.5, 1 / 3))
  assert per_image(np.zeros((2, 2), bool), gt) == (0.0, 0.0)
  assert per_image(gt.copy(), np.zeros((2, 2), np.uint8)) == (0.0, 0.0)
  assert per_image(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == (1.0, 1.0)


def test_bad_inputs_are_errors():
  gt = np.zeros((2, 2), bool)
  with pytest.raises(ValueError, match='same size'):
    literature_metrics.pranet_dice_iou_curves(np.zeros((2, 3)), gt)
  with pytest.raises(ValueError, match='binary'):
    literature_metrics.pranet_dice_iou_curves(np.zeros((2, 2)), np.full((2, 2), 255, np.uint8))
  with pytest.raises(ValueError, match='NaN'):
    literature_metrics.pranet_dice_iou_curves(np.full((2, 2), np.nan), gt)
  with pytest.raises(ValueError, match='bool prediction'):
    literature_metrics.per_image_dice_iou(np.zeros((2, 2), np.float32), gt)
