"""`folder_pairs`: the user's own images and masks.

manual_dir must hold `images/` and `masks/`, where the mask of
`images/NAME.ext` is `masks/NAME.*` (any supported extension: jpg, png, bmp,
tif, tiff). Each manual_dir is its own TFDS builder config, named after the
folder and a hash of its absolute path, so different folders never share
prepared data. Splits: train/valid/test (80/10/10, seed 42) and all.
"""
import hashlib
import os

import tensorflow_datasets as tfds

from resunetpp_jax import errors
from resunetpp_jax.data import image_mask_pairs
from resunetpp_jax.data import polyp_folder_builder


class FolderPairs(polyp_folder_builder.PolypFolderBuilder):
  """Images and masks with matching names, from a folder of the user's."""

  DATASET_NAME = 'folder_pairs'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put your images in <folder>/images/ and their masks, with the same'
      ' names (white polyp on black, any extension), in <folder>/masks/; pass'
      ' <folder> as manual_dir.')
  LAYOUTS = (image_mask_pairs.IMAGES_AND_MASKS,)

  @classmethod
  def builder_config_for(cls, manual_dir: str) -> tfds.core.BuilderConfig:
    """A config identifying manual_dir, so each folder is prepared apart."""
    if not manual_dir:
      raise errors.ConfigError(
          "dataset folder_pairs needs its folder (config.manual_dirs="
          "'folder_pairs=FOLDER', or the --manual_dir of"
          ' resunetpp_jax.data.prepare): ' + cls.MANUAL_DOWNLOAD_INSTRUCTIONS)
    path = os.path.abspath(os.path.expanduser(manual_dir))
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    base = ''.join(c if c.isalnum() else '_' for c in os.path.basename(path))
    return tfds.core.BuilderConfig(name=f'{base.lower()}_{digest}',
                                   description=f'Pairs from {path}.')
