"""`cvc_300`: CVC-300, EndoScene's 60 test frames (Vázquez et al., 2017).

EndoScene (CVC-EndoSceneStill) joins CVC-ClinicDB and CVC-300; its test split
holds 60 frames of CVC-300, which the polyp benchmark (PraNet and the papers
after it) scores as one of its five test sets. Reads that benchmark's copy
(`TestDataset/CVC-300`: `images/*.png`, `masks/*.png`); a cross-dataset test
set, so `all` is the split to score.
"""
from resunetpp_jax.data import image_mask_pairs
from resunetpp_jax.data import polyp_folder_builder


class Cvc300(polyp_folder_builder.PolypFolderBuilder):
  """CVC-300 (EndoScene test set) polyp segmentation dataset."""

  name = 'cvc_300'  # TFDS would derive 'cvc300' from the class name.
  DATASET_NAME = 'CVC-300'
  HOMEPAGE = 'https://github.com/DengPingFan/PraNet'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Download the test data of the PraNet benchmark'
      ' (https://github.com/DengPingFan/PraNet, "TestDataset"), unpack it and'
      ' pass its CVC-300 folder (the one holding images/ and masks/) as'
      ' manual_dir.')
  LAYOUTS = (image_mask_pairs.IMAGES_AND_MASKS,)
