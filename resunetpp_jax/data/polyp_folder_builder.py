"""Base TFDS builder for polyp datasets downloaded by the user (manual_dir).

Images are decoded once, at preparation, and stored as their RGB pixels at
original size (`features.polyp_features`: TIFF and JPEG decoding quirks never
reach training, and reading costs no decode); masks are stored binarized as
0/255 PNG. Splits:
  train / valid / test: 80/10/10 at random with seed 42 (see
    `image_mask_pairs.seeded_split`), as the original project split;
  pranet_train / pranet_test: the PraNet benchmark's lists, where the dataset
    has them and the folder holds every listed image;
  all: every pair, for cross-dataset evaluation. TFDS reserves the split
    name 'all' (for the union of all splits, which would count the PraNet
    splits twice), so it is not stored; the pipeline reads 'all' as
    'train+valid+test'.
The prepare summary (`image_mask_pairs.PrepareSummary`) is kept in the
dataset's metadata: `builder.info.metadata['prepare_summary']`.

Checked pairs are staged, decoded, in a folder
DATA_DIR/downloads/NAME-staging-HOST-PID-* (Kvasir-SEG: 6 GB), deleted when
preparation ends, by an error too; one left by a killed process (its PID
gone) is deleted by the next preparation on the same host.
"""
import dataclasses
import importlib.resources
import os
import pathlib
import shutil
import socket
import tempfile

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from resunetpp_jax.data import features
from resunetpp_jax.data import image_mask_pairs


def read_split_list(file_name: str) -> list[str]:
  """Names listed in resunetpp_jax/data/splits/<file_name>, one per line."""
  text = (importlib.resources.files('resunetpp_jax.data') / 'splits' /
          file_name).read_text()
  return [line.strip() for line in text.splitlines() if line.strip()]


def _remove_stale_staging(download_dir: pathlib.Path, prefix: str) -> None:
  """Deletes the `prefix`PID-* folders of processes that have ended."""
  for folder in download_dir.glob(f'{prefix}*'):
    pid = folder.name[len(prefix):].partition('-')[0]
    if not pid.isdigit() or _process_exists(int(pid)):
      continue
    logging.warning('Deleting %s, left by a preparation that was killed.',
                    folder)
    shutil.rmtree(folder, ignore_errors=True)


def _process_exists(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process.
    return True
  return True


class PolypFolderBuilder(tfds.core.GeneratorBasedBuilder,
                         skip_registration=True):
  """Prepares a polyp dataset from a folder in one of `LAYOUTS`."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '2.0.0': 'Images stored decoded (RGB bytes) instead of PNG: no decode when reading.',
  }
  DATASET_NAME = ''  # As people write it, for messages.
  # Where to download, ending with which folder to pass as manual_dir.
  MANUAL_DOWNLOAD_INSTRUCTIONS = ''
  HOMEPAGE = ''
  LAYOUTS: tuple[image_mask_pairs.Layout, ...] = ()
  # (train list, test list) file names in splits/, or None.
  PRANET_LISTS: tuple[str, str] | None = None

  @classmethod
  def check_manual_dir(cls, manual_dir: str) -> None:
    """Raises a helpful error unless manual_dir holds the dataset."""
    if not manual_dir or not os.path.isdir(os.path.expanduser(manual_dir)):
      layouts = '\n'.join(f'  {layout.describe()}' for layout in cls.LAYOUTS)
      raise image_mask_pairs.DatasetFolderError(
          f'{cls.DATASET_NAME} is not prepared yet and needs its downloaded'
          f' folder (config.manual_dirs=\'{cls.name}=FOLDER\','
          f' --manual_dirs={cls.name}=FOLDER of resunetpp_jax.evaluate or'
          ' --manual_dir of resunetpp_jax.data.prepare), but'
          f' {manual_dir!r} is not a folder.'
          f' {cls.MANUAL_DOWNLOAD_INSTRUCTIONS} Expected layout (relative to'
          f' manual_dir), one of:\n{layouts}')
    image_mask_pairs.find_layout(
        os.path.expanduser(manual_dir), cls.LAYOUTS, cls.DATASET_NAME,
        cls.MANUAL_DOWNLOAD_INSTRUCTIONS)

  def _info(self) -> tfds.core.DatasetInfo:
    return features.dataset_info(
        self,
        description=self.__doc__,
        homepage=self.HOMEPAGE,
        metadata=tfds.core.MetadataDict(),
        # Stored in generation (sorted-name) order; the pipeline shuffles.
        disable_shuffling=True,
    )

  def download_and_prepare(self, **kwargs):
    """Prepares, then deletes the staged PNGs of the checked pairs."""
    try:
      super().download_and_prepare(**kwargs)
    finally:
      staging = getattr(self, '_staging', None)
      if staging is not None:
        staging.cleanup()

  @classmethod
  def pranet_splits(cls, names: set[str]):
    """({'pranet_train': [...], 'pranet_test': [...]} or {}, a status line)."""
    if cls.PRANET_LISTS is None:
      return {}, 'not defined for this dataset'
    lists = {split: read_split_list(file_name) for split, file_name in
             zip(('pranet_train', 'pranet_test'), cls.PRANET_LISTS)}
    listed = {name for names_ in lists.values() for name in names_}
    missing = sorted(listed - names)
    if missing:
      return {}, (f'omitted: {len(missing)} of the {len(listed)} listed'
                  f' images are not in the folder (e.g. {missing[:3]})')
    extra = len(names - listed)
    return lists, 'written' + (f'; {extra} images in neither list' if extra
                               else '')

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    layout = image_mask_pairs.find_layout(
        root, self.LAYOUTS, self.DATASET_NAME,
        self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    pairs, *unpaired = image_mask_pairs.list_pairs(root, layout)
    if not pairs:
      raise image_mask_pairs.DatasetFolderError(
          f'No image/mask pairs in {root} ({layout.describe()}).')
    os.makedirs(dl_manager.download_dir, exist_ok=True)
    prefix = f'{self.name}-staging-{socket.gethostname()}-'
    _remove_stale_staging(pathlib.Path(dl_manager.download_dir), prefix)
    self._staging = tempfile.TemporaryDirectory(
        prefix=f'{prefix}{os.getpid()}-',
        dir=os.fspath(dl_manager.download_dir))
    checked = image_mask_pairs.check_pairs(pairs, self._staging.name)
    groups = image_mask_pairs.duplicate_groups(checked)
    splits = image_mask_pairs.seeded_split(groups)
    pranet, pranet_status = self.pranet_splits({p.name for p in pairs})
    splits.update(pranet)
    summary = image_mask_pairs.PrepareSummary.build(
        root, layout, checked, unpaired, groups, pranet_status)
    summary.split_sizes = {split: len(names) for split, names in splits.items()}
    for line in summary.lines():
      logging.info('%s prepare: %s', self.name, line)
    self.info.metadata['prepare_summary'] = dataclasses.asdict(summary)
    by_name = {item.pair.name: item for item in checked}
    return {split: self._generate_examples([by_name[name] for name in names])
            for split, names in splits.items()}

  def _generate_examples(self, checked: list[image_mask_pairs.CheckedPair]):
    for item in checked:
      name = item.pair.name
      image = np.load(image_mask_pairs.staged_path(
          self._staging.name, name, 'image'))
      with open(image_mask_pairs.staged_path(
          self._staging.name, name, 'mask'), 'rb') as f:
        mask_png = f.read()
      yield name, {'image': image, 'mask': mask_png, 'name': name,
                   'height': item.height, 'width': item.width}
