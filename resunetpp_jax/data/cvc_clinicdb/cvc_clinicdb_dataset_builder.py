"""`cvc_clinicdb`: CVC-ClinicDB, 612 frames of 384x288 (Bernal et al., 2015).

Reads the official download (`Original/N.tif`, `Ground Truth/N.tif`) or a
PraNet copy (`images/N.png`, `masks/N.png`). The official TIFFs are decoded
with tifffile: Pillow refuses them and OpenCV silently returns grayscale.
Some masks carry low noise values; they are thresholded at 128. Frames come
from 29 videos and the splits are frame-level (as the original and PraNet
did), so a video may appear on both sides of a split.
"""
from resunetpp_jax.data import image_mask_pairs
from resunetpp_jax.data import polyp_folder_builder


class CvcClinicdb(polyp_folder_builder.PolypFolderBuilder):
  """CVC-ClinicDB polyp segmentation dataset."""

  DATASET_NAME = 'CVC-ClinicDB'
  HOMEPAGE = 'https://polyp.grand-challenge.org/CVCClinicDB/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Download CVC-ClinicDB from'
      ' https://polyp.grand-challenge.org/CVCClinicDB/ (or the CVC-ClinicDB'
      ' folder of a PraNet benchmark copy,'
      ' https://github.com/DengPingFan/PraNet), unpack it and pass the folder'
      ' holding Original/ and "Ground Truth/" (or images/ and masks/) as'
      ' manual_dir.')
  LAYOUTS = (image_mask_pairs.Layout('Original', 'Ground Truth'),
             image_mask_pairs.IMAGES_AND_MASKS)
  PRANET_LISTS = ('pranet_clinicdb_train.txt', 'pranet_clinicdb_test.txt')
