r"""Writes the compact copy of the training data that travels to the GPU machine (64 MiB per call in all).

  python -m tools.device.make_carry_data --kvasir=../shared/data/Kvasir-SEG \
      --clinicdb=../shared/data/CVC-ClinicDB --output=.carry/data

Every pair of both datasets (the PraNet lists need the test names present too, though only pranet_train is
trained on) is read through `data.image_io` (its traps handled as in preparation), resized to the training size
as the input pipeline resizes (`augment.resize_pair`: area for images, nearest for masks), and written in the
PraNet layout: images as JPEG quality 90, masks as 0/255 PNG. The builders read that layout as they read the
downloads. Prints the size written.
"""
import os

from absl import app
from absl import flags
import cv2
import numpy as np

from resunetpp_jax.data import augment
from resunetpp_jax.data import image_io
from resunetpp_jax.data import image_mask_pairs

_KVASIR = flags.DEFINE_string('kvasir', '../shared/data/Kvasir-SEG', 'The Kvasir-SEG download.')
_CLINICDB = flags.DEFINE_string('clinicdb', '../shared/data/CVC-ClinicDB', 'CVC-ClinicDB, PraNet layout.')
_OUTPUT = flags.DEFINE_string('output', '.carry/data', 'Where to write <Dataset>/images and <Dataset>/masks.')
_SIZE = flags.DEFINE_list('size', ['288', '384'], 'Height, width: the recipe\'s image_size.')
_QUALITY = flags.DEFINE_integer('jpeg_quality', 90, 'JPEG quality of the images.')


def write_dataset(source: str, destination: str, size: tuple[int, int], quality: int) -> int:
  """Writes every pair of `source` resized to `size`; returns the number of pairs."""
  pairs = image_mask_pairs.list_pairs(source, image_mask_pairs.IMAGES_AND_MASKS)[0]
  for folder in ('images', 'masks'):
    os.makedirs(os.path.join(destination, folder), exist_ok=True)
  for pair in pairs:
    image = image_io.read_image(pair.image_path)
    mask = image_io.read_mask(pair.mask_path).astype(np.uint8) * 255
    image, mask = augment.resize_pair(image, mask, size)
    cv2.imwrite(os.path.join(destination, 'images', f'{pair.name}.jpg'), image[:, :, ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, quality])
    cv2.imwrite(os.path.join(destination, 'masks', f'{pair.name}.png'), mask)
  return len(pairs)


def main(argv):
  del argv
  size = tuple(int(s) for s in _SIZE.value)
  for name, source in (('Kvasir-SEG', _KVASIR.value), ('CVC-ClinicDB', _CLINICDB.value)):
    count = write_dataset(source, os.path.join(_OUTPUT.value, name), size, _QUALITY.value)
    print(f'{name}: {count} pairs at {size[0]}x{size[1]}')
  total = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(_OUTPUT.value) for f in files)
  print(f'{_OUTPUT.value}: {total / 2**20:.1f} MiB')


if __name__ == '__main__':
  app.run(main)
