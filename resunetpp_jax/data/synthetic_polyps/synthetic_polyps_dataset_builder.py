"""`synthetic_polyps`: procedural polyp images, generated locally in seconds.

For demos, smoke tests and CI, where no real dataset may be shipped. Every
example is a pure function of (split, index), so the dataset is identical on
every machine.
"""
import concurrent.futures
import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from resunetpp_jax.data import features
from resunetpp_jax.data.synthetic_polyps import render

HEIGHT, WIDTH = 128, 160
SPLIT_SIZES = {'train': 512, 'valid': 64, 'test': 64}
# Fixed, not config.seed: the data must not change with the training seed.
DATA_SEED = 20240601
SPLIT_IDS = {'train': 0, 'valid': 1, 'test': 2}


class SyntheticPolyps(tfds.core.GeneratorBasedBuilder):
  """Procedural colonoscopy-like frames with polyp masks."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '2.0.0': 'Images stored decoded (RGB bytes) instead of PNG, as every polyp builder.',
  }

  def _info(self) -> tfds.core.DatasetInfo:
    return features.dataset_info(
        self,
        description=__doc__,
        # Stored in generation (sorted-name) order; the pipeline shuffles.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in SPLIT_SIZES}

  def _generate_examples(self, split: str):
    # Threads: most of the rendering is numpy and OpenCV, which drop the GIL.
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
      yield from pool.map(functools.partial(_example, split),
                          range(SPLIT_SIZES[split]))


def _example(split: str, index: int) -> tuple[str, dict]:
  rng = np.random.default_rng([DATA_SEED, SPLIT_IDS[split], index])
  image, mask = render.render(rng, HEIGHT, WIDTH)
  name = f'{split}_{index:04d}'
  return name, features.make_example(name, image, mask)
