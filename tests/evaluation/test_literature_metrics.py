"""Tests of resunetpp_jax.literature_metrics against literal transcriptions of PraNet's MyTest.py and toolbox,
and against pysodmetrics fed the maps MyTest.py saves."""
import cv2
import numpy as np
from PIL import Image
import py_sod_metrics
import pytest

from resunetpp_jax.data import image_io
from resunetpp_jax.evaluation import literature_metrics

MATLAB_EPS = np.spacing(1)


def _saved_map(prob):
  """The uint8 PNG PraNet's MyTest.py saves, literally: min-max normalise, then scipy.misc.imsave's bytescale."""
  prob = prob.astype(np.float64)
  normalised = (prob - prob.min()) / (prob.max() - prob.min() + 1e-8)
  # bytescale: stretch to [0, 255] by the map's own min and max, round half up.
  span = normalised.max() - normalised.min()
  scale = 255.0 / (span if span else 1.0)
  return np.floor((normalised - normalised.min()) * scale + 0.5).astype(np.uint8)


def _toolbox_curves(prob, gt):
  """The PraNet toolbox, literally: the 8-bit map MyTest.py saves, then Fmeasure_calu at 256 thresholds."""
  resmap = _saved_map(prob) / 255.0
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


def _toolbox_emeasure_curve(saved, gt):
  """PraNet's eval/main.m E-measure, literally: Enhancedmeasure(resmap > threshold, gt) at its 256 thresholds
  (compared as exact 8-bit levels)."""
  truth = gt.astype(np.float64)
  curve = []
  for j in range(256):
    foreground = (saved > j).astype(np.float64)
    if not gt.any():
      enhanced = 1.0 - foreground
    elif gt.all():
      enhanced = foreground
    else:
      align_fm = foreground - foreground.mean()
      align_gt = truth - truth.mean()
      align = 2.0 * align_gt * align_fm / (align_gt * align_gt + align_fm * align_fm + MATLAB_EPS)
      enhanced = (align + 1.0) ** 2 / 4.0
    curve.append(enhanced.sum() / (gt.size - 1 + MATLAB_EPS))
  return np.array(curve)


def _smooth_logits(rng, height, width, cell=8):
  """Logits as a network predicts them: coarse (1/cell resolution), upsampled bilinearly as MyTest.py does."""
  coarse = rng.normal(0.0, 3.0, (height // cell + 2, width // cell + 2)).astype(np.float32)
  return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def _sigmoid(logits):
  return 1.0 / (1.0 + np.exp(-logits))


def _pysod_dice_iou(saved_maps, saved_masks):
  """pysodmetrics' Dice and IoU over 256 dynamic thresholds, fed 8-bit maps and 0/255 masks; its curves run
  from threshold 255 down to 0."""
  meter = py_sod_metrics.FmeasureV2({
      'dice': py_sod_metrics.DICEHandler(with_dynamic=True, with_adaptive=False),
      'iou': py_sod_metrics.IOUHandler(with_dynamic=True, with_adaptive=False)})
  for saved, mask in zip(saved_maps, saved_masks):
    meter.step(pred=saved, gt=mask)
  return meter


def _assert_agrees_with_pysodmetrics(probs, gts, saved_masks):
  """Our toolbox curves and split numbers against pysodmetrics fed the literal MyTest.py maps."""
  saved_maps = [_saved_map(prob) for prob in probs]
  pysod = _pysod_dice_iou(saved_maps, saved_masks)
  for handler_name in ('dice', 'iou'):
    for k, (prob, gt) in enumerate(zip(probs, gts)):
      ours = literature_metrics.pranet_dice_iou_curves(prob, gt)[handler_name == 'iou']
      # The same integer counts in the same formula: equal to the last bit, threshold by threshold.
      np.testing.assert_array_equal(ours, pysod._metric_handlers[handler_name].dynamic_results[k][::-1])
  benchmark = literature_metrics.BenchmarkMetrics()
  for prob, gt in zip(probs, gts):
    benchmark.add(prob, gt)
  results = benchmark.results()
  pysod_results = pysod.get_results()
  assert results['mdice'] == pytest.approx(pysod_results['dice']['dynamic'].mean(), rel=1e-12)
  assert results['miou'] == pytest.approx(pysod_results['iou']['dynamic'].mean(), rel=1e-12)
  # The other four: pysodmetrics fed the literal maps and the masks as given.
  meters = {'weighted_fmeasure': py_sod_metrics.WeightedFmeasure(), 'smeasure': py_sod_metrics.Smeasure(),
            'emeasure': py_sod_metrics.Emeasure(), 'mae': py_sod_metrics.MAE()}
  for saved, mask in zip(saved_maps, saved_masks):
    for meter in meters.values():
      meter.step(pred=saved, gt=mask)
  curve = meters['emeasure'].get_results()['em']['curve']
  assert results['weighted_fmeasure'] == pytest.approx(meters['weighted_fmeasure'].get_results()['wfm'], rel=1e-12)
  assert results['smeasure'] == pytest.approx(meters['smeasure'].get_results()['sm'], rel=1e-12)
  assert results['mae'] == pytest.approx(meters['mae'].get_results()['mae'], rel=1e-12)
  assert (results['max_emeasure'], results['mean_emeasure']) == pytest.approx((curve.max(), curve.mean()), rel=1e-12)
  return results


def test_mdice_miou_agree_with_pysodmetrics_on_smooth_maps():
  rng = np.random.default_rng(0)
  probs, gts = [], []
  for height, width in ((96, 128), (75, 110), (120, 90)):
    logits = _smooth_logits(rng, height, width)
    probs.append(_sigmoid(logits))
    gts.append(logits + _smooth_logits(rng, height, width, cell=16) > 2.0)  # Correlated with the prediction.
  probs.append(probs[0] * 0.3 + 0.1)  # Squeezed into a sub-range: min-max normalisation undoes it.
  gts.append(gts[0])
  probs.append(np.full((40, 50), 0.7))  # Constant: saved as level 0 everywhere.
  gts.append(np.pad(np.ones((10, 20), bool), 15))
  probs.append(probs[1])  # Empty ground truth: both score 0 at every threshold (no TP).
  gts.append(np.zeros_like(gts[1]))
  assert all(gt.any() for gt in gts[:-1])
  results = _assert_agrees_with_pysodmetrics(probs, gts, [gt.astype(np.uint8) * 255 for gt in gts])
  assert 0.2 < results['mdice'] < 0.9  # Real-looking: neither trivial nor hopeless.


def test_mdice_miou_agree_with_pysodmetrics_on_real_masks(shared_dir):
  data = shared_dir / 'data'
  kvasir = (data / 'splits' / 'pranet_kvasir_test.txt').read_text().split()[:2]
  clinicdb = (data / 'splits' / 'pranet_clinicdb_test.txt').read_text().split()[:1]
  paths = [data / 'Kvasir-SEG' / 'masks' / f'{name}.jpg' for name in kvasir]
  paths += [data / 'CVC-ClinicDB' / 'masks' / f'{name}.png' for name in clinicdb]
  rng = np.random.default_rng(1)
  probs, gts, file_masks = [], [], []
  for path in paths:
    gt = image_io.read_mask(path)
    height, width = gt.shape
    # A network's view: the mask at 44x44 (352 / 8) with noise, as logits, upsampled to the original size.
    coarse = cv2.resize(gt.astype(np.float32), (44, 44), interpolation=cv2.INTER_AREA) * 8.0 - 4.0
    coarse += rng.normal(0.0, 2.0, coarse.shape).astype(np.float32)
    probs.append(_sigmoid(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)))
    gts.append(gt)
    # pysodmetrics reads the mask file itself, as the toolbox does (gray levels, > 128).
    file_masks.append(np.asarray(Image.open(path).convert('L')))
  results = _assert_agrees_with_pysodmetrics(probs, gts, file_masks)
  assert results['mdice'] > 0.5 and results['smeasure'] > 0.5 and results['mae'] < 0.3


def test_emeasure_equals_the_toolboxs_on_polyp_images():
  """pysodmetrics binarises at level >= j, the toolbox at level > j; both curves also hold the E-measure of a
  constant prediction (everything or nothing is polyp), the same value N / (4 (N - 1)) for either, so the max and
  mean agree whenever the ground truth has a polyp and background."""
  rng = np.random.default_rng(2)
  benchmark = literature_metrics.BenchmarkMetrics()
  curves = []
  for height, width in ((48, 64), (40, 30)):
    logits = _smooth_logits(rng, height, width)
    gt = logits + _smooth_logits(rng, height, width) > 1.0
    benchmark.add(_sigmoid(logits), gt)
    curves.append(_toolbox_emeasure_curve(_saved_map(_sigmoid(logits)), gt))
  toolbox_curve = np.mean(curves, axis=0)
  results = benchmark.results()
  assert results['max_emeasure'] == pytest.approx(toolbox_curve.max(), rel=1e-12)
  assert results['mean_emeasure'] == pytest.approx(toolbox_curve.mean(), rel=1e-12)


def test_mae_by_hand_on_the_saved_map():
  prob = np.array([[0.0, 0.5], [1.0, 1.0]])
  gt = np.array([[0, 1], [1, 0]], bool)
  benchmark = literature_metrics.BenchmarkMetrics()
  benchmark.add(prob, gt)
  # Saved levels 0, 128 (0.5 * 255 rounds half up), 255, 255: the 8-bit map, not the probabilities.
  assert benchmark.results()['mae'] == pytest.approx((0 + (1 - 128 / 255) + 0 + 1) / 4, rel=1e-12)


def test_perfect_prediction_scores_one_and_no_error():
  gt = np.zeros((30, 40), bool)
  gt[5:20, 8:30] = True
  benchmark = literature_metrics.BenchmarkMetrics()
  assert benchmark.add(gt.astype(np.float32), gt) == pytest.approx(
      {'mdice': (255 + 2 * 330 / (330 + 1200)) / 256, 'miou': (255 + 330 / 1200) / 256})
  results = benchmark.results()
  num_pixels = gt.size
  assert results['smeasure'] == pytest.approx(1.0, abs=1e-12)
  assert results['weighted_fmeasure'] == pytest.approx(1.0, abs=1e-12)
  assert results['mae'] == 0.0
  # E-measure sums over pixels and divides by N - 1 (as the toolbox), so a perfect map scores N / (N - 1); at
  # threshold 0 everything is polyp, N / (4 (N - 1)).
  assert results['max_emeasure'] == pytest.approx(num_pixels / (num_pixels - 1), rel=1e-12)
  assert results['mean_emeasure'] == pytest.approx(
      (255 * num_pixels / (num_pixels - 1) + num_pixels / (4 * (num_pixels - 1))) / 256, rel=1e-12)


def test_benchmark_metrics_reject_bad_input_and_an_empty_split():
  benchmark = literature_metrics.BenchmarkMetrics()
  with pytest.raises(ValueError, match='binary'):
    benchmark.add(np.zeros((2, 2)), np.full((2, 2), 255, np.uint8))
  with pytest.raises(ValueError, match='split is empty'):
    benchmark.results()


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
