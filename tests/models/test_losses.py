"""Tests of resunetpp_jax.losses: hand-computed values, numpy references in probability space, stability."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resunetpp_jax.models import losses

EPS = 1e-7
LN3 = math.log(3.0)  # sigmoid(+-ln 3) = 0.75 / 0.25, so the hand computations below stay exact.


def _two_image_batch():
  """Two 2x2 one-channel images whose probabilities are quarters."""
  logits = np.array([[[LN3, -LN3], [0.0, -LN3]],
                     [[0.0, LN3], [-LN3, -LN3]]], np.float32)[..., None]
  labels = np.array([[[1, 0], [0, 0]],
                     [[1, 1], [0, 0]]], np.float32)[..., None]
  return logits, labels


def _random_batch(seed=0, shape=(2, 8, 8, 1)):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0.0, 2.0, shape).astype(np.float32)
  labels = (rng.random(shape) < 0.3).astype(np.float32)
  return logits, labels


# --- Numpy references, written from the papers' formulas in probability space (float64). -------------------


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _np_dice_coef(p, y):
  return (2 * np.sum(y * p) + EPS) / (np.sum(y) + np.sum(p) + EPS)


def _np_bce_map(p, y, pos_weight=1.0):
  return -(pos_weight * y * np.log(p) + (1 - y) * np.log(1 - p))


def _np_tversky_loss(p, y):
  tp, fp, fn = np.sum(y * p), np.sum((1 - y) * p), np.sum(y * (1 - p))
  return 1 - (tp + EPS) / (tp + 0.3 * fp + 0.7 * fn + EPS)


def _np_generalized_dice(p, y):
  p2 = np.concatenate([p, 1 - p], -1).reshape(-1, 2 * p.shape[-1])
  y2 = np.concatenate([y, 1 - y], -1).reshape(-1, 2 * y.shape[-1])
  w = 1 / np.sum(y2, 0)**2
  return 1 - 2 * np.sum(w * np.sum(y2 * p2, 0)) / np.sum(w * np.sum(y2 + p2, 0))


def _np_focal(p, y):
  return np.mean(-(0.25 * y * (1 - p)**2 * np.log(p) + 0.75 * (1 - y) * p**2 * np.log(1 - p)))


def _np_topk(p, y):
  ce = np.sort(_np_bce_map(p, y).ravel())[::-1]
  return np.mean(ce[:int(ce.size * 0.1)])


def _np_exp_log(p, y):
  f1 = np.mean(y)
  w = np.where(y > 0, f1**-0.5, (1 - f1)**-0.5)
  p_true = np.where(y > 0, p, 1 - p)
  return 0.8 * (-np.log(_np_dice_coef(p, y)))**0.3 + 0.2 * np.mean(w * (-np.log(p_true))**0.3)


def _np_structure(p, y, window=31):
  """PraNet's structure_loss, with avg_pool2d(k, stride 1, padding k // 2) written as an explicit window sum."""
  n, h, w, c = y.shape
  pad = window // 2
  padded = np.pad(y, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  box = np.zeros_like(y)
  for i in range(h):
    for j in range(w):
      box[:, i, j] = padded[:, i:i + window, j:j + window].sum(axis=(1, 2)) / window**2
  weight = 1 + 5 * np.abs(box - y)
  wbce = np.sum(weight * _np_bce_map(p, y), axis=(1, 2)) / np.sum(weight, axis=(1, 2))
  inter = np.sum(p * y * weight, axis=(1, 2))
  union = np.sum((p + y) * weight, axis=(1, 2))
  return np.mean(wbce + 1 - (inter + 1) / (union - inter + 1))


NUMPY_REFERENCES = {
    'dice': lambda p, y: 1 - _np_dice_coef(p, y),
    'bce': lambda p, y: np.mean(_np_bce_map(p, y)),
    'weighted_bce': lambda p, y: np.mean(_np_bce_map(p, y, pos_weight=1 / 3)),
    'dice_squared': lambda p, y: 1 - (2 * np.sum(y * p) + EPS) / (np.sum(y**2) + np.sum(p**2) + EPS),
    'generalized_dice': _np_generalized_dice,
    'bce_dice': lambda p, y: (np.mean(_np_bce_map(p, y)) + 1 - _np_dice_coef(p, y)) / 2,
    'combo': lambda p, y: (0.5 * np.mean(-(0.5 * y * np.log(p) + 0.5 * (1 - y) * np.log(1 - p)))
                           - 0.5 * _np_dice_coef(p, y)),
    'focal': _np_focal,
    'dice_focal': lambda p, y: (1 - _np_dice_coef(p, y) + _np_focal(p, y)) / 2,
    'topk': _np_topk,
    'dice_topk': lambda p, y: (1 - _np_dice_coef(p, y) + _np_topk(p, y)) / 2,
    'tversky': _np_tversky_loss,
    'focal_tversky': lambda p, y: _np_tversky_loss(p, y)**0.75,
    'log_cosh_dice': lambda p, y: np.log(np.cosh(1 - _np_dice_coef(p, y))),
    'exp_log': _np_exp_log,
    'structure': _np_structure,
}

# The value each loss takes at a perfect prediction.
MINIMA = {name: 0.0 for name in losses.LOSSES} | {'combo': -0.5}

# Every loss and its gradient in one compiled function: one compilation per input shape keeps the tests fast.
_all_values_and_grads = jax.jit(
    lambda logits, labels: {name: jax.value_and_grad(fn)(logits, labels) for name, fn in losses.LOSSES.items()})
_all_values = jax.jit(lambda logits, labels: {name: fn(logits, labels) for name, fn in losses.LOSSES.items()})


def test_registry_names_match_the_original_losses():
  assert set(losses.LOSSES) == set(NUMPY_REFERENCES)


@pytest.fixture(scope='module')
def hand_values():
  """Every loss of the two-image batch, from one compiled function."""
  return {name: float(value) for name, value in _all_values(*_two_image_batch()).items()}


def test_soft_dice_by_hand(hand_values):
  # sum(y p) = 0.75 + 0.5 + 0.75 = 2; sum(y) = 3; sum(p) = 1.75 + 1.75 = 3.5.
  expected = 1 - (2 * 2.0 + EPS) / (3.0 + 3.5 + EPS)
  assert hand_values['dice'] == pytest.approx(expected, abs=1e-6)
  assert float(losses.soft_dice(*_two_image_batch())) == pytest.approx(2.5 / 6.5, abs=1e-6)


def test_soft_dice_pools_the_whole_batch_rather_than_averaging_images(hand_values):
  # Per image: (1.5 / 2.75) and (2.5 / 3.75); their mean gives another loss, 0.3939..., not 0.3846...
  mean_of_images = 1 - (1.5 / 2.75 + 2.5 / 3.75) / 2
  pooled = hand_values['dice']
  assert pooled == pytest.approx(2.5 / 6.5, abs=1e-6)
  assert abs(pooled - mean_of_images) > 5e-3


def test_bce_and_weighted_bce_by_hand(hand_values):
  # Every pixel's probability of its true class: 0.75 six times, 0.5 twice.
  # Image 1: fg 0.75; bg 0.75, 0.5, 0.75. Image 2: fg 0.5, 0.75; bg 0.75, 0.75.
  bce = -(6 * math.log(0.75) + 2 * math.log(0.5)) / 8
  assert hand_values['bce'] == pytest.approx(bce, rel=1e-6)
  # Foreground terms (0.75, 0.5, 0.75) are scaled by 1/3.
  weighted = -((math.log(0.75) * 2 + math.log(0.5)) / 3 + math.log(0.75) * 4 + math.log(0.5)) / 8
  assert hand_values['weighted_bce'] == pytest.approx(weighted, rel=1e-6)


def test_tversky_by_hand(hand_values):
  # TP = 2, FP = sum((1 - y) p) = 3.5 - 2 = 1.5, FN = sum(y (1 - p)) = 3 - 2 = 1.
  expected = 1 - 2.0 / (2.0 + 0.3 * 1.5 + 0.7 * 1.0)
  assert hand_values['tversky'] == pytest.approx(expected, abs=1e-6)
  assert hand_values['focal_tversky'] == pytest.approx(expected**0.75, abs=1e-6)


def test_generalized_dice_by_hand(hand_values):
  # Foreground: volume 3, intersection 2, sum p 3.5. Background: volume 5, intersection sum((1-y)(1-p)) =
  # 0.75+0.5+0.75 + 0.75+0.75 = 3.5, sum(1 - p) = 8 - 3.5 = 4.5.
  w_fg, w_bg = 1 / 9, 1 / 25
  expected = 1 - 2 * (w_fg * 2 + w_bg * 3.5) / (w_fg * (3 + 3.5) + w_bg * (5 + 4.5))
  assert hand_values['generalized_dice'] == pytest.approx(expected, abs=1e-6)


def test_generalized_dice_gives_an_absent_class_the_largest_weight():
  labels = np.zeros((1, 2, 2, 1), np.float32)
  logits = np.full((1, 2, 2, 1), -LN3, np.float32)  # p = 0.25 everywhere.
  # Foreground absent -> takes the background weight 1/16; intersection 0, sum p = 1.
  # Background: volume 4, intersection 3, sum(1 - p) = 3.
  expected = 1 - 2 * (3 / 16) / ((0 + 1) / 16 + (4 + 3) / 16)
  assert float(losses.generalized_dice(logits, labels)) == pytest.approx(expected, abs=1e-6)


def test_top_k_keeps_the_hardest_tenth_of_the_pixels():
  labels = np.zeros((1, 4, 5, 1), np.float32)
  logits = np.full((1, 4, 5, 1), -LN3, np.float32)
  logits[0, 0, 0, 0] = 0.0
  logits[0, 1, 1, 0] = LN3
  # 20 pixels -> the 2 hardest: background with p = 0.75 and p = 0.5.
  expected = -(math.log(0.25) + math.log(0.5)) / 2
  assert float(losses.top_k(logits, labels)) == pytest.approx(expected, rel=1e-6)


def test_combo_by_hand(hand_values):
  half_ce = -0.5 * (6 * math.log(0.75) + 2 * math.log(0.5)) / 8
  expected = 0.5 * half_ce - 0.5 * (4.0 / 6.5)
  assert hand_values['combo'] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_every_loss_matches_its_numpy_reference():
  logits, labels = _random_batch(seed=1)
  values = _all_values_and_grads(logits, labels)
  for name, reference in NUMPY_REFERENCES.items():
    expected = reference(_sigmoid(logits), labels.astype(np.float64))
    assert float(values[name][0]) == pytest.approx(expected, rel=2e-5, abs=1e-6), name


def test_every_loss_is_a_finite_float32_scalar_with_a_finite_gradient():
  logits, labels = _random_batch(seed=2)
  for name, (value, grad) in _all_values_and_grads(logits, labels).items():
    assert value.shape == () and value.dtype == jnp.float32, name
    assert np.isfinite(float(value)), name
    assert grad.dtype == jnp.float32 and np.all(np.isfinite(grad)), name
    assert np.any(grad != 0), name


def test_every_loss_is_stable_at_saturated_logits():
  _, labels = _random_batch(seed=3)
  right = np.where(labels > 0, 100.0, -100.0).astype(np.float32)
  mixed = right.copy()
  mixed[0] *= -1  # The first image entirely wrong, at full confidence.
  for case, logits in (('right', right), ('wrong', -right), ('mixed', mixed)):
    for name, (value, grad) in _all_values_and_grads(logits, labels).items():
      assert np.isfinite(float(value)), (name, case)
      assert np.all(np.isfinite(grad)), (name, case)


def test_every_loss_is_minimal_at_a_perfect_prediction():
  logits, labels = _random_batch(seed=4)
  perfect = _all_values_and_grads(np.where(labels > 0, 30.0, -30.0).astype(np.float32), labels)
  noisy = _all_values_and_grads(logits, labels)
  undecided = _all_values_and_grads(np.zeros_like(logits), labels)
  for name, minimum in MINIMA.items():
    assert float(perfect[name][0]) == pytest.approx(minimum, abs=1e-4), name
    assert float(perfect[name][0]) < float(noisy[name][0]) - 1e-3, name
    assert float(perfect[name][0]) < float(undecided[name][0]) - 1e-3, name


def test_every_loss_computes_in_float32_from_bfloat16_logits():
  logits, labels = _random_batch(seed=5)
  low_precision = jnp.asarray(logits, jnp.bfloat16)
  from_bfloat16 = _all_values(low_precision, labels)
  from_float32 = _all_values_and_grads(low_precision.astype(jnp.float32), labels)
  for name, value in from_bfloat16.items():
    assert value.dtype == jnp.float32, name
    assert float(value) == pytest.approx(float(from_float32[name][0]), rel=1e-6), name


def test_structure_loss_weights_the_outline_by_hand():
  """One 1x3 image, window 3: box means of y = (0, 1, 0) are (1/9, 1/9, 1/9), so the weights are
  (1 + 5/9, 1 + 40/9, 1 + 5/9); with p = (1/4, 3/4, 1/4) every pixel's BCE is ln(4/3)."""
  logits = np.array([-LN3, LN3, -LN3], np.float32).reshape(1, 1, 3, 1)
  labels = np.array([0, 1, 0], np.float32).reshape(1, 1, 3, 1)
  w_edge, w_polyp = 14 / 9, 49 / 9
  inter = 0.75 * w_polyp
  union = 2 * 0.25 * w_edge + 1.75 * w_polyp
  expected = math.log(4 / 3) + 1 - (inter + 1) / (union - inter + 1)
  assert float(losses.structure(logits, labels, window=3)) == pytest.approx(expected, rel=1e-6)


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match='same shape'):
    losses.soft_dice(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 4, 4), np.float32))


def test_supervision_loss_sums_heads():
  logits, labels = _random_batch(seed=6)
  heads = [logits, logits * 0.5, -logits, logits + 1.0]
  total, per_head = jax.jit(lambda h, y: losses.supervision_loss('dice', h, y))(heads, labels)
  expected = np.array([float(losses.soft_dice(h, labels)) for h in heads])
  assert per_head.shape == (4,) and per_head.dtype == jnp.float32
  np.testing.assert_allclose(per_head, expected, rtol=1e-6)
  assert float(total) == pytest.approx(expected.sum(), rel=1e-6)


def test_supervision_loss_single_head():
  logits, labels = _two_image_batch()
  total, per_head = losses.supervision_loss('bce', (logits,), labels)
  assert per_head.shape == (1,)
  assert float(total) == pytest.approx(float(losses.binary_cross_entropy(logits, labels)))


def test_unknown_loss_name_lists_the_choices():
  with pytest.raises(ValueError, match="'dice_loss'.*dice, bce, weighted_bce"):
    losses.supervision_loss('dice_loss', [np.zeros((1, 2, 2, 1), np.float32)], np.zeros((1, 2, 2, 1), np.float32))
