"""Any folder of images with masks of the same names (the user's own data)."""
from resunetpp_jax.data.folder_pairs.folder_pairs_dataset_builder import FolderPairs
