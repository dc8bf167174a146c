"""The real datasets in <repo>/../shared/data (skipped where absent).

Preparing all 1000 Kvasir-SEG images (about a minute) is left to
`python -m resunetpp_jax.data.prepare`; here its splits are computed from
its file names with the builder's own functions, and a subset is prepared.
"""
import os

import numpy as np
import pytest

from resunetpp_jax.config import defaults
from resunetpp_jax.data import image_io
from resunetpp_jax.data import image_mask_pairs
from resunetpp_jax.data import pipeline
from resunetpp_jax.data.kvasir_seg import KvasirSeg
from resunetpp_jax.data.plan import DataPlan


@pytest.fixture(scope='module')
def real_data(shared_dir):
  return shared_dir / 'data'


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def _config(data_dir, dataset, manual_dir, **overrides):
  config = defaults.get_default_config()
  config.update(dict(train_data=f'{dataset}:train', validation_data='',
                     manual_dirs=f'{dataset}={manual_dir}', data_dir=data_dir,
                     image_size=(64, 80), batch_size=4, num_workers=0,
                     augment='original'))
  config.update(overrides)
  return config


def _examples(config, split):
  return pipeline.examples(DataPlan.from_config(config), f'{config.train_data.split(":")[0]}:{split}')


def _assert_augmented_batch(config):
  batch = next(pipeline.make_train_iterator(DataPlan.from_config(config)))
  assert batch['image'].shape == (4, 64, 80, 3)
  assert batch['image'].dtype == np.uint8
  assert batch['mask'].shape == (4, 64, 80, 1)
  assert set(np.unique(batch['mask'])) <= {0, 1} and batch['mask'].any()


@pytest.mark.slow
def test_clinicdb_png_prepares_all_splits(real_data, data_dir):
  config = _config(data_dir, 'cvc_clinicdb', real_data / 'CVC-ClinicDB')
  counts = {split: len(_examples(config, split)) for split in
            ('train', 'valid', 'test', 'pranet_train', 'pranet_test', 'all')}
  assert counts == {'train': 490, 'valid': 61, 'test': 61,
                    'pranet_train': 550, 'pranet_test': 62, 'all': 612}
  summary = pipeline.builder(DataPlan.from_config(config), 'cvc_clinicdb').info.metadata[
      'prepare_summary']
  assert summary['mask_conversions'] == {'off values': 138}
  assert summary['duplicate_groups'] == [] and summary['empty_masks'] == []
  pranet_test = {ex['name'] for ex in
                 pipeline.iterate_originals(_examples(config, 'pranet_test'))}
  assert pranet_test == set(
      (real_data / 'splits' / 'pranet_clinicdb_test.txt').read_text().split())
  _assert_augmented_batch(config)


def test_official_clinicdb_tiffs_keep_their_colour(real_data, tmp_path):
  config = _config(str(tmp_path), 'cvc_clinicdb',
                   real_data / 'CVC-ClinicDB-tif')
  originals = {ex['name']: ex for ex in pipeline.iterate_originals(
      _examples(config, 'all'))}
  assert len(originals) == 24
  for name in ('1', '24'):
    image = originals[name]['image']
    assert image.shape == (288, 384, 3)
    assert np.abs(image[:, :, 0].astype(int) - image[:, :, 1]).mean() > 10
    np.testing.assert_array_equal(image, image_io.read_image(
        real_data / 'CVC-ClinicDB' / 'images' / f'{name}.png'))
    np.testing.assert_array_equal(originals[name]['mask'], image_io.read_mask(
        real_data / 'CVC-ClinicDB' / 'masks' / f'{name}.png'))
  _assert_augmented_batch(config)


def test_kvasir_splits_from_its_file_names(real_data):
  root = str(real_data / 'Kvasir-SEG')
  layout = image_mask_pairs.find_layout(root, KvasirSeg.LAYOUTS, 'Kvasir-SEG', '')
  pairs, without_mask, without_image, ignored = image_mask_pairs.list_pairs(
      root, layout)
  assert (len(pairs), without_mask, without_image, ignored) == (1000, [], [],
                                                                [])
  names = [pair.name for pair in pairs]
  splits = image_mask_pairs.seeded_split([[name] for name in names])
  assert {k: len(v) for k, v in splits.items()} == {
      'train': 800, 'valid': 100, 'test': 100}
  pranet, status = KvasirSeg.pranet_splits(set(names))
  assert status == 'written'
  assert {k: len(v) for k, v in pranet.items()} == {
      'pranet_train': 900, 'pranet_test': 100}


def test_kvasir_jpegs_prepare_and_augment(real_data, tmp_path):
  source = real_data / 'Kvasir-SEG'
  subset = tmp_path / 'Kvasir-SEG'
  names = sorted(os.listdir(source / 'images'))[:12]
  for folder in ('images', 'masks'):
    (subset / folder).mkdir(parents=True)
    for name in names:
      os.symlink(source / folder / name, subset / folder / name)
  config = _config(str(tmp_path / 'tfds'), 'kvasir_seg', subset)
  summary = pipeline.builder(DataPlan.from_config(config), 'kvasir_seg').info.metadata[
      'prepare_summary']
  assert summary['pairs'] == 12
  assert summary['mask_conversions'] == {'off values': 12}  # JPEG ringing.
  assert summary['pranet_splits'].startswith('omitted')
  original = next(pipeline.iterate_originals(_examples(config, 'train')))
  name = original['name'] + '.jpg'
  np.testing.assert_array_equal(
      original['image'], image_io.read_image(source / 'images' / name))
  np.testing.assert_array_equal(
      original['mask'], image_io.read_mask(source / 'masks' / name))
  _assert_augmented_batch(config)
