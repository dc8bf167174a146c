"""`cvc_colondb`: CVC-ColonDB, 380 frames of 574x500 (Bernal et al., 2012).

Reads the official download (`N.tiff`, some `N.tif`, with masks `pN.tiff` in
the same folder) or a PraNet copy (`images/*.png`, `masks/*.png`). The
dataset holds 17 groups of byte-identical images: all are kept (PraNet tests
on all 380) and each group stays within one of train/valid/test.
"""
from resunetpp_jax.data import image_mask_pairs
from resunetpp_jax.data import polyp_folder_builder


class CvcColondb(polyp_folder_builder.PolypFolderBuilder):
  """CVC-ColonDB polyp segmentation dataset."""

  DATASET_NAME = 'CVC-ColonDB'
  HOMEPAGE = 'http://vi.cvc.uab.es/colon-qa/cvccolondb/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Download CVC-ColonDB from http://vi.cvc.uab.es/colon-qa/cvccolondb/'
      ' (or the CVC-ColonDB folder of a PraNet benchmark copy,'
      ' https://github.com/DengPingFan/PraNet), unpack it and pass the folder'
      ' holding N.tiff and pN.tiff (or images/ and masks/) as manual_dir.')
  LAYOUTS = (image_mask_pairs.Layout('', '', mask_prefix='p'),
             image_mask_pairs.IMAGES_AND_MASKS)
