"""Real Kvasir-SEG and CVC-ClinicDB files train through configs/kvasir.py (a few steps, a small network),
and the checkpoint evaluates on their test images at original size."""
import json
import pathlib

import pytest

from configs import kvasir
from resunetpp_jax.evaluation import runner
from resunetpp_jax.training import loop


def _subset(source: pathlib.Path, target: pathlib.Path, folders: tuple[str, str], count: int) -> pathlib.Path:
  """The first `count` pairs of a dataset in its own layout, linked (not copied) into `target`."""
  images, masks = (target / f for f in folders)
  images.mkdir(parents=True)
  masks.mkdir(parents=True)
  for image in sorted((source / folders[0]).iterdir())[:count]:
    (images / image.name).symlink_to(image)
    (masks / image.name).symlink_to(source / folders[1] / image.name)
  return target


@pytest.mark.parametrize('dataset, folder, layout', [
    ('kvasir_seg', 'Kvasir-SEG', ('images', 'masks')),  # The official JPEG download.
    ('cvc_clinicdb', 'CVC-ClinicDB-tif', ('Original', 'Ground Truth')),  # The official TIFFs.
])
@pytest.mark.slow
def test_real_dataset_trains_with_the_kvasir_recipe(dataset, folder, layout, shared_dir, tmp_path,
                                                    session_cache_dir):
  config = kvasir.get_config()
  config.train_data, config.validation_data, config.test_data = (f'{dataset}:{split}'
                                                                  for split in ('train', 'valid', 'test'))
  config.manual_dirs = f'{dataset}={_subset(shared_dir / "data" / folder, tmp_path / folder, layout, 20)}'
  config.data_dir = str(tmp_path / 'tensorflow_datasets')
  config.compilation_cache_dir = str(session_cache_dir)
  config.filters = (8, 16, 32)
  config.image_size = (64, 80)
  config.batch_size = 4
  config.num_train_steps = 3
  config.log_every_steps = 1
  config.num_workers = 0
  metrics = loop.train_and_evaluate(config, str(tmp_path / 'workdir'))
  assert metrics['step'] == 3
  assert metrics['train/loss'] > 0 and 0 <= metrics['val/dice'] <= 1
  assert (tmp_path / 'workdir' / 'checkpoints' / '3').is_dir()

  (result,) = runner.run(str(tmp_path / 'workdir'), [])  # The config's test_data.
  written = json.loads((tmp_path / 'workdir' / 'eval' / f'{dataset}-test.json').read_text())
  assert written['num_images'] == result['num_images'] == 2  # 10% of 20.
  assert written['checkpoint_step'] == 3
  original_sizes = {(r['height'], r['width']) for r in written['images']}
  assert tuple(config.image_size) not in original_sizes  # Scored at the files' sizes, not the model's.
  if dataset == 'cvc_clinicdb':
    assert original_sizes == {(288, 384)}
  for key in ('dice', 'iou', 'precision', 'recall', 'mdice', 'miou'):
    assert 0.0 <= written[key] <= 1.0
