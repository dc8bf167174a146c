"""The grain pipeline on synthetic_polyps: shapes, determinism, sharding."""
import collections
import hashlib
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from resunetpp_jax.config import defaults
from resunetpp_jax.data import pipeline
from resunetpp_jax.data import specs
from resunetpp_jax.data.plan import DataPlan
from resunetpp_jax.data.synthetic_polyps import render
from resunetpp_jax.data.synthetic_polyps import synthetic_polyps_dataset_builder as synthetic

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _digest(image):
  return hashlib.sha1(image.tobytes()).hexdigest()


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('tfds'))
  config = defaults.get_default_config()
  config.data_dir = path
  pipeline.prepare_if_needed(DataPlan.from_config(config))
  return path


# Two small datasets in the PraNet layout, read as one training stream.
MIXED = {'kvasir_seg': 20, 'cvc_clinicdb': 12}
MIXED_TRAIN = 'kvasir_seg:all+cvc_clinicdb:all'
MIXED_FRACTION = 0.25  # Holds out 5 + 3: 15 + 9 = 24 to train, 6 batches of 4.


@pytest.fixture(scope='module')
def mixed(tmp_path_factory, data_dir):
  """(data_dir, manual_dirs, {image digest: dataset}) of the MIXED datasets."""
  root = tmp_path_factory.mktemp('downloads')
  folders, dataset_of = {}, {}
  for offset, (name, count) in enumerate(MIXED.items()):
    rng = np.random.default_rng(offset)
    for folder in ('images', 'masks'):
      (root / name / folder).mkdir(parents=True)
    for index in range(count):
      image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
      mask = np.zeros((32, 48), np.uint8)
      mask[4:4 + index % 20, 8:30] = 255
      Image.fromarray(image).save(root / name / 'images' / f'{index}.png')
      Image.fromarray(mask).save(root / name / 'masks' / f'{index}.png')
      dataset_of[_digest(image)] = name
    folders[name] = str(root / name)
  manual_dirs = specs.join_manual_dirs(folders)
  pipeline.prepare_if_needed(DataPlan.from_config(_config(data_dir, train_data=MIXED_TRAIN,
                                     manual_dirs=manual_dirs)))
  return data_dir, manual_dirs, dataset_of


def _mixed_config(mixed, **overrides):
  data_dir, manual_dirs, _ = mixed
  return _config(data_dir, **{
      'train_data': MIXED_TRAIN, 'manual_dirs': manual_dirs,
      'validation_data': '', 'validation_fraction': MIXED_FRACTION,
      **overrides})


def _config(data_dir, **overrides):
  config = defaults.get_default_config()
  config.update(dict(data_dir=data_dir, image_size=(32, 48), batch_size=4,
                     num_workers=0, augment='original'))
  config.update(overrides)
  return config


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _assert_same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])




def _synthetic(config, split):
  return pipeline.examples(DataPlan.from_config(config), f'synthetic_polyps:{split}')


def test_synthetic_examples_are_the_rendered_ones(data_dir):
  config = _config(data_dir)
  assert [len(_synthetic(config, split)) for split in
          ('train', 'valid', 'test', 'all')] == [512, 64, 64, 640]
  example = next(ex for ex in pipeline.iterate_originals(
      _synthetic(config, 'valid')) if ex['name'] == 'valid_0005')
  image, mask = render.render(
      np.random.default_rng(
          [synthetic.DATA_SEED, synthetic.SPLIT_IDS['valid'], 5]), 128, 160)
  np.testing.assert_array_equal(example['image'], image)
  np.testing.assert_array_equal(example['mask'], mask)
  assert 0.01 < mask.mean() < 0.5


def test_train_batches_have_the_contract_shapes(data_dir):
  config = _config(data_dir)
  for batch in _take(pipeline.make_train_iterator(DataPlan.from_config(config)), 3):
    assert set(batch) == {'image', 'mask'}
    assert batch['image'].shape == (4, 32, 48, 3)
    assert batch['image'].dtype == np.uint8
    assert batch['mask'].shape == (4, 32, 48, 1)
    assert batch['mask'].dtype == np.uint8
    assert set(np.unique(batch['mask'])) == {0, 1}


def test_training_stream_is_a_function_of_the_config(data_dir):
  config = _config(data_dir)
  first = _take(pipeline.make_train_iterator(DataPlan.from_config(config)), 3)
  _assert_same(first, _take(pipeline.make_train_iterator(DataPlan.from_config(config)), 3))
  config.seed = 1
  other = _take(pipeline.make_train_iterator(DataPlan.from_config(config)), 1)[0]
  assert not np.array_equal(other['image'], first[0]['image'])


def test_hosts_read_disjoint_interleaved_parts_of_the_global_batch(mixed):
  config = _mixed_config(mixed)
  whole = _take(pipeline.make_train_iterator(DataPlan.from_config(config)), 8)  # Into epoch 2.
  hosts = [_take(pipeline.make_train_iterator(
      DataPlan.from_config(config), process_index=p, process_count=2), 8) for p in (0, 1)]
  for step, batch in enumerate(whole):
    for p in (0, 1):
      assert hosts[p][step]['image'].shape[0] == 2
      for key in batch:
        np.testing.assert_array_equal(hosts[p][step][key], batch[key][p::2])


def test_state_restores_the_position(mixed):
  config = _mixed_config(mixed)
  iterator = pipeline.make_train_iterator(DataPlan.from_config(config))
  _take(iterator, 5)
  state = iterator.get_state()
  expected = _take(iterator, 2)
  resumed = pipeline.make_train_iterator(DataPlan.from_config(config))
  resumed.set_state(state)
  _assert_same(expected, _take(resumed, 2))


def test_an_epoch_visits_each_example_once(data_dir):
  config = _config(data_dir, image_size=(128, 160), augment='none',
                   batch_size=24)
  steps = pipeline.train_steps_per_epoch(DataPlan.from_config(config))
  assert steps == 512 // 24
  iterator = pipeline.make_train_iterator(DataPlan.from_config(config))
  epochs = [[_digest(image) for batch in _take(iterator, steps)
             for image in batch['image']] for _ in range(2)]
  originals = {_digest(ex['image'])
               for ex in pipeline.iterate_originals(_synthetic(config, 'train'))}
  for epoch in epochs:
    assert len(set(epoch)) == steps * 24  # Remainder of 512 % 24 dropped.
    assert set(epoch) <= originals
  assert epochs[0] != epochs[1]  # Reshuffled.


def test_epoch_multiplier_and_batch_size_checks(data_dir):
  config = _config(data_dir, epoch_multiplier=26, batch_size=8)
  assert pipeline.train_steps_per_epoch(DataPlan.from_config(config)) == 512 * 26 // 8
  with pytest.raises(ValueError, match='exceeds'):
    pipeline.train_steps_per_epoch(DataPlan.from_config(_config(data_dir, batch_size=1024)))
  with pytest.raises(ValueError, match='divisible'):
    pipeline.make_train_iterator(DataPlan.from_config(_config(data_dir, batch_size=6)),
                                 process_count=4)
  with pytest.raises(ValueError, match="'pranet_test' does not exist"):
    _synthetic(config, 'pranet_test')


def test_eval_reads_every_example_once_padded_to_full_batches(data_dir):
  config = _config(data_dir, batch_size=24)
  valid = _synthetic(config, 'valid')
  originals = list(pipeline.iterate_originals(valid))
  assert len(originals) == 64 and len({ex['name'] for ex in originals}) == 64
  assert all(ex['image'].shape == (128, 160, 3) and ex['mask'].dtype == bool
             for ex in originals)
  assert pipeline.num_eval_batches(DataPlan.from_config(config), valid) == 3
  per_host = [list(pipeline.make_eval_iterator(
      DataPlan.from_config(config), valid, process_index=p, process_count=2)) for p in (0, 1)]
  assert [len(batches) for batches in per_host] == [3, 3]
  seen = []
  for batches in per_host:
    for batch in batches:
      assert batch['image'].shape == (12, 32, 48, 3)
      assert batch['mask'].shape == (12, 32, 48, 1)
      assert batch['weight'].dtype == np.float32
      real = batch['weight'] == 1
      assert np.all(batch['weight'][~real] == 0)
      assert not batch['image'][~real].any()
      seen += [_digest(image) for image in batch['image'][real]]
  single = list(pipeline.make_eval_iterator(DataPlan.from_config(config), valid))
  np.testing.assert_array_equal(single[-1]['weight'], [1] * 16 + [0] * 8)
  expected = [_digest(batch['image'][i]) for batch in single
              for i in np.flatnonzero(batch['weight'])]
  assert sorted(seen) == sorted(expected) and len(set(expected)) == 64


@pytest.mark.slow
def test_worker_processes_give_the_same_stream(mixed):
  config = _mixed_config(mixed)
  in_process = _take(pipeline.make_train_iterator(DataPlan.from_config(config)), 8)
  config.num_workers = 2
  iterator = pipeline.make_train_iterator(DataPlan.from_config(config))
  _assert_same(in_process, _take(iterator, 8))
  iterator.close()


def test_mixed_stream_trains_on_each_example_but_the_carve_out_once_per_epoch(
    mixed):
  config = _mixed_config(mixed, augment='none')
  dataset_of = mixed[2]
  assert pipeline.train_steps_per_epoch(DataPlan.from_config(config)) == 6
  validation = [_digest(ex['image']) for ex in
                pipeline.iterate_originals(pipeline.validation_examples(DataPlan.from_config(config)))]
  assert collections.Counter(map(dataset_of.get, validation)) == {
      'kvasir_seg': 5, 'cvc_clinicdb': 3}
  iterator = pipeline.make_train_iterator(DataPlan.from_config(config))
  epochs = [[_digest(image) for batch in _take(iterator, 6)
             for image in batch['image']] for _ in range(2)]
  for epoch in epochs:
    assert collections.Counter(map(dataset_of.get, epoch)) == {
        'kvasir_seg': 15, 'cvc_clinicdb': 9}
    assert len(set(epoch)) == 24  # Each training example once.
    assert set(epoch) | set(validation) == set(dataset_of)
    assert not set(epoch) & set(validation)
  assert epochs[0] != epochs[1]  # Reshuffled.


def _carve_out(config):
  return [(str(spec), indices.tolist())
          for spec, _, indices in pipeline.validation_examples(DataPlan.from_config(config)).parts]


def test_carve_out_depends_on_the_seed_and_its_own_split_alone(mixed):
  config = _mixed_config(mixed)
  carve_out = _carve_out(config)
  # The same in every run and on every host (crc32 of the item, not hash()).
  assert carve_out == [('kvasir_seg:all', [1, 10, 12, 15, 17]),
                       ('cvc_clinicdb:all', [3, 7, 11])]
  alone = _carve_out(_mixed_config(mixed, train_data='kvasir_seg:all'))
  assert alone == carve_out[:1]  # Unchanged by the other datasets.
  assert _carve_out(_mixed_config(mixed, seed=1)) != carve_out
  training = pipeline.training_examples(DataPlan.from_config(config))
  assert [indices.tolist() for _, _, indices in training.parts] == [
      [i for i in range(20) if i not in carve_out[0][1]],
      [i for i in range(12) if i not in carve_out[1][1]]]


def test_validation_is_the_carve_out_other_data_or_none(mixed):
  config = _mixed_config(mixed, validation_fraction=0.0,
                         validation_data='cvc_clinicdb:all')
  assert len(pipeline.training_examples(DataPlan.from_config(config))) == 32
  assert pipeline.validation_examples(DataPlan.from_config(config)).describe() == (
      'cvc_clinicdb:all (12)')
  config.validation_data = ''
  assert pipeline.validation_examples(DataPlan.from_config(config)) is None
  config.validation_fraction = 0.01
  with pytest.raises(ValueError, match='holds out no example'):
    pipeline.validation_examples(DataPlan.from_config(config))


def test_reading_never_imports_tensorflow(data_dir):
  code = (
      'import sys\n'
      'from resunetpp_jax.config import defaults\n'
      'from resunetpp_jax.data import pipeline\n'
      'from resunetpp_jax.data.plan import DataPlan\n'
      'c = defaults.get_default_config()\n'
      f'c.data_dir = {data_dir!r}\n'
      'c.image_size, c.batch_size, c.num_workers = (32, 32), 4, 0\n'
      'next(pipeline.make_train_iterator(DataPlan.from_config(c)))\n'
      "list(pipeline.make_eval_iterator(DataPlan.from_config(c), pipeline.validation_examples(DataPlan.from_config(c))))\n"
      "next(pipeline.iterate_originals(pipeline.examples(DataPlan.from_config(c), 'synthetic_polyps:test')))\n"
      "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n")
  subprocess.run([sys.executable, '-c', code], check=True, cwd=REPO_DIR,
                 env={**os.environ, 'PYTHONPATH': REPO_DIR})
