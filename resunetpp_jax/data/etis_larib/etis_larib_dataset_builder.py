"""`etis_larib`: ETIS-LaribPolypDB, 196 frames of 1225x966 (Silva et al., 2014).

Reads the official download (`ETIS-LaribPolypDB/N.tif` or `N.tif`, with
masks `Ground Truth/pN.tif`) or a PraNet copy (`images/*.png`,
`masks/*.png`).
"""
from resunetpp_jax.data import image_mask_pairs
from resunetpp_jax.data import polyp_folder_builder


class EtisLarib(polyp_folder_builder.PolypFolderBuilder):
  """ETIS-LaribPolypDB polyp segmentation dataset."""

  DATASET_NAME = 'ETIS-LaribPolypDB'
  HOMEPAGE = 'https://polyp.grand-challenge.org/EtisLarib/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Download ETIS-LaribPolypDB from'
      ' https://polyp.grand-challenge.org/EtisLarib/ (or the ETIS-LaribPolypDB'
      ' folder of a PraNet benchmark copy,'
      ' https://github.com/DengPingFan/PraNet), unpack it and pass the folder'
      ' holding "Ground Truth/" (or images/ and masks/) as manual_dir.')
  LAYOUTS = (
      image_mask_pairs.Layout('ETIS-LaribPolypDB', 'Ground Truth', 'p'),
      image_mask_pairs.Layout('', 'Ground Truth', 'p'),
      image_mask_pairs.IMAGES_AND_MASKS,
  )
