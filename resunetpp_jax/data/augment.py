"""Training-time augmentation of (image, mask) pairs, drawn afresh per epoch.

Policies:
  'original': the original project's 25 albumentations transforms plus the
    identity; every example draws one of these 26 variants at random each time
    it is read. The original instead wrote the 25 variants to disk once, so its
    "epoch" was 26 passes over fixed copies; `epoch_multiplier=26` gives the
    same number of examples per epoch with fresh randomness.
  'light': a random chain of flips, 90-degree rotations, a small affine warp
    and brightness/contrast jitter.
  'none': no augmentation.

Transforms follow albumentations 2.0.8 (argument names differ from the 1.x
the original used; see the comments). Geometric transforms move the mask with
nearest-neighbour interpolation; colour transforms leave it alone. Randomness
comes only from the `np.random.Generator` passed in, so a pipeline that derives
it from (seed, epoch, position) is deterministic whatever its worker count.
"""
import os
import random
import threading

# albumentations asks PyPI for its newest version at import, in every data-loader worker: on a machine without
# internet (a GPU node, CI) each import waits on name resolution and prints a warning. Users can still set it to 0.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')
import albumentations as A  # pylint: disable=g-import-not-at-top,wrong-import-position
import cv2
import numpy as np

POLICIES = ('original', 'light', 'none')

# Pixels the original's crops remove from each side length.
CROP_MARGIN = 32

# The 26 variants of the 'original' policy, in the order SPEC.md lists them.
ORIGINAL_VARIANTS = (
    'identity', 'center_crop', 'random_crop', 'horizontal_flip',
    'vertical_flip', 'random_rotate90', 'shift_scale_rotate', 'transpose',
    'grid_distortion', 'elastic', 'gray', 'gray_center_crop',
    'gray_horizontal_flip', 'gray_vertical_flip', 'brightness_contrast',
    'gamma', 'hue_saturation_value', 'clahe', 'blur', 'motion_blur',
    'median_blur', 'gaussian_blur', 'gauss_noise', 'rgb_shift',
    'channel_shuffle', 'coarse_dropout')

_CROPS = ('center_crop', 'random_crop', 'gray_center_crop')


def _size_free_variant(name: str) -> list[A.BasicTransform]:
  """The transforms of one variant whose arguments do not depend on size."""
  gray = A.ToGray(p=1)  # 3 equal channels, weighted average, as in 1.x.
  return {
      'identity': [],
      'horizontal_flip': [A.HorizontalFlip(p=1)],
      'vertical_flip': [A.VerticalFlip(p=1)],
      'random_rotate90': [A.RandomRotate90(p=1)],
      # ShiftScaleRotate's defaults, written as the Affine it now wraps
      # (2.x deprecates ShiftScaleRotate). Borders are filled with 0 in 2.x
      # (1.x reflected them); the mask gets 0 there too.
      'shift_scale_rotate': [A.Affine(
          scale=(0.9, 1.1), translate_percent=(-0.0625, 0.0625),
          rotate=(-45, 45), p=1)],
      'transpose': [A.Transpose(p=1)],
      'grid_distortion': [A.GridDistortion(p=1)],
      # The original passed alpha_affine=3.6 too: 2.x removed that argument
      # (the random affine it added is gone); alpha and sigma are as before.
      'elastic': [A.ElasticTransform(alpha=120, sigma=6, p=1)],
      'gray': [gray],
      'gray_horizontal_flip': [gray, A.HorizontalFlip(p=1)],
      'gray_vertical_flip': [gray, A.VerticalFlip(p=1)],
      'brightness_contrast': [A.RandomBrightnessContrast(p=1)],
      'gamma': [A.RandomGamma(p=1)],
      'hue_saturation_value': [A.HueSaturationValue(p=1)],
      'clahe': [A.CLAHE(p=1)],
      'blur': [A.Blur(p=1)],
      'motion_blur': [A.MotionBlur(p=1)],
      'median_blur': [A.MedianBlur(p=1)],
      'gaussian_blur': [A.GaussianBlur(p=1)],
      # 2.x's default std_range is 1.x's var_limit=(10, 50), renormalised.
      'gauss_noise': [A.GaussNoise(p=1)],
      'rgb_shift': [A.RGBShift(p=1)],
      'channel_shuffle': [A.ChannelShuffle(p=1)],
      # 1.x CoarseDropout(max_holes=8, max_height=32, max_width=32) meant
      # exactly 8 holes of 32x32 (min_* defaulted to max_*). The mask is kept
      # (fill_mask=None), as 1.x's mask_fill_value=None did.
      'coarse_dropout': [A.CoarseDropout(
          num_holes_range=(8, 8), hole_height_range=(32, 32),
          hole_width_range=(32, 32), p=1)],
  }[name]


def _light_chain() -> list[A.BasicTransform]:
  return [
      A.HorizontalFlip(p=0.5),
      A.VerticalFlip(p=0.5),
      A.RandomRotate90(p=0.5),
      A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05),
               rotate=(-15, 15), p=0.5),
      A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1,
                                 p=0.5),
  ]


class _Transforms(threading.local):
  """Per-thread transform objects: albumentations keeps RNG state in them."""

  def __init__(self):
    super().__init__()
    self.size_free = {}
    self.light = None

  def variant(self, name: str, height: int, width: int):
    if name in _CROPS:
      return _crop_variant(name, height, width)
    if name not in self.size_free:
      self.size_free[name] = _size_free_variant(name)
    return self.size_free[name]

  def light_chain(self):
    if self.light is None:
      self.light = _light_chain()
    return self.light


_TRANSFORMS = _Transforms()


def _crop_variant(name: str, height: int, width: int):
  # Crops are cheap to build; a fresh object per call is thread-safe.
  crop_height = max(height - CROP_MARGIN, 1)
  crop_width = max(width - CROP_MARGIN, 1)
  if name == 'random_crop':
    return [A.RandomCrop(crop_height, crop_width, p=1)]
  crop = A.CenterCrop(crop_height, crop_width, p=1)
  return [A.ToGray(p=1), crop] if name == 'gray_center_crop' else [crop]


def _apply(transforms, image: np.ndarray, mask: np.ndarray,
           rng: np.random.Generator):
  """Runs `transforms` in order, all drawing from generators seeded by rng."""
  for transform in transforms:
    seed = int(rng.integers(2**63))
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    result = transform(image=image, mask=mask)
    image, mask = result['image'], result['mask']
  return image, mask


def apply_variant(name: str, image: np.ndarray, mask: np.ndarray,
                  rng: np.random.Generator):
  """Applies one named variant of the 'original' policy.

  Args:
    name: one of ORIGINAL_VARIANTS.
    image: uint8 (H, W, 3) RGB.
    mask: uint8 (H, W) in {0, 1}.
    rng: the only source of randomness.

  Returns:
    (image, mask) at the variant's output size (crops remove 32 pixels per
    side length, rot90/transpose may swap H and W).
  """
  transforms = _TRANSFORMS.variant(name, *image.shape[:2])
  return _apply(transforms, image, mask, rng)


def augment(policy: str, image: np.ndarray, mask: np.ndarray,
            rng: np.random.Generator):
  """Augments one pair with `policy`; see `apply_variant` for the formats."""
  if policy == 'original':
    name = ORIGINAL_VARIANTS[rng.integers(len(ORIGINAL_VARIANTS))]
    return apply_variant(name, image, mask, rng)
  if policy == 'light':
    return _apply(_TRANSFORMS.light_chain(), image, mask, rng)
  if policy == 'none':
    return image, mask
  raise ValueError(f'config.augment={policy!r}: expected one of {POLICIES}.')


def resize_pair(image: np.ndarray, mask: np.ndarray,
                size: tuple[int, int]):
  """Resizes to size=(height, width): image area/bilinear, mask nearest."""
  height, width = size
  if image.shape[:2] == (height, width):
    return image, mask
  shrinking = height <= image.shape[0] and width <= image.shape[1]
  image = cv2.resize(image, (width, height), interpolation=(
      cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR))
  mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
  return image, mask
