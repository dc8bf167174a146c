"""Tests of resunetpp_jax.metrics on hand-made 2x2 masks whose counts can be written down."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resunetpp_jax.evaluation import metrics

# Ground truth and prediction masks of five 2x2 images, and their counts (tp, fp, fn, tn, dice, iou).
CASES = {
    'perfect': ([[1, 1], [0, 0]], [[1, 1], [0, 0]], (2, 0, 0, 2, 1.0, 1.0)),
    'empty_gt': ([[0, 0], [0, 0]], [[0, 1], [0, 0]], (0, 1, 0, 3, 0.0, 0.0)),
    'empty_prediction': ([[1, 0], [1, 0]], [[0, 0], [0, 0]], (0, 0, 2, 2, 0.0, 0.0)),
    'both_empty': ([[0, 0], [0, 0]], [[0, 0], [0, 0]], (0, 0, 0, 4, 1.0, 1.0)),
    'partial': ([[1, 1], [0, 0]], [[1, 0], [1, 0]], (1, 1, 1, 1, 0.5, 1 / 3)),
}


# Compiled once per batch shape: faster than running the ops one by one, and checks jit-compatibility.
_sums = jax.jit(metrics.segmentation_sums, static_argnames='threshold')


def _batch(names):
  labels = np.array([CASES[n][0] for n in names], np.float32)[..., None]
  predicted = np.array([CASES[n][1] for n in names], bool)[..., None]
  logits = np.where(predicted, 4.0, -4.0).astype(np.float32)
  return logits, labels


def _as_floats(sums):
  return {key: float(value) for key, value in sums.items()}


@pytest.mark.parametrize('name', sorted(CASES))
def test_single_image_counts(name):
  logits, labels = _batch([name])
  tp, fp, fn, tn, dice, iou = CASES[name][2]
  sums = _as_floats(_sums(logits, labels))
  assert sums == {'tp': tp, 'fp': fp, 'fn': fn, 'tn': tn, 'dice_sum': pytest.approx(dice),
                  'iou_sum': pytest.approx(iou), 'num_images': 1.0}


def test_batch_sums_and_summary():
  logits, labels = _batch(list(CASES))
  sums = _sums(logits, labels)
  assert all(value.dtype == jnp.float32 and value.shape == () for value in sums.values())
  assert _as_floats(sums) == {'tp': 3, 'fp': 2, 'fn': 3, 'tn': 12, 'dice_sum': pytest.approx(2.5),
                              'iou_sum': pytest.approx(7 / 3), 'num_images': 5}
  summary = metrics.summarize(sums)
  assert summary == pytest.approx({'dice': 6 / 11, 'iou': 3 / 8, 'precision': 3 / 5, 'recall': 3 / 6,
                                   'mean_dice': 2.5 / 5, 'mean_iou': 7 / 15})
  assert all(type(value) is float for value in summary.values())


def test_padding_weights_contribute_nothing():
  logits, labels = _batch(['partial', 'perfect'])
  garbage_logits = np.array([[[9.0, -9.0], [9.0, 9.0]]], np.float32)[..., None]
  garbage_labels = np.array([[[0, 1], [1, 1]]], np.float32)[..., None]
  padded_logits = np.concatenate([logits[:1], garbage_logits, logits[1:], garbage_logits])
  padded_labels = np.concatenate([labels[:1], garbage_labels, labels[1:], garbage_labels])
  weights = np.array([1, 0, 1, 0], np.float32)
  padded = _sums(padded_logits, padded_labels, weights)
  assert _as_floats(padded) == _as_floats(_sums(logits, labels))


def test_sums_of_two_halves_equal_the_sums_of_the_whole():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 8, 8, 1)).astype(np.float32)
  labels = (rng.random((6, 8, 8, 1)) < 0.4).astype(np.float32)
  labels[2] = 0.0  # An image with empty ground truth among them.
  whole = _sums(logits, labels)
  halves = metrics.merge_sums(_sums(logits[:3], labels[:3]), _sums(logits[3:], labels[3:]))
  for key in metrics.SUM_KEYS:
    assert float(halves[key]) == pytest.approx(float(whole[key]), rel=1e-6), key


def test_merge_sums_works_on_numpy_accumulators():
  logits, labels = _batch(['partial'])
  sums = _sums(logits, labels)
  host = {key: np.float64(value) for key, value in sums.items()}
  merged = metrics.merge_sums(host, sums)
  assert float(merged['tp']) == 2.0 and float(merged['iou_sum']) == pytest.approx(2 / 3)


def test_merge_sums_rejects_different_keys():
  with pytest.raises(ValueError, match='different keys'):
    metrics.merge_sums({'tp': 1.0}, {'fp': 1.0})


def test_threshold_half_is_inclusive_at_logit_zero():
  labels = np.ones((1, 1, 3, 1), np.float32)
  logits = np.array([0.0, -np.finfo(np.float32).tiny, -0.0], np.float32).reshape(1, 1, 3, 1)
  sums = _sums(logits, labels)
  # sigmoid(0) = 0.5 >= 0.5 (also for -0.0); the negative float32 closest to 0 (but normal) is below.
  assert float(sums['tp']) == 2.0 and float(sums['fn']) == 1.0


def test_other_thresholds_compare_logits_with_the_threshold_logit():
  labels = np.ones((1, 1, 2, 1), np.float32)
  at_threshold = np.float32(math.log(3.0))  # sigmoid = 0.75.
  logits = np.array([at_threshold, np.nextafter(at_threshold, np.float32(0))], np.float32).reshape(1, 1, 2, 1)
  sums = _sums(logits, labels, threshold=0.75)
  assert float(sums['tp']) == 1.0 and float(sums['fn']) == 1.0


def test_bad_arguments_are_errors():
  logits, labels = _batch(['perfect', 'partial'])
  with pytest.raises(ValueError, match='threshold'):
    _sums(logits, labels, threshold=1.0)
  with pytest.raises(ValueError, match='weights'):
    _sums(logits, labels, np.ones(3, np.float32))
  with pytest.raises(ValueError, match='same shape'):
    _sums(logits, labels[:1])


def test_summary_when_nothing_is_foreground():
  logits, labels = _batch(['both_empty', 'both_empty'])
  summary = metrics.summarize(_sums(logits, labels))
  assert summary == {'dice': 1.0, 'iou': 1.0, 'precision': 1.0, 'recall': 1.0, 'mean_dice': 1.0, 'mean_iou': 1.0}


def test_summary_when_every_polyp_is_missed():
  logits, labels = _batch(['empty_prediction', 'both_empty'])
  summary = metrics.summarize(_sums(logits, labels))
  assert summary == {'dice': 0.0, 'iou': 0.0, 'precision': 0.0, 'recall': 0.0, 'mean_dice': 0.5, 'mean_iou': 0.5}


def test_summary_of_only_false_positives():
  logits, labels = _batch(['empty_gt'])
  summary = metrics.summarize(_sums(logits, labels))
  assert summary == {'dice': 0.0, 'iou': 0.0, 'precision': 0.0, 'recall': 0.0, 'mean_dice': 0.0, 'mean_iou': 0.0}


def test_summary_of_no_images_is_an_error():
  logits, labels = _batch(['perfect'])
  sums = _sums(logits, labels, np.zeros(1, np.float32))
  with pytest.raises(ValueError, match='num_images == 0'):
    metrics.summarize(sums)
