"""Pictures of segmentations: mask overlays and image | truth | prediction grids.

Used for the validation grid in TensorBoard and by `evaluate --save_images`.
Everything is RGB uint8 (H, W, 3); masks are bool (H, W).
"""
from typing import Sequence

import cv2
import numpy as np

GROUND_TRUTH_COLOR = (0, 255, 0)
PREDICTION_COLOR = (255, 0, 255)
# Error overlay: hits, misses (ground truth not predicted), false alarms.
TRUE_POSITIVE_COLOR = (255, 255, 0)
FALSE_NEGATIVE_COLOR = (0, 255, 0)
FALSE_POSITIVE_COLOR = (255, 0, 0)

_FILL_OPACITY = 0.4
_SEPARATOR_WIDTH = 4
_SEPARATOR_VALUE = 128


def _check_pair(image: np.ndarray, mask: np.ndarray):
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError('Expected an RGB uint8 image of shape (H, W, 3), got'
                     f' {image.dtype} {image.shape}.')
  if mask.shape != image.shape[:2]:
    raise ValueError(f'Mask of shape {mask.shape} does not match the image of'
                     f' shape {image.shape}; resize it to the image first.')


def _boundary(mask: np.ndarray) -> np.ndarray:
  """The pixels of a 0/1 uint8 mask that touch the background or the array's edge (a 1-pixel outline)."""
  eroded = cv2.erode(mask, np.ones((3, 3), np.uint8),
                     borderType=cv2.BORDER_CONSTANT, borderValue=0)
  return mask > eroded


def _paint(image: np.ndarray, regions: Sequence[tuple[np.ndarray, tuple]]):
  """Tints each region (disjoint) with its colour and outlines it at full strength.

  Works within each region's bounding box (outside it the mask is empty, as
  the edge of the box is to the outline) with OpenCV's uint8 kernels, whose
  blend equals rounding 0.6 x + 0.4 c in float32: a 1080p video frame's
  overlay costs little more than a copy.
  """
  result = image.copy()
  for mask, color in regions:
    mask = np.ascontiguousarray(mask).view(np.uint8)
    x, y, width, height = cv2.boundingRect(mask)
    if not width:
      continue
    box = (slice(y, y + height), slice(x, x + width))
    tinted = cv2.addWeighted(image[box], 1 - _FILL_OPACITY,
                             np.full_like(image[box], color), _FILL_OPACITY, 0)
    cv2.copyTo(tinted, mask[box], result[box])  # In place: result[box] is a view.
    result[box][_boundary(mask[box])] = color
  return result


def overlay(image: np.ndarray, mask: np.ndarray,
            color: tuple[int, int, int] = PREDICTION_COLOR) -> np.ndarray:
  """Returns `image` with `mask` tinted and outlined in `color` (RGB)."""
  mask = np.asarray(mask, bool)
  _check_pair(image, mask)
  return _paint(image, [(mask, color)])


def error_overlay(image: np.ndarray, ground_truth: np.ndarray,
                  prediction: np.ndarray) -> np.ndarray:
  """Shows where a prediction is right and wrong on one picture.

  Yellow: polyp found; green: polyp missed; red: false alarm.
  """
  ground_truth = np.asarray(ground_truth, bool)
  prediction = np.asarray(prediction, bool)
  _check_pair(image, ground_truth)
  _check_pair(image, prediction)
  return _paint(image, [
      (ground_truth & prediction, TRUE_POSITIVE_COLOR),
      (ground_truth & ~prediction, FALSE_NEGATIVE_COLOR),
      (~ground_truth & prediction, FALSE_POSITIVE_COLOR),
  ])


def _squeeze_channel(mask) -> np.ndarray:
  mask = np.asarray(mask, bool)
  return mask[..., 0] if mask.ndim == 3 and mask.shape[-1] == 1 else mask


def _separator(height: int) -> np.ndarray:
  return np.full((height, _SEPARATOR_WIDTH, 3), _SEPARATOR_VALUE, np.uint8)


def _hstack(panels: Sequence[np.ndarray]) -> np.ndarray:
  pieces = [panels[0]]
  for panel in panels[1:]:
    pieces += [_separator(panel.shape[0]), panel]
  return np.concatenate(pieces, axis=1)


def side_by_side(image: np.ndarray, ground_truth: np.ndarray,
                 prediction: np.ndarray) -> np.ndarray:
  """Image | ground-truth mask | predicted mask, masks in white on black.

  The picture the original wrote for every test image.
  """
  ground_truth = np.asarray(ground_truth, bool)
  prediction = np.asarray(prediction, bool)
  _check_pair(image, ground_truth)
  _check_pair(image, prediction)
  as_rgb = lambda mask: np.repeat(mask[:, :, None], 3, axis=-1).astype(
      np.uint8) * 255
  return _hstack([image, as_rgb(ground_truth), as_rgb(prediction)])


def comparison_grid(images: Sequence[np.ndarray],
                    gt_masks: Sequence[np.ndarray],
                    pred_masks: Sequence[np.ndarray],
                    max_images: int) -> np.ndarray:
  """One row per example: image | ground-truth overlay | prediction overlay.

  Rows of different widths are padded on the right with black.

  Args:
    images: RGB uint8 (H, W, 3) each, or one (N, H, W, 3) array.
    gt_masks: bool-like (H, W) or (H, W, 1) each.
    pred_masks: bool-like (H, W) or (H, W, 1) each.
    max_images: the number of rows at most (the first examples are used).

  Returns:
    RGB uint8 (sum of row heights + separators, widest row, 3).
  """
  count = min(len(images), len(gt_masks), len(pred_masks), max_images)
  if count < 1:
    raise ValueError('comparison_grid needs at least one image and'
                     f' max_images >= 1 (got max_images={max_images}).')
  rows = []
  for image, truth, prediction in zip(images[:count], gt_masks[:count],
                                      pred_masks[:count]):
    truth, prediction = _squeeze_channel(truth), _squeeze_channel(prediction)
    rows.append(_hstack([image, overlay(image, truth, GROUND_TRUTH_COLOR),
                         overlay(image, prediction, PREDICTION_COLOR)]))
  width = max(row.shape[1] for row in rows)
  pieces = []
  for row in rows:
    if pieces:
      pieces.append(np.full((_SEPARATOR_WIDTH, width, 3), _SEPARATOR_VALUE,
                            np.uint8))
    pieces.append(np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))))
  return np.concatenate(pieces, axis=0)
