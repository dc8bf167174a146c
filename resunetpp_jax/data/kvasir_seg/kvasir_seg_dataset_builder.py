"""`kvasir_seg`: Kvasir-SEG, 1000 polyp images with masks (Jha et al., 2020).

Reads the official download (`images/*.jpg`, `masks/*.jpg`, same names; JPEG
masks are thresholded at 128) or a PraNet copy (`images/*.png`,
`masks/*.png`). Sizes vary from 332x487 to 1920x1072 and are kept.
"""
from resunetpp_jax.data import image_mask_pairs
from resunetpp_jax.data import polyp_folder_builder


class KvasirSeg(polyp_folder_builder.PolypFolderBuilder):
  """Kvasir-SEG polyp segmentation dataset."""

  DATASET_NAME = 'Kvasir-SEG'
  HOMEPAGE = 'https://datasets.simula.no/kvasir-seg/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Download https://datasets.simula.no/downloads/kvasir-seg.zip (or the'
      ' Kvasir folder of a PraNet benchmark copy,'
      ' https://github.com/DengPingFan/PraNet), unpack it and pass the'
      ' Kvasir-SEG folder (the one holding images/ and masks/) as manual_dir.')
  LAYOUTS = (image_mask_pairs.IMAGES_AND_MASKS,)
  PRANET_LISTS = ('pranet_kvasir_train.txt', 'pranet_kvasir_test.txt')
