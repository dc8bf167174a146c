"""Finds a polyp dataset builder by name and prepares it on first use."""
import os

from absl import logging
import tensorflow_datasets as tfds

from resunetpp_jax import errors
from resunetpp_jax.data.cvc_300 import Cvc300
from resunetpp_jax.data.cvc_clinicdb import CvcClinicdb
from resunetpp_jax.data.cvc_colondb import CvcColondb
from resunetpp_jax.data.etis_larib import EtisLarib
from resunetpp_jax.data.folder_pairs import FolderPairs
from resunetpp_jax.data.kvasir_seg import KvasirSeg
from resunetpp_jax.data.synthetic_polyps import SyntheticPolyps

DATASETS = {
    'synthetic_polyps': SyntheticPolyps,
    'kvasir_seg': KvasirSeg,
    'cvc_clinicdb': CvcClinicdb,
    'cvc_colondb': CvcColondb,
    'etis_larib': EtisLarib,
    'cvc_300': Cvc300,
    'folder_pairs': FolderPairs,
}


def make_builder(name: str, data_dir: str = '', manual_dir: str = ''):
  """Returns the builder `name` reading/writing under `data_dir`.

  Args:
    name: a key of DATASETS.
    data_dir: TFDS data dir; '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
    manual_dir: folder with the downloaded dataset (real datasets only).
  """
  if name not in DATASETS:
    raise errors.ConfigError(
        f'Dataset {name!r} is not known; choose one of {sorted(DATASETS)}.')
  builder_class = DATASETS[name]
  kwargs = {}
  if hasattr(builder_class, 'builder_config_for'):
    kwargs['config'] = builder_class.builder_config_for(manual_dir)
  return builder_class(data_dir=os.path.expanduser(data_dir) or None,
                       file_format='array_record', **kwargs)


def prepare(name: str, data_dir: str = '', manual_dir: str = ''):
  """Prepares dataset `name` unless already done; returns its builder.

  Prepared data is reused as long as its folder exists (a warning says so when
  it came from another manual_dir): to prepare again from a different
  download, delete `builder.data_dir` or use another data_dir. Several hosts
  must not prepare into one shared data_dir at the same time: prepare on one
  first (e.g. with `python -m resunetpp_jax.data.prepare`).
  """
  builder = make_builder(name, data_dir, manual_dir)
  if builder.data_path.exists():
    summary = (builder.info.metadata or {}).get('prepare_summary')
    if summary and manual_dir and summary['manual_dir'] != os.path.abspath(
        os.path.expanduser(manual_dir)):
      logging.warning(
          'Reusing %s prepared from %s, not from manual_dir=%s; delete %s to'
          ' prepare it from the new folder.', name, summary['manual_dir'],
          manual_dir, builder.data_dir)
    return builder
  check_manual_dir = getattr(builder, 'check_manual_dir', None)
  if check_manual_dir is not None:
    check_manual_dir(manual_dir)
  download_config = tfds.download.DownloadConfig(
      manual_dir=os.path.expanduser(manual_dir) or None)
  builder.download_and_prepare(download_config=download_config)
  return builder
