"""Finds image/mask pairs in a downloaded dataset folder and checks them.

Every problem is either handled and counted in a `PrepareSummary`, or stops
preparation with an error naming the file and what to do:

  * unreadable, corrupt or truncated file, or one declaring more pixels than
    --max_pixels: error (replace or remove the pair);
  * image and mask of different sizes: error (they cannot be aligned);
  * two files of the same name (e.g. 1.tif and 1.tiff): error (keep one);
  * image without mask, mask without image: skipped, counted and named;
  * entries that are not image files (readme, Thumbs.db, hidden files,
    folders, devices): counted and named;
  * grayscale, palette, RGBA, 16-bit images: converted to RGB uint8, counted;
  * masks with values other than 0/255 (JPEG ringing, noise): thresholded at
    128, counted; masks holding only 0/1: 1 is the polyp, counted; masks with
    many mid-grey values (a probability map, a gradient): thresholded,
    counted and named as not binary;
  * empty masks: kept (a frame without polyp is valid), counted and named;
  * byte-identical (decoded) images: kept, counted, and always put in the same
    split so that no copy of a test image is trained on.
The errors of all pairs are reported together, so that one pass fixes them.
"""
import collections
import concurrent.futures
import dataclasses
import hashlib
import os

import numpy as np

from resunetpp_jax import errors as errors_lib
from resunetpp_jax.data import image_io

SPLIT_SEED = 42
VALID_FRACTION = TEST_FRACTION = 0.1


class DatasetFolderError(errors_lib.UserError, ValueError):
  """manual_dir cannot be prepared as it is: missing, in no known layout, or
  holding pairs that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a dataset keeps its images and masks, relative to manual_dir.

  The mask of image `<dir>/<stem>.<ext>` is `<mask_dir>/<mask_prefix><stem>.*`
  (the extensions may differ). When both folders are the same, files whose
  name starts with mask_prefix are the masks.
  """
  image_dir: str
  mask_dir: str
  mask_prefix: str = ''

  def describe(self) -> str:
    images = os.path.join(self.image_dir, 'NAME.ext')
    masks = os.path.join(self.mask_dir, f'{self.mask_prefix}NAME.ext')
    return f'{images} with mask {masks}'


IMAGES_AND_MASKS = Layout('images', 'masks')  # Kvasir-SEG and PraNet copies.


@dataclasses.dataclass(frozen=True)
class Pair:
  name: str  # The image's file name without extension.
  image_path: str
  mask_path: str


@dataclasses.dataclass(frozen=True)
class CheckedPair:
  """A readable pair: its size, decoded image's digest, conversion notes."""
  pair: Pair
  height: int
  width: int
  digest: str
  image_notes: tuple[str, ...]
  mask_notes: tuple[str, ...]
  empty_mask: bool


def _layout_dirs(root: str, layout: Layout):
  return (os.path.join(root, layout.image_dir),
          os.path.join(root, layout.mask_dir))


def _has_images(folder: str) -> bool:
  return os.path.isdir(folder) and any(
      entry.name.lower().endswith(image_io.IMAGE_EXTENSIONS)
      for entry in os.scandir(folder))


def find_layout(root: str, layouts, dataset: str, instructions: str) -> Layout:
  """The first layout whose image and mask folders exist under `root`."""
  for layout in layouts:
    image_dir, mask_dir = _layout_dirs(root, layout)
    if _has_images(image_dir) and _has_images(mask_dir):
      return layout
  expected = '\n'.join(f'  {layout.describe()}' for layout in layouts)
  raise DatasetFolderError(
      f'manual_dir {root!r} does not hold {dataset} in a known layout;'
      f' expected one of (relative to manual_dir):\n{expected}\n{instructions}')


def _files_by_stem(folder: str, ignored: list[str]) -> dict[str, str]:
  files = {}
  for entry in sorted(os.scandir(folder), key=lambda e: e.name):
    stem, ext = os.path.splitext(entry.name)
    if entry.is_dir():
      ignored.append(entry.path + os.sep)
      continue
    if (not entry.is_file() or entry.name.startswith('.') or
        ext.lower() not in image_io.IMAGE_EXTENSIONS):
      ignored.append(entry.path)
      continue
    if stem in files:
      raise DatasetFolderError(
          f'Two files named {stem!r} in {folder}: {files[stem]} and'
          f' {entry.path}. Keep only one of them.')
    files[stem] = entry.path
  return files


def list_pairs(root: str, layout: Layout):
  """Returns (pairs, images without mask, masks without image, ignored files).

  Unpaired entries are file paths; pairs are sorted by name.
  """
  image_dir, mask_dir = _layout_dirs(root, layout)
  ignored = []
  images = _files_by_stem(image_dir, ignored)
  if os.path.samefile(image_dir, mask_dir):
    masks = {stem: path for stem, path in images.items()
             if stem.startswith(layout.mask_prefix)}
    images = {stem: path for stem, path in images.items() if stem not in masks}
  else:
    masks = _files_by_stem(mask_dir, ignored)
  prefix = len(layout.mask_prefix)
  masks_by_name = {stem[prefix:]: path for stem, path in masks.items()
                   if stem.startswith(layout.mask_prefix)}
  ignored += [path for stem, path in masks.items()
              if not stem.startswith(layout.mask_prefix)]
  pairs = [Pair(name, images[name], masks_by_name[name])
           for name in sorted(images) if name in masks_by_name]
  without_mask = [images[name] for name in sorted(images)
                  if name not in masks_by_name]
  without_image = [masks_by_name[name] for name in sorted(masks_by_name)
                   if name not in images]
  return pairs, without_mask, without_image, ignored


def check_pair(pair: Pair, stage_dir: str) -> CheckedPair:
  """Decodes a pair, checks it and stages it in stage_dir (`staged_path`)."""
  image, image_notes = image_io.inspect_image(pair.image_path)
  mask, mask_notes = image_io.inspect_mask(pair.mask_path)
  if image.shape[:2] != mask.shape:
    raise DatasetFolderError(
        f'{pair.mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image'
        f' {pair.image_path} is {image.shape[1]}x{image.shape[0]} (WxH). Fix'
        ' or remove this pair.')
  digest = hashlib.sha256(image.tobytes() + repr(image.shape).encode())
  np.save(staged_path(stage_dir, pair.name, 'image'), image)
  with open(staged_path(stage_dir, pair.name, 'mask'), 'wb') as f:
    f.write(image_io.encode_png(mask.astype(np.uint8) * 255))
  return CheckedPair(pair, image.shape[0], image.shape[1], digest.hexdigest(),
                     image_notes, mask_notes, not mask.any())


def staged_path(stage_dir: str, name: str, kind: str) -> str:
  """The decoded image as .npy (stored as is) and the mask as the PNG the dataset stores."""
  return os.path.join(stage_dir, f'{name}.{kind}.{"npy" if kind == "image" else "png"}')


def check_pairs(pairs, stage_dir: str) -> list[CheckedPair]:
  """`check_pair` over all pairs, in threads (the decoders release the GIL).

  Raises:
    DatasetFolderError: naming every pair that cannot be used.
  """
  def check(pair: Pair) -> CheckedPair | errors_lib.UserError:
    try:
      return check_pair(pair, stage_dir)
    except errors_lib.UserError as error:
      return error
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    checked = list(pool.map(check, pairs))
  errors = [item for item in checked if isinstance(item, errors_lib.UserError)]
  if len(errors) == 1:
    raise errors[0]
  if errors:
    raise DatasetFolderError(
        f'{len(errors)} of the {len(pairs)} image/mask pairs cannot be used:\n'
        + '\n'.join(f'  {error}' for error in errors))
  return checked


def duplicate_groups(checked: list[CheckedPair]) -> list[list[str]]:
  """Names grouped by identical decoded image, groups in sorted-name order."""
  by_digest = collections.defaultdict(list)
  for item in checked:
    by_digest[item.digest].append(item.pair.name)
  return sorted((sorted(names) for names in by_digest.values()),
                key=lambda names: names[0])


def seeded_split(groups: list[list[str]]) -> dict[str, list[str]]:
  """The 80/10/10 train/valid/test split, deterministic (seed 42).

  Duplicate groups (sorted by their first name) are permuted with
  np.random.default_rng(42); walking that order, groups fill `test` until it
  holds max(1, round(0.1 n)) images, then `valid` likewise, then `train`
  takes the rest. A group is never divided, so a split may exceed its share by
  less than one group. n=1000 -> 800/100/100; n=612 -> 490/61/61.
  """
  total = sum(len(group) for group in groups)
  if len(groups) < 3:
    raise DatasetFolderError(
        f'Only {total} image/mask pairs ({len(groups)} distinct images):'
        ' train, valid and test need at least one each.')
  targets = {'test': max(1, round(TEST_FRACTION * total)),
             'valid': max(1, round(VALID_FRACTION * total))}
  splits = {'train': [], 'valid': [], 'test': []}
  order = np.random.default_rng(SPLIT_SEED).permutation(len(groups))
  for index in order:
    split = next((name for name in ('test', 'valid')
                  if len(splits[name]) < targets[name]), 'train')
    splits[split].extend(groups[index])
  return {split: sorted(names) for split, names in splits.items()}


@dataclasses.dataclass
class PrepareSummary:
  """What preparation found and did; stored in the dataset's metadata."""
  manual_dir: str
  layout: str
  pairs: int
  images_without_mask: list[str]
  masks_without_image: list[str]
  ignored_files: list[str]
  image_conversions: dict[str, int]
  mask_conversions: dict[str, int]
  empty_masks: list[str]
  duplicate_groups: list[list[str]]
  pranet_splits: str
  split_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
  # Defaulted: summaries stored before it existed still load.
  not_binary_masks: list[str] = dataclasses.field(default_factory=list)

  @classmethod
  def build(cls, manual_dir, layout, checked, unpaired, groups, pranet_splits):
    without_mask, without_image, ignored = unpaired
    return cls(
        manual_dir=os.path.abspath(manual_dir),
        layout=layout.describe(),
        pairs=len(checked),
        images_without_mask=without_mask,
        masks_without_image=without_image,
        ignored_files=ignored,
        image_conversions=dict(collections.Counter(
            note for item in checked for note in item.image_notes)),
        mask_conversions=dict(collections.Counter(
            note for item in checked for note in item.mask_notes)),
        empty_masks=[item.pair.name for item in checked if item.empty_mask],
        not_binary_masks=[item.pair.name for item in checked
                          if 'not binary' in item.mask_notes],
        duplicate_groups=[group for group in groups if len(group) > 1],
        pranet_splits=pranet_splits,
    )

  def lines(self) -> list[str]:
    """Human-readable report; lists are shown as counts plus a few names."""
    def some(items):
      shown = ', '.join(map(str, items[:5]))
      return f'{len(items)}' + (f' ({shown}{", ..." if len(items) > 5 else ""})'
                                if items else '')
    duplicates = sum(len(group) for group in self.duplicate_groups)
    return [
        f'manual_dir: {self.manual_dir}',
        f'layout: {self.layout}',
        f'pairs: {self.pairs}',
        f'split sizes: {self.split_sizes}',
        f'images without mask (skipped): {some(self.images_without_mask)}',
        f'masks without image (skipped): {some(self.masks_without_image)}',
        'other entries, not image files (ignored):'
        f' {some(self.ignored_files)}',
        f'image conversions: {self.image_conversions or "none"}',
        f'mask conversions: {self.mask_conversions or "none"}',
        f'empty masks (kept): {some(self.empty_masks)}',
        'masks not binary (thresholded at 128; check that they are masks, not'
        f' probability maps): {some(self.not_binary_masks)}',
        f'duplicate groups (kept, same split): {len(self.duplicate_groups)}'
        f' groups, {duplicates} images',
        f'PraNet splits: {self.pranet_splits}',
    ]
