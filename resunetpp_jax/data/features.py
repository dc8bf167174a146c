"""The features every polyp builder stores, so one pipeline reads them all."""
import numpy as np
import tensorflow_datasets as tfds

from resunetpp_jax.data import image_io


def polyp_features() -> tfds.features.FeaturesDict:
  """Image as decoded RGB bytes and mask as 0/255 PNG, both at original size, plus provenance.

  Why the image is stored decoded: reading it is then a copy (0.4 ms for Kvasir-SEG's typical 620x530) instead
  of a PNG decode (6-12 ms), which was the largest cost per example of the training input pipeline
  (docs/records/PERF.md); the price is about 2.5x the disk of PNG. Masks compress ~100x and decode in under 1 ms,
  so they stay PNG (viewable as pictures); readers binarize them. `name` is the source file name without
  extension; `height` and `width` are the original size, for resizing predictions back.
  """
  return tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(
          shape=(None, None, 3), dtype=np.uint8,
          encoding=tfds.features.Encoding.BYTES),
      'mask': tfds.features.Image(
          shape=(None, None, 1), dtype=np.uint8, encoding_format='png'),
      'name': tfds.features.Text(),
      'height': tfds.features.Scalar(dtype=np.int32),
      'width': tfds.features.Scalar(dtype=np.int32),
  })


class _LocalDatasetInfo(tfds.core.DatasetInfo):
  """The DatasetInfo of a dataset that is only ever prepared locally, never fetched from TFDS's GCS bucket.

  tfds looks an unprepared dataset up in that bucket and makes a temporary folder before it finds the lookup
  disabled; the empty folder stays (tensorflow-datasets 4.9, `DatasetInfo.initialize_from_bucket`): one in /tmp per
  builder made before preparation, hundreds after a day's runs.
  """

  def initialize_from_bucket(self) -> None:
    pass


def dataset_info(builder: tfds.core.DatasetBuilder, **kwargs) -> tfds.core.DatasetInfo:
  """`builder`'s DatasetInfo (kwargs as for tfds.core.DatasetInfo), with polyp_features() as its features."""
  return _LocalDatasetInfo(builder=builder, features=polyp_features(), **kwargs)


def make_example(name: str, image: np.ndarray, mask: np.ndarray) -> dict:
  """The example of an RGB uint8 image and a bool mask of the same size."""
  if image.shape[:2] != mask.shape:
    raise ValueError(f'{name}: image size {image.shape[:2]} differs from mask'
                     f' size {mask.shape}.')
  return {
      'image': np.ascontiguousarray(image, np.uint8),
      'mask': image_io.encode_png(mask.astype(np.uint8) * 255),
      'name': name,
      'height': image.shape[0],
      'width': image.shape[1],
  }
