"""Read-only restores (predict, evaluate) of damaged or mismatched checkpoints, and the free-space check before a
save: one message or one warning line, nothing moved or lost."""
import json
import pathlib
import shutil

from flax import nnx
import jax
import numpy as np
import pytest

from helpers.damage import damage_checkpoint  # pylint: disable=g-bad-import-order
from helpers.damage import truncate_files  # pylint: disable=g-bad-import-order
from resunetpp_jax.checkpoints import checkpointer as checkpointer_lib
from resunetpp_jax.checkpoints import errors as checkpoint_errors
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.data import pipeline
from resunetpp_jax.data.plan import DataPlan
from resunetpp_jax.inference import model_sources
from resunetpp_jax.training import sharding
from resunetpp_jax.training import state as train_state


def _arrays(model) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model))}


@pytest.fixture
def workdir(trained_workdir, tmp_path) -> pathlib.Path:
  """A copy of the trained workdir whose checkpoint 4 has an older twin, checkpoint 2."""
  copy = tmp_path / 'workdir'
  shutil.copytree(trained_workdir, copy)
  shutil.copytree(copy / 'checkpoints' / '4', copy / 'checkpoints' / '2')
  (copy / 'checkpoints' / '2' / 'metrics' / 'metrics').write_text(json.dumps({checkpointer_lib.BEST_METRIC: 0.0}))
  return copy


@pytest.mark.parametrize('checkpoint, damage', [
    ('latest', damage_checkpoint),
    ('best', lambda step_dir: truncate_files(step_dir / 'model')),  # Its metrics still say it is the best.
])
@pytest.mark.slow
def test_unreadable_newest_is_skipped_with_one_warning_and_left_in_place(workdir, trained_workdir, checkpoint,
                                                                         damage, caplog):
  expected, _ = model_sources.restore_model(trained_workdir, checkpoint='latest')
  damage(workdir / 'checkpoints' / '4')
  model, step = model_sources.restore_model(str(workdir), checkpoint=checkpoint)
  assert step == 2
  for name, array in _arrays(expected).items():
    np.testing.assert_array_equal(_arrays(model)[name], array, err_msg=name)
  (warning,) = [r.getMessage() for r in caplog.records if 'cannot be read' in r.getMessage()]
  assert warning.startswith(f'Checkpoint 4 (') and warning.endswith(f'in {workdir}/checkpoints cannot be read; '
                                                                    'using step 2, the newest that can.')
  assert len(warning) < 400  # One line: orbax's error in a few words.
  assert (workdir / 'checkpoints' / '4').is_dir() and not (workdir / 'checkpoints_unrestorable').exists()


def test_unreadable_checkpoint_asked_for_by_step_is_one_error(workdir):
  damage_checkpoint(workdir / 'checkpoints' / '4')
  with pytest.raises(checkpoint_errors.UnreadableCheckpointError,
                     match=r'^Checkpoint 4 \(\w+: .*\) in .* cannot be read\. Choose another with --checkpoint '
                           r'\(steps 2, 4\), or best or latest, which skip unreadable ones\.$'):
    model_sources.restore_model(str(workdir), checkpoint=4)
  damage_checkpoint(workdir / 'checkpoints' / '2')
  with pytest.raises(checkpoint_errors.UnreadableCheckpointError,
                     match=r'^No checkpoint in .*checkpoints can be read: 4 \(.*\); 2 \(.*\)\.$'):
    model_sources.restore_model(str(workdir), checkpoint='best')


def test_config_json_that_builds_another_network_names_the_file_and_the_keys(workdir):
  config_file = workdir / 'config.json'
  config = json.loads(config_file.read_text())
  config['filters'] = [8, 16, 64]
  config_file.write_text(json.dumps(config))
  with pytest.raises(checkpoint_errors.ConfigMismatchError) as raised:
    model_sources.restore_model(str(workdir))
  assert str(raised.value) == (
      f'Checkpoint 4 in {workdir}/checkpoints holds another network than {config_file} describes (filters=[8, 16, '
      '64], num_classes=1, deep_supervision=True): its enc.2.ca.avg_mlp.expand.kernel has shape (2, 32), the '
      f'config builds (4, 64) (19 of 172 parameters differ). Set them in {config_file} back to the values the '
      'run was trained with.')


def _resumed(workdir: pathlib.Path):
  """What a resumed run holds before its next save: checkpointer, step, train state, loop state, data iterator."""
  config = workdir_config.load_config(str(workdir))
  _, state = train_state.create_train_state(config, sharding.create_mesh(), config.num_train_steps)
  iterator = pipeline.make_train_iterator(DataPlan.from_config(config), process_index=0, process_count=1)
  checkpointer = checkpointer_lib.Checkpointer(str(workdir), config)
  step, state, loop = checkpointer.restore_latest(train_state.abstract_like(state), iterator)
  return checkpointer, step, state, loop, iterator


def test_save_is_refused_before_writing_when_the_disk_cannot_hold_the_checkpoint(workdir, monkeypatch):
  checkpointer, step, state, loop, iterator = _resumed(workdir)
  needed = sum(f.stat().st_size for f in (workdir / 'checkpoints' / '4').rglob('*') if f.is_file())
  disk_usage = shutil.disk_usage
  monkeypatch.setattr(shutil, 'disk_usage', lambda path: disk_usage(path)._replace(free=needed - 1))
  with pytest.raises(checkpoint_errors.DiskFullError,
                     match=rf'^No space left on {workdir}: {needed / 2**20:.1f} MB needed for the next checkpoint, '
                           rf'{(needed - 1) / 2**20:.1f} MB free\. Training stopped; the last good checkpoint, step '
                           rf'4 in {workdir}/checkpoints, is kept\. Free some space'):
    checkpointer.save(step + 1, state, loop, iterator)
  checkpointer.close()
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == ['2', '4']  # Nothing written.


def test_checkpoint_folder_that_vanished_during_the_run_is_one_error(workdir, tmp_path):
  """A workdir moved or deleted while training ran (seen once, at a final save): the next save names the folder."""
  checkpointer, step, state, loop, iterator = _resumed(workdir)
  shutil.move(workdir / 'checkpoints', tmp_path / 'moved')
  with pytest.raises(checkpoint_errors.CheckpointFolderGoneError,
                     match=rf'^The checkpoint folder {workdir}/checkpoints is gone: it was moved or deleted while '
                           r'training ran\. Training stopped; .* run the same command to resume'):
    checkpointer.save(step + 1, state, loop, iterator)
  checkpointer.close()
  assert not (workdir / 'checkpoints').exists()
  assert sorted(p.name for p in (tmp_path / 'moved').iterdir()) == ['2', '4']
