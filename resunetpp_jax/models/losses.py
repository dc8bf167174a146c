"""Segmentation losses, all computed from logits in float32.

The original trained with the soft Dice loss of `dice` (SPEC.md) and offered the other losses below, from its
Keras losses module (itself after J. Ma et al., "Loss odyssey in medical image segmentation", MedIA 2021, the
JunMa11/SegLoss code, and S. Jadon, "A survey of loss functions for semantic segmentation", CIBCB 2020, with
the shruti-jadon/Semantic-Segmentation-Loss-Functions code). The original worked on clipped probabilities;
here every loss takes logits so that cross-entropy terms use softplus (exact at any logit, no clipping), and
every power with an exponent below 1 is guarded so that its gradient stays finite at a perfect prediction.

Where the original departed from the paper it cited, the paper wins, and its docstring says so:
`combo` (the original's was identical to `bce_dice`), `topk` (the original took the top 512 of a scalar),
`exp_log` (the original took -log of the Dice LOSS, which rewards bad predictions) and `generalized_dice`
(the original weighted the foreground channel only, which for one class is just per-image Dice).

Every loss has the signature `loss(logits, labels) -> float32 scalar` with logits and labels (N, H, W, C),
labels in {0, 1}; hyper-parameters are keyword-only with the defaults below. Sums run over the whole batch at
once (all pixels, images and channels), as the original did.
"""
from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp

# Keras' backend epsilon: the original's smoothing term in every Dice/Tversky ratio.
EPSILON = 1e-7

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def _as_float32(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels, jnp.float32)
  if logits.shape != labels.shape:
    raise ValueError(f'logits {logits.shape} and labels {labels.shape} must have the same shape (N, H, W, C).')
  return logits, labels


def _safe_power(x: jax.Array, exponent: float) -> jax.Array:
  """x ** exponent for x >= 0, with value 0 and a zero (not infinite) gradient where x underflows to 0."""
  positive = x > jnp.finfo(jnp.float32).tiny
  return jnp.where(positive, jnp.where(positive, x, 1.0) ** exponent, 0.0)


def _cross_entropy_map(logits: jax.Array, labels: jax.Array, pos_weight: float = 1.0) -> jax.Array:
  """Per-pixel -(pos_weight * y * log p + (1 - y) * log(1 - p)), p = sigmoid(logits), exact via softplus."""
  return pos_weight * labels * jax.nn.softplus(-logits) + (1.0 - labels) * jax.nn.softplus(logits)


def _dice_coefficient(probs: jax.Array, labels: jax.Array) -> jax.Array:
  return (2.0 * jnp.sum(labels * probs) + EPSILON) / (jnp.sum(labels) + jnp.sum(probs) + EPSILON)


def _tversky_index(probs: jax.Array, labels: jax.Array, fp_weight: float, fn_weight: float) -> jax.Array:
  true_pos = jnp.sum(labels * probs)
  false_pos = jnp.sum((1.0 - labels) * probs)
  false_neg = jnp.sum(labels * (1.0 - probs))
  return (true_pos + EPSILON) / (true_pos + fp_weight * false_pos + fn_weight * false_neg + EPSILON)


def soft_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """1 - (2 sum(y p) + eps) / (sum(y) + sum(p) + eps), eps = 1e-7: the original's training loss."""
  logits, labels = _as_float32(logits, labels)
  return 1.0 - _dice_coefficient(jax.nn.sigmoid(logits), labels)


def squared_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """1 - (2 sum(y p) + eps) / (sum(y^2) + sum(p^2) + eps) (Milletari et al. 2016, V-Net)."""
  logits, labels = _as_float32(logits, labels)
  probs = jax.nn.sigmoid(logits)
  return 1.0 - (2.0 * jnp.sum(labels * probs) + EPSILON) / (jnp.sum(labels**2) + jnp.sum(probs**2) + EPSILON)


def generalized_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """1 - 2 sum_l w_l sum(y_l p_l) / sum_l w_l sum(y_l + p_l), w_l = 1 / sum(y_l)^2 over l in {fg, bg} per channel.

  Sudre et al. 2017, as NiftyNet implements it: class volumes pooled over the batch, and a class absent from
  the batch (infinite weight) takes the largest finite weight. Background is a class, which is what makes the
  weighting matter for one foreground channel.
  """
  logits, labels = _as_float32(logits, labels)
  reduce_axes = tuple(range(logits.ndim - 1))
  # Foreground and background of every channel, stacked on the last axis: (..., 2C).
  probs = jnp.concatenate([jax.nn.sigmoid(logits), jax.nn.sigmoid(-logits)], axis=-1)
  targets = jnp.concatenate([labels, 1.0 - labels], axis=-1)
  reference_volume = jnp.sum(targets, axis=reduce_axes)
  present = reference_volume > 0
  weights = 1.0 / jnp.maximum(reference_volume, 1.0)**2
  weights = jnp.where(present, weights, jnp.max(jnp.where(present, weights, 0.0)))
  numerator = 2.0 * jnp.sum(weights * jnp.sum(targets * probs, axis=reduce_axes))
  denominator = jnp.sum(weights * (reference_volume + jnp.sum(probs, axis=reduce_axes)))
  return 1.0 - numerator / denominator


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """mean(-(y log p + (1 - y) log(1 - p)))."""
  logits, labels = _as_float32(logits, labels)
  return jnp.mean(_cross_entropy_map(logits, labels))


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, *, pos_weight: float = 1.0 / 3.0) -> jax.Array:
  """mean(-(w y log p + (1 - y) log(1 - p))), w = 1/3 (the original's beta = 0.25 -> beta / (1 - beta)).

  w < 1 penalises false positives more, w > 1 false negatives (Ronneberger et al. 2015; Jadon 2020).
  """
  logits, labels = _as_float32(logits, labels)
  return jnp.mean(_cross_entropy_map(logits, labels, pos_weight))


def bce_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(BCE + soft Dice loss) / 2 (the original's and Jadon's ce_dice)."""
  return (binary_cross_entropy(logits, labels) + soft_dice(logits, labels)) / 2.0


def combo(logits: jax.Array, labels: jax.Array, *, alpha: float = 0.5, beta: float = 0.5) -> jax.Array:
  """alpha mean(-(beta y log p + (1 - beta)(1 - y) log(1 - p))) - (1 - alpha) Dice; minimum -(1 - alpha).

  Taghanaki et al. 2019 (Combo loss); alpha weighs CE against Dice, beta < 0.5 penalises false positives more.
  Its reference code (asgsaeid/ComboLoss) misplaces a bracket and weighs negatives by beta (1 - beta); this
  follows the paper's formula.
  """
  logits, labels = _as_float32(logits, labels)
  cross_entropy = jnp.mean(beta * labels * jax.nn.softplus(-logits)
                           + (1.0 - beta) * (1.0 - labels) * jax.nn.softplus(logits))
  return alpha * cross_entropy - (1.0 - alpha) * _dice_coefficient(jax.nn.sigmoid(logits), labels)


def _box_mean(x: jax.Array, size: int) -> jax.Array:
  """Mean over a size x size window around each pixel of (N, H, W, C), zeros outside the image counted in
  (PyTorch's avg_pool2d(k, stride=1, padding=k // 2) with its default count_include_pad); two 1-D passes."""
  for window in ((1, size, 1, 1), (1, 1, size, 1)):
    x = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1, 1, 1, 1), 'SAME')
  return x / (size * size)


def structure(logits: jax.Array, labels: jax.Array, *, window: int = 31, edge_weight: float = 5.0) -> jax.Array:
  """PraNet's structure loss (Fan et al., MICCAI 2020; F3Net's): weighted BCE + weighted IoU, mean over images.

  Pixels are weighted 1 + edge_weight |box_mean(y) - y| over a 31 x 31 window, which stresses the polyp's
  outline; wBCE and wIoU = 1 - (inter + 1) / (union - inter + 1) are computed per image and channel, not
  pooled over the batch as the other losses here, as PraNet's `structure_loss` does.
  """
  logits, labels = _as_float32(logits, labels)
  weights = 1.0 + edge_weight * jnp.abs(_box_mean(labels, window) - labels)
  per_image = lambda x: jnp.sum(x, axis=(1, 2))
  weighted_bce = per_image(weights * _cross_entropy_map(logits, labels)) / per_image(weights)
  probs = jax.nn.sigmoid(logits)
  intersection = per_image(weights * probs * labels)
  union = per_image(weights * (probs + labels))
  weighted_iou = 1.0 - (intersection + 1.0) / (union - intersection + 1.0)
  return jnp.mean(weighted_bce + weighted_iou)


def focal(logits: jax.Array, labels: jax.Array, *, alpha: float = 0.25, gamma: float = 2.0) -> jax.Array:
  """mean(-(alpha y (1 - p)^gamma log p + (1 - alpha)(1 - y) p^gamma log(1 - p))), alpha 0.25, gamma 2 (Lin 2017)."""
  logits, labels = _as_float32(logits, labels)
  # sigmoid(-x) rather than 1 - sigmoid(x): exact where p rounds to 1.
  positive_term = alpha * labels * _safe_power(jax.nn.sigmoid(-logits), gamma) * jax.nn.softplus(-logits)
  negative_term = ((1.0 - alpha) * (1.0 - labels) * _safe_power(jax.nn.sigmoid(logits), gamma)
                   * jax.nn.softplus(logits))
  return jnp.mean(positive_term + negative_term)


def dice_focal(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(soft Dice loss + focal) / 2 (the original's dice_focal_loss)."""
  return (soft_dice(logits, labels) + focal(logits, labels)) / 2.0


def top_k(logits: jax.Array, labels: jax.Array, *, percent: float = 10.0) -> jax.Array:
  """Mean BCE of the hardest `percent`% pixels of the batch, 10% (Wu et al. 2016; SegLoss / nnU-Net TopK10)."""
  logits, labels = _as_float32(logits, labels)
  pixel_losses = _cross_entropy_map(logits, labels).reshape(-1)
  k = max(1, int(pixel_losses.size * percent / 100.0))
  return jnp.mean(jax.lax.top_k(pixel_losses, k)[0])


def dice_top_k(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(soft Dice loss + Top-K) / 2 (the original's dice_topk_loss)."""
  return (soft_dice(logits, labels) + top_k(logits, labels)) / 2.0


def tversky(logits: jax.Array, labels: jax.Array, *, fp_weight: float = 0.3, fn_weight: float = 0.7) -> jax.Array:
  """1 - (TP + eps) / (TP + 0.3 FP + 0.7 FN + eps) on soft counts (Salehi et al. 2017's best alpha, beta)."""
  logits, labels = _as_float32(logits, labels)
  return 1.0 - _tversky_index(jax.nn.sigmoid(logits), labels, fp_weight, fn_weight)


def focal_tversky(logits: jax.Array, labels: jax.Array, *, gamma: float = 0.75) -> jax.Array:
  """(Tversky loss)^0.75, i.e. 1/gamma with Abraham & Khan 2019's gamma = 4/3."""
  return _safe_power(tversky(logits, labels), gamma)


def log_cosh_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """log(cosh(soft Dice loss)) (Jadon 2020)."""
  return jnp.log(jnp.cosh(soft_dice(logits, labels)))


def exp_log(logits: jax.Array, labels: jax.Array, *, gamma: float = 0.3, dice_weight: float = 0.8,
            cross_weight: float = 0.2) -> jax.Array:
  """0.8 (-ln Dice)^0.3 + 0.2 mean(w_l (-ln p_l)^0.3), w_l = (1 / f_l)^0.5 (Wong et al. 2018).

  Dice is the soft Dice coefficient; p_l the predicted probability of the pixel's true class and f_l the
  fraction of the batch's pixels in that class (foreground or background).
  """
  logits, labels = _as_float32(logits, labels)
  dice_term = _safe_power(-jnp.log(_dice_coefficient(jax.nn.sigmoid(logits), labels)), gamma)
  foreground_fraction = jnp.mean(labels)
  # A class absent from the batch has no pixel to weigh; the floor only keeps its weight finite.
  foreground_weight = jax.lax.rsqrt(jnp.maximum(foreground_fraction, EPSILON))
  background_weight = jax.lax.rsqrt(jnp.maximum(1.0 - foreground_fraction, EPSILON))
  class_weights = labels * foreground_weight + (1.0 - labels) * background_weight
  cross_term = jnp.mean(class_weights * _safe_power(_cross_entropy_map(logits, labels), gamma))
  return dice_weight * dice_term + cross_weight * cross_term


LOSSES: dict[str, LossFn] = {
    'dice': soft_dice,
    'bce': binary_cross_entropy,
    'weighted_bce': weighted_cross_entropy,
    'dice_squared': squared_dice,
    'generalized_dice': generalized_dice,
    'bce_dice': bce_dice,
    'combo': combo,
    'focal': focal,
    'dice_focal': dice_focal,
    'topk': top_k,
    'dice_topk': dice_top_k,
    'tversky': tversky,
    'focal_tversky': focal_tversky,
    'log_cosh_dice': log_cosh_dice,
    'exp_log': exp_log,
    'structure': structure,
}


def get_loss(loss_name: str) -> LossFn:
  try:
    return LOSSES[loss_name]
  except KeyError:
    raise ValueError(f'Unknown loss {loss_name!r} (config.loss); choose one of: {", ".join(LOSSES)}.') from None


def supervision_loss(loss_name: str, logits_per_head: Sequence[jax.Array],
                     labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The deep-supervision loss: the named loss of every head against the same labels, summed over heads.

  Returns (total, per_head) with per_head float32 (num_heads,); the heads' L2 penalty is the trainer's.
  """
  loss_fn = get_loss(loss_name)
  if not logits_per_head:
    raise ValueError('supervision_loss needs at least one head of logits.')
  per_head = jnp.stack([loss_fn(logits, labels) for logits in logits_per_head]).astype(jnp.float32)
  return jnp.sum(per_head), per_head

