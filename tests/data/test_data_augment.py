"""augment: masks follow geometric transforms, colour ones leave them alone."""
import os
import subprocess
import sys

import numpy as np
import pytest

from resunetpp_jax.data import augment

HEIGHT, WIDTH = 96, 128  # Not square, so transposes show.

GEOMETRIC_EXACT = ('identity', 'center_crop', 'random_crop', 'horizontal_flip',
                   'vertical_flip', 'random_rotate90', 'transpose',
                   'gray_center_crop', 'gray_horizontal_flip',
                   'gray_vertical_flip')
GEOMETRIC_INTERPOLATED = ('shift_scale_rotate', 'grid_distortion', 'elastic')
COLOUR = ('gray', 'brightness_contrast', 'gamma', 'hue_saturation_value',
          'clahe', 'blur', 'motion_blur', 'median_blur', 'gaussian_blur',
          'gauss_noise', 'rgb_shift', 'channel_shuffle', 'coarse_dropout')


def _blocks(seed=0):
  """Gray 0/255 blocks of 8x8 pixels and the mask 'pixel is white'."""
  rng = np.random.default_rng(seed)
  cells = rng.integers(0, 2, (HEIGHT // 8, WIDTH // 8), dtype=np.uint8) * 255
  gray = np.kron(cells, np.ones((8, 8), np.uint8))
  return np.dstack([gray] * 3), (gray > 127).astype(np.uint8)


def test_variant_lists_cover_the_26_variants():
  assert len(augment.ORIGINAL_VARIANTS) == 26
  assert sorted(GEOMETRIC_EXACT + GEOMETRIC_INTERPOLATED + COLOUR) == sorted(
      augment.ORIGINAL_VARIANTS)


@pytest.mark.parametrize('name', GEOMETRIC_EXACT)
def test_exact_geometric_variants_move_mask_with_image(name):
  image, mask = _blocks()
  out_image, out_mask = augment.apply_variant(
      name, image, mask, np.random.default_rng(1))
  np.testing.assert_array_equal(out_mask, out_image[:, :, 0] > 127)
  if 'crop' in name:
    assert out_image.shape[:2] == (HEIGHT - 32, WIDTH - 32)
  elif name in ('transpose', 'random_rotate90'):
    assert out_image.shape[:2] in ((WIDTH, HEIGHT), (HEIGHT, WIDTH))
  else:
    assert out_image.shape[:2] == (HEIGHT, WIDTH)
  if name == 'transpose':
    np.testing.assert_array_equal(out_mask, mask.T)
  if name.endswith('horizontal_flip'):
    np.testing.assert_array_equal(out_mask, mask[:, ::-1])


@pytest.mark.parametrize('name', GEOMETRIC_INTERPOLATED)
def test_warping_variants_move_mask_with_image(name):
  image, mask = _blocks()
  out_image, out_mask = augment.apply_variant(
      name, image, mask, np.random.default_rng(2))
  assert out_image.shape == image.shape and out_mask.shape == mask.shape
  assert out_mask.dtype == np.uint8 and set(np.unique(out_mask)) <= {0, 1}
  # Linear (image) and nearest (mask) interpolation differ only at edges.
  agreement = np.mean(out_mask == (out_image[:, :, 0] > 127))
  assert agreement > 0.95
  assert np.mean(out_mask != mask) > 0.05  # It did move.


@pytest.mark.parametrize('name', COLOUR)
def test_colour_variants_leave_mask_untouched(name):
  image = np.random.default_rng(3).integers(0, 256, (HEIGHT, WIDTH, 3),
                                            dtype=np.uint8)
  mask = (image[:, :, 1] > 100).astype(np.uint8)
  out_image, out_mask = augment.apply_variant(
      name, image, mask, np.random.default_rng(4))
  np.testing.assert_array_equal(out_mask, mask)
  assert out_image.shape == image.shape and out_image.dtype == np.uint8
  assert not np.array_equal(out_image, image)


def test_coarse_dropout_cuts_eight_32px_holes():
  image = np.full((256, 256, 3), 200, np.uint8)
  out_image, _ = augment.apply_variant(
      'coarse_dropout', image, np.zeros((256, 256), np.uint8),
      np.random.default_rng(0))
  holes = np.all(out_image == 0, axis=-1)
  # At most 8 * 32 * 32 (holes may overlap), and at least one full hole.
  assert 32 * 32 <= holes.sum() <= 8 * 32 * 32


@pytest.mark.parametrize('policy', augment.POLICIES)
def test_policies_are_deterministic_given_the_generator(policy):
  image, mask = _blocks()
  runs = [augment.augment(policy, image, mask, np.random.default_rng([7, 1, 5]))
          for _ in range(2)]
  for first, second in zip(*runs):
    np.testing.assert_array_equal(first, second)


def test_original_policy_draws_every_variant():
  image, mask = _blocks()
  shapes = set()
  for seed in range(40):
    out_image, out_mask = augment.augment('original', image, mask,
                                          np.random.default_rng(seed))
    assert out_image.dtype == np.uint8 and out_mask.dtype == np.uint8
    shapes.add(out_image.shape[:2])
  # Identity-size, crops and (with rot90/transpose) swapped sizes all occur.
  assert {(HEIGHT, WIDTH), (HEIGHT - 32, WIDTH - 32), (WIDTH, HEIGHT)} <= shapes


def test_light_policy_keeps_mask_aligned():
  image, mask = _blocks()
  for seed in range(8):
    out_image, out_mask = augment.augment('light', image, mask,
                                          np.random.default_rng(seed))
    assert np.mean(out_mask == (out_image[:, :, 0] > 127)) > 0.95


def test_unknown_policy_is_rejected():
  image, mask = _blocks()
  with pytest.raises(ValueError, match='config.augment'):
    augment.augment('heavy', image, mask, np.random.default_rng(0))


def test_resize_pair_gives_size_and_keeps_mask_binary():
  image, mask = _blocks()
  out_image, out_mask = augment.resize_pair(image, mask, (48, 80))
  assert out_image.shape == (48, 80, 3) and out_mask.shape == (48, 80)
  assert set(np.unique(out_mask)) <= {0, 1}
  # 8x8 blocks shrunk by 2 in height and 1.6 in width stay mostly aligned.
  assert np.mean(out_mask == (out_image[:, :, 0] > 127)) > 0.9
  up_image, up_mask = augment.resize_pair(image, mask, (192, 256))
  np.testing.assert_array_equal(up_mask, np.kron(mask, np.ones((2, 2))))
  assert up_image.shape == (192, 256, 3)


_IMPORT_RECORDING_LOOKUPS = """
import socket, sys
lookups = []
def refuse(host, *args, **kwargs):
  lookups.append(host)
  raise OSError('no network in this test')
socket.getaddrinfo = refuse
import {module}
print(lookups)
"""


@pytest.mark.parametrize('module, expected', [('albumentations', "['pypi.org']"),  # Shows the check is seen.
                                              ('resunetpp_jax.data.augment', '[]')])
def test_importing_the_augmentation_makes_no_network_request(module, expected):
  """Every data-loader worker imports it: albumentations' update check would wait on the network in each."""
  env = {k: v for k, v in os.environ.items() if k != 'NO_ALBUMENTATIONS_UPDATE'}
  result = subprocess.run([sys.executable, '-c', _IMPORT_RECORDING_LOOKUPS.format(module=module)], env=env,
                          capture_output=True, text=True, check=True)
  assert result.stdout.strip() == expected, result.stderr
