"""The training loop end to end: learning, exact resume after SIGKILL, corrupt checkpoints, NaN."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from resunetpp_jax import checkpointing
from resunetpp_jax import train

REPO = pathlib.Path(__file__).resolve().parent.parent


def _main_command(config, workdir) -> list[str]:
  overrides = {
      'data_dir': config.data_dir, 'compilation_cache_dir': config.compilation_cache_dir,
      'filters': ','.join(map(str, config.filters)), 'image_size': ','.join(map(str, config.image_size)),
      'batch_size': config.batch_size, 'num_train_steps': config.num_train_steps,
      'log_every_steps': config.log_every_steps, 'eval_every_steps': config.eval_every_steps,
      'checkpoint_every_steps': config.checkpoint_every_steps,
  }
  return [sys.executable, '-m', 'resunetpp_jax.main', '--config=configs/synthetic.py', f'--workdir={workdir}',
          *(f'--config.{k}=({v},)' if k in ('filters', 'image_size') else f'--config.{k}={v}'
            for k, v in overrides.items())]


def _run_main(config, workdir):
  result = subprocess.run(_main_command(config, workdir), cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 0, result.stderr[-5000:]
  return result


def _model_arrays(workdir) -> dict[str, np.ndarray]:
  model, step = checkpointing.restore_model(str(workdir), checkpoint='latest')
  from flax import nnx  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  leaves = jax.tree_util.tree_leaves_with_path(nnx.state(model))
  return step, {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def _scalars(workdir, tag) -> list[float]:
  accumulator = event_accumulator.EventAccumulator(str(pathlib.Path(workdir) / 'tensorboard'))
  accumulator.Reload()
  return [event.value for event in accumulator.Scalars(tag)]


def test_training_learns_and_logs(tiny_config, tmp_path):
  tiny_config.num_train_steps = 24
  metrics = train.train_and_evaluate(tiny_config, str(tmp_path))
  assert metrics['step'] == 24
  losses = _scalars(tmp_path, 'train/loss')
  assert len(losses) == 12 and all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < np.mean(losses[:3])  # It learns, not just runs.
  assert len(_scalars(tmp_path, 'val/dice')) == 4
  assert 0.0 <= metrics['val/dice'] <= 1.0
  assert checkpointing.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps()[-1] == 24


def test_killed_and_resumed_run_equals_uninterrupted_run(tiny_config, tmp_path):
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  _run_main(tiny_config, straight)

  process = subprocess.Popen(_main_command(tiny_config, resumed), cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  deadline = time.monotonic() + 300
  # Kill right after the step-6 checkpoint (an evaluation save) is complete: mid-run, mid-epoch.
  while not (resumed / 'checkpoints' / '6').is_dir() and time.monotonic() < deadline:
    assert process.poll() is None, 'the run ended before it could be killed'
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = max(int(p.name) for p in (resumed / 'checkpoints').iterdir() if p.name.isdigit())
  assert killed_at < tiny_config.num_train_steps
  _run_main(tiny_config, resumed)

  step_a, a = _model_arrays(straight)
  step_b, b = _model_arrays(resumed)
  assert step_a == step_b == tiny_config.num_train_steps
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(b[name], a[name], err_msg=name)  # Bitwise.


def test_unrestorable_latest_checkpoint_is_set_aside(tiny_config, tmp_path):
  _run_main(tiny_config, tmp_path)
  _, expected = _model_arrays(tmp_path)
  latest = tmp_path / 'checkpoints' / str(tiny_config.num_train_steps)
  # A kill during a save on a file system without atomic renames leaves a step folder without its metadata.
  (latest / '_CHECKPOINT_METADATA').unlink()
  for item in latest.iterdir():
    if item.is_dir():
      for file in item.rglob('*'):
        if file.is_file():
          file.write_bytes(b'truncated')
  result = _run_main(tiny_config, tmp_path)
  assert 'cannot be restored' in result.stderr
  assert (tmp_path / 'checkpoints_unrestorable').is_dir()  # Moved aside, not deleted.
  _, retrained = _model_arrays(tmp_path)
  for name in expected:  # Redoing the last steps from the previous checkpoint gives the same model.
    np.testing.assert_array_equal(retrained[name], expected[name], err_msg=name)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
  tiny_config.optimizer = 'sgd'
  tiny_config.learning_rate = 1e30
  tiny_config.checkpoint_every_steps = 1
  tiny_config.log_every_steps = 1
  with pytest.raises(train.NonFiniteLossError, match='last good checkpoint'):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  steps = checkpointing.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps()
  nan_step = len(_scalars(tmp_path, 'train/loss')) + 1
  assert all(step < nan_step for step in steps)


def test_without_validation_the_schedule_runs_to_its_end_and_saves_its_last_step(tiny_config, tmp_path):
  tiny_config.validation_data, tiny_config.validation_fraction = '', 0.0
  tiny_config.num_train_steps, tiny_config.eval_every_steps, tiny_config.checkpoint_every_steps = 5, 3, 4
  metrics = train.train_and_evaluate(tiny_config, str(tmp_path))
  assert metrics['step'] == 5 and not any(key.startswith('val/') for key in metrics)
  accumulator = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard'))
  accumulator.Reload()
  assert not any(tag.startswith('val/') for tag in accumulator.Tags()['scalars'])
  assert [event.step for event in accumulator.Scalars('train/loss')][-1] == 5  # The last step is logged too.
  assert checkpointing.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps() == [4, 5]
