"""config.init_from: a run that starts from a model file's weights (fine-tuning), resumes without it, and the errors
that guard it."""
import shutil

from flax import nnx
import jax
import numpy as np
import pytest

from helpers.damage import truncate_files  # pylint: disable=g-bad-import-order
from resunetpp_jax import errors
from resunetpp_jax.checkpoints import model_file as model_file_lib
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.config import defaults
from resunetpp_jax.config import validation as config_validation
from resunetpp_jax.inference import model_sources
from resunetpp_jax.training import fine_tuning
from resunetpp_jax.training import loop
from resunetpp_jax.training import sharding
from resunetpp_jax.training import state as train_state


@pytest.fixture
def model_file(trained_workdir, tmp_path):
  model, step = model_sources.restore_model(trained_workdir, checkpoint='latest')
  path = tmp_path / 'trained.safetensors'
  model_file_lib.save(model, workdir_config.load_config(trained_workdir), path, step=step)
  return path


def test_run_starts_from_the_files_weights_and_statistics_with_a_fresh_optimizer(model_file, tiny_config):
  tiny_config.init_from = str(model_file)
  tiny_config.image_size = (64, 64)  # Not a network key: a file trained at one size fine-tunes at another.
  config_validation.validate(tiny_config, num_devices=1)
  _, state = train_state.create_train_state(tiny_config, sharding.create_mesh(), total_steps=10)
  tensors = model_file_lib.safetensors_numpy.load_file(model_file)
  flat = {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(state[0])}
  assert flat.keys() == tensors.keys()
  for name, value in flat.items():  # float16 parameters widened back, float32 statistics as saved.
    np.testing.assert_array_equal(value, tensors[name].astype(np.float32), err_msg=name)
  assert any(not np.allclose(tensors[name], 0) for name in tensors if name.endswith('/mean'))  # Trained statistics.
  assert int(state[1]['step']) == 0

  tiny_config.init_from = ''
  _, scratch = train_state.create_train_state(tiny_config, sharding.create_mesh(), total_steps=10)
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(scratch[0]), jax.tree.leaves(state[0])))


@pytest.mark.parametrize('init_from, overrides, message', [
    ('{file}', {'filters': (8, 16, 64)},
     r"config.init_from='.*trained.safetensors': .*trained.safetensors holds another network \(filters=\(8, 16, 32\)\) "
     r'than the config builds \(filters=\(8, 16, 64\)\)\. Set those keys'),
    ('{file}', {'model': 'unet', 'deep_supervision': False},
     r"holds another network \(model='resunetpp', deep_supervision=True\) than the config builds \(model='unet', "
     r'deep_supervision=False\)'),
    ('{missing}', {}, r"config.init_from='.*missing.safetensors': .*missing.safetensors is not a file\. Give a model "
                      r"file written by resunetpp_jax.pretrained, 'shipped' for the package's model"),
    ('{not_a_model}', {}, r'not_a_model.safetensors is not a resunetpp_jax model file'),
    ('shipped', {}, r"config.init_from='shipped': .*weights/polyp.safetensors holds another network \(.*"
                    r"filters=\(32, 64, 128, 256, 512\)\) than the config builds \(.*filters=\(8, 16, 32\)\)"),
])
def test_a_file_of_another_network_or_no_file_is_one_config_error(model_file, tiny_config, tmp_path, init_from,
                                                                   overrides, message):
  (tmp_path / 'not_a_model.safetensors').write_bytes(b'\x08\x00\x00\x00\x00\x00\x00\x00{"a": 1}')
  tiny_config.init_from = init_from.format(file=model_file, missing=tmp_path / 'missing.safetensors',
                                           not_a_model=tmp_path / 'not_a_model.safetensors')
  tiny_config.update(overrides)
  with pytest.raises(errors.ConfigError, match=message):
    loop.train_and_evaluate(tiny_config, str(tmp_path / 'run'))
  assert not list((tmp_path / 'run' / 'checkpoints').iterdir())


def test_the_shipped_model_is_a_valid_start_for_its_own_network(tiny_config):
  shipped = defaults.from_json(model_file_lib.read_metadata(model_file_lib.SHIPPED_WEIGHTS)['config'])
  tiny_config.update({key: shipped[key] for key in ('model', 'filters', 'num_classes', 'deep_supervision')})
  tiny_config.image_size = (64, 64)
  tiny_config.init_from = 'shipped'
  fine_tuning.check(tiny_config)


def _model_leaves(workdir) -> list[np.ndarray]:
  model, step = model_sources.restore_model(str(workdir), checkpoint='latest')
  return step, [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model))]


@pytest.mark.slow
def test_a_run_resumes_without_its_initial_file_and_restarts_from_it_when_no_checkpoint_restores(
    model_file, tiny_config, tmp_path):
  tiny_config.init_from = str(model_file)
  tiny_config.eval_every_steps = tiny_config.checkpoint_every_steps = 4
  tiny_config.num_train_steps = 8
  loop.train_and_evaluate(tiny_config, str(tmp_path))
  kept = tmp_path / 'kept.safetensors'
  shutil.move(model_file, kept)  # Resuming needs the checkpoint, not the file.
  tiny_config.num_train_steps = 12
  loop.train_and_evaluate(tiny_config, str(tmp_path))
  step, resumed = _model_leaves(tmp_path)
  assert step == 12

  shutil.move(kept, model_file)
  for checkpoint in (tmp_path / 'checkpoints').iterdir():  # Listed but unrestorable: all set aside, a fresh start ...
    if checkpoint.name.isdigit():
      truncate_files(checkpoint / 'model')
  loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert len(list((tmp_path / 'checkpoints_unrestorable').iterdir())) == 3
  step, straight = _model_leaves(tmp_path)
  assert step == 12
  for a, b in zip(resumed, straight, strict=True):  # ... from the file again (not the seed), equal to the resumed run.
    np.testing.assert_array_equal(a, b)
