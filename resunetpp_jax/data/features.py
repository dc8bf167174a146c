"""The features every polyp builder stores, so one pipeline reads them all."""
import numpy as np
import tensorflow_datasets as tfds

from resunetpp_jax.data import image_io


def polyp_features() -> tfds.features.FeaturesDict:
  """Image and mask as lossless PNG at original size, plus provenance.

  Masks are stored as 0/255 so that they are viewable as pictures; readers
  binarize them. `name` is the source file name without extension; `height`
  and `width` are the original size, for resizing predictions back.
  """
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(
          shape=(None, None, 3), dtype=np.uint8, encoding_format='png'),
      'mask': tfds.features.Image(
          shape=(None, None, 1), dtype=np.uint8, encoding_format='png'),
      'name': tfds.features.Text(),
      'height': tfds.features.Scalar(dtype=np.int32),
      'width': tfds.features.Scalar(dtype=np.int32),
  })


def make_example(name: str, image: np.ndarray, mask: np.ndarray) -> dict:
  """Encodes an RGB uint8 image and a bool mask of the same size."""
  if image.shape[:2] != mask.shape:
    raise ValueError(f'{name}: image size {image.shape[:2]} differs from mask'
                     f' size {mask.shape}.')
  return {
      'image': image_io.encode_png(image),
      'mask': image_io.encode_png(mask.astype(np.uint8) * 255),
      'name': name,
      'height': image.shape[0],
      'width': image.shape[1],
  }
