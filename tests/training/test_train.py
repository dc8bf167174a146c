"""The training loop end to end: learning, exact resume after SIGKILL, corrupt checkpoints, NaN, SIGTERM, the
workdir lock, a full disk, a config that does not match the checkpoints."""
import logging
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboard.backend.event_processing import event_accumulator

from configs import synthetic
from helpers.damage import damage_checkpoint  # pylint: disable=g-bad-import-order
from helpers.damage import truncate_files  # pylint: disable=g-bad-import-order
from resunetpp_jax.checkpoints import checkpointer as checkpointer_lib
from resunetpp_jax.checkpoints import errors as checkpoint_errors
from resunetpp_jax.inference import model_sources
from resunetpp_jax.training import loop
from resunetpp_jax.training import periodic
from resunetpp_jax.training import workdir_lock

REPO = pathlib.Path(__file__).resolve().parents[2]


def _main_command(config, workdir, **extra_overrides) -> list[str]:
  """`main` on configs/synthetic.py, overriding every key in which `config` differs from it (then extra_overrides)."""
  base = synthetic.get_config()
  overrides = {key: value for key, value in config.items() if value != base[key]} | extra_overrides
  return [sys.executable, '-m', 'resunetpp_jax.main', '--config=configs/synthetic.py', f'--workdir={workdir}',
          *(f'--config.{key}=({",".join(map(str, value))},)' if isinstance(value, tuple) else f'--config.{key}={value}'
            for key, value in overrides.items())]


def _run_main(config, workdir):
  result = subprocess.run(_main_command(config, workdir), cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 0, result.stderr[-5000:]
  return result


def _model_arrays(workdir) -> dict[str, np.ndarray]:
  model, step = model_sources.restore_model(str(workdir), checkpoint='latest')
  from flax import nnx  # pylint: disable=import-outside-toplevel
  leaves = jax.tree_util.tree_leaves_with_path(nnx.state(model))
  return step, {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def _scalars(workdir, tag) -> list[float]:
  accumulator = event_accumulator.EventAccumulator(str(pathlib.Path(workdir) / 'tensorboard'))
  accumulator.Reload()
  return [event.value for event in accumulator.Scalars(tag)]


@pytest.mark.slow
def test_training_learns_and_logs(tiny_config, tmp_path):
  tiny_config.num_train_steps = 24
  metrics = loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert metrics['step'] == 24
  losses = _scalars(tmp_path, 'train/loss')
  assert len(losses) == 12 and all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < np.mean(losses[:3])  # It learns, not just runs.
  assert len(_scalars(tmp_path, 'val/dice')) == 4
  assert 0.0 <= metrics['val/dice'] <= 1.0
  assert checkpointer_lib.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps()[-1] == 24


@pytest.mark.parametrize('ema_decay', [0.0, 0.8])
@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted_run(tiny_config, tmp_path, ema_decay):
  tiny_config.ema_decay = ema_decay
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  loop.train_and_evaluate(tiny_config, str(straight))

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
  if ema_decay:  # What was restored, and compared, is the moving average, not the last weights.
    saved = straight / 'checkpoints' / str(step_a)
    average, last = (jax.tree.leaves(ocp.StandardCheckpointer().restore(saved / item)) for item in ('ema', 'model'))
    assert all(np.array_equal(x, y) for x, y in zip(a.values(), average, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.values(), last, strict=True))


@pytest.mark.parametrize('damaged', ['latest', 'every model item'])
@pytest.mark.slow
def test_unrestorable_checkpoints_are_set_aside(tiny_config, tmp_path, caplog, damaged):
  loop.train_and_evaluate(tiny_config, str(tmp_path))
  _, expected = _model_arrays(tmp_path)
  steps = checkpointer_lib.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps()
  if damaged == 'latest':
    damage_checkpoint(tmp_path / 'checkpoints' / str(steps[-1]))
  else:  # Each one's data item restores, then its model fails: the fresh start must not keep a data position.
    for step in steps:
      truncate_files(tmp_path / 'checkpoints' / str(step) / 'model')
  loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert any('cannot be restored' in record.getMessage() for record in caplog.records)
  set_aside = list((tmp_path / 'checkpoints_unrestorable').iterdir())  # Moved aside, not deleted.
  assert len(set_aside) == (1 if damaged == 'latest' else len(steps))
  _, retrained = _model_arrays(tmp_path)
  for name in expected:  # Redoing the steps from the previous checkpoint, or from scratch, gives the same model.
    np.testing.assert_array_equal(retrained[name], expected[name], err_msg=name)


@pytest.mark.parametrize('checkpoint_every_steps, message', [
    (1, r'the last good checkpoint, step \d+ in .*checkpoints, is kept'),
    (1000, 'no checkpoint has been saved in .*checkpoints yet'),
])
@pytest.mark.slow
def test_non_finite_loss_stops_and_says_which_checkpoint_is_kept(tiny_config, tmp_path, checkpoint_every_steps,
                                                                 message):
  tiny_config.optimizer = 'sgd'
  tiny_config.learning_rate = 1e30
  tiny_config.checkpoint_every_steps = checkpoint_every_steps
  tiny_config.log_every_steps = 1
  with pytest.raises(periodic.NonFiniteLossError, match=message):
    loop.train_and_evaluate(tiny_config, str(tmp_path))
  steps = checkpointer_lib.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps()
  nan_step = len(_scalars(tmp_path, 'train/loss')) + 1
  assert all(step < nan_step for step in steps)
  assert bool(steps) == (checkpoint_every_steps == 1)


@pytest.mark.parametrize('xla_message', [
    'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 38328165058 bytes.',  # A GPU's.
    'INTERNAL: Error dispatching computation: Out of memory allocating 38328165058 bytes.',  # The CPU's.
])
@pytest.mark.slow
def test_out_of_memory_names_the_settings_to_lower_and_keeps_the_checkpoints(tiny_config, tmp_path, monkeypatch,
                                                                              xla_message):
  tiny_config.checkpoint_every_steps = 1
  tiny_config.eval_every_steps = 1
  real_host_sums, calls = periodic.host_sums, []

  def out_of_memory_at_the_third_read(sums):  # Where XLA's asynchronous error surfaces: the first read of a result.
    calls.append(1)
    if len(calls) == 3:
      raise jax.errors.JaxRuntimeError(xla_message + '\nthe rest of XLA\'s report')
    return real_host_sums(sums)

  monkeypatch.setattr(periodic, 'host_sums', out_of_memory_at_the_third_read)
  with pytest.raises(loop.OutOfMemoryError) as raised:
    loop.train_and_evaluate(tiny_config, str(tmp_path))
  message = str(raised.value)
  assert xla_message in message and 'report' not in message  # XLA's first line only.
  assert f'batch_size={tiny_config.batch_size}' in message and '--config.batch_size' in message
  assert f'image_size={tuple(tiny_config.image_size)}' in message
  assert ('--config.dtype=bfloat16' in message) == (tiny_config.dtype == 'float32')
  saved = checkpointer_lib.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps()
  assert saved and max(saved) < 3  # Saved before the fault, and kept.
  monkeypatch.undo()
  tiny_config.num_train_steps = 4
  assert loop.train_and_evaluate(tiny_config, str(tmp_path))['step'] == 4  # The lock is released: it resumes.


@pytest.mark.slow
def test_other_xla_runtime_errors_are_not_called_out_of_memory(tiny_config, tmp_path, monkeypatch):
  def broken(sums):
    raise jax.errors.JaxRuntimeError('INTERNAL: an unrelated failure')
  monkeypatch.setattr(periodic, 'host_sums', broken)
  with pytest.raises(jax.errors.JaxRuntimeError, match='unrelated') as raised:
    loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert not isinstance(raised.value, loop.OutOfMemoryError)


@pytest.mark.slow
def test_sigterm_saves_the_step_it_arrives_in_and_the_run_resumes_from_it(tiny_config, tmp_path):
  # Checkpoints only at the end: the one the signal leads to is the only one before it.
  overrides = {'log_every_steps': 1, 'eval_every_steps': 1000, 'checkpoint_every_steps': 1000}
  process = subprocess.Popen(_main_command(tiny_config, tmp_path, **overrides), cwd=REPO, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  stderr = []
  for line in process.stderr:
    stderr.append(line)
    if f'step 2/{tiny_config.num_train_steps}' in line:
      process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=300) == 128 + signal.SIGTERM, ''.join(stderr)[-5000:]
  assert 'Traceback' not in ''.join(stderr)
  (saved,) = checkpointer_lib.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps()
  assert 2 < saved < tiny_config.num_train_steps  # After the signal (sent after step 2), before the end.
  assert f'Stopped by SIGTERM after step {saved}: checkpoint {saved} saved' in ''.join(stderr)

  tiny_config.update(overrides)
  assert loop.train_and_evaluate(tiny_config, str(tmp_path))['step'] == tiny_config.num_train_steps
  accumulator = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard'))
  accumulator.Reload()
  logged = sorted(event.step for event in accumulator.Scalars('train/loss'))
  assert logged == list(range(1, tiny_config.num_train_steps + 1))  # Resumed after `saved`: no step twice.


@pytest.mark.slow
def test_second_run_on_a_workdir_is_refused_and_a_crashed_holder_leaves_no_lock(tiny_config, tmp_path):
  with workdir_lock.hold(str(tmp_path)):
    result = subprocess.run(_main_command(tiny_config, tmp_path), cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 1
  assert f'Error: {tmp_path} is in use by another training run (process {os.getpid()} on ' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'checkpoints').exists() and not (tmp_path / 'config.json').exists()

  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from resunetpp_jax.training import workdir_lock\n'
       'with workdir_lock.hold(sys.argv[1]):\n  print("locked", flush=True); time.sleep(300)', str(tmp_path)],
      cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  try:
    assert holder.stdout.readline() == 'locked\n'
    with pytest.raises(workdir_lock.WorkdirInUseError, match=f'process {holder.pid} on '):
      loop.train_and_evaluate(tiny_config, str(tmp_path))
  finally:
    holder.kill()  # A crash: nothing runs to release the lock but the operating system.
    holder.wait()
  with workdir_lock.hold(str(tmp_path)):
    pass


def test_config_that_builds_another_network_is_refused_and_the_checkpoints_stay(trained_workdir, tiny_config,
                                                                                 tmp_path):
  shutil.copytree(trained_workdir, tmp_path, dirs_exist_ok=True)
  config_before = (tmp_path / 'config.json').read_text()
  tiny_config.filters = (8, 16, 64)
  with pytest.raises(checkpoint_errors.ConfigMismatchError,
                     match=r"holds another network than this run's config describes \(filters=\(8, 16, 64\).*"
                           r'its enc\.2\..* has shape \(.*32\), the config builds \(.*64\)'):
    loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert not (tmp_path / 'checkpoints_unrestorable').exists()  # Not mistaken for damage and moved aside.
  assert (tmp_path / 'config.json').read_text() == config_before


@pytest.mark.parametrize('ema_decay', [0.0, 0.9])
def test_resuming_with_the_moving_average_switched_is_refused_and_the_checkpoints_stay(
    trained_workdir, tiny_config, tmp_path, ema_decay):
  """A config with an average on checkpoints without one (trained_workdir's), and the reverse, are refused."""
  shutil.copytree(trained_workdir, tmp_path, dirs_exist_ok=True)
  if not ema_decay:
    for step in (tmp_path / 'checkpoints').iterdir():
      if step.name.isdigit():
        shutil.copytree(step / 'model', step / 'ema')  # As a run with config.ema_decay > 0 saves.
  tiny_config.ema_decay = ema_decay
  with pytest.raises(checkpoint_errors.ConfigMismatchError,
                     match=rf"keeps {'no' if ema_decay else 'a'} moving average of the weights but this run's "
                           rf'config has config.ema_decay={ema_decay}. Set config.ema_decay back'):
    loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert not (tmp_path / 'checkpoints_unrestorable').exists()


def _mount_tmpfs(path: pathlib.Path, size: str):
  path.mkdir()
  result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)], capture_output=True,
                          check=False)
  if result.returncode:
    pytest.skip(f'mounting a tmpfs needs root: {result.stderr.decode().strip()}')


@pytest.mark.slow
def test_full_disk_stops_at_once_with_one_message_and_keeps_the_last_checkpoint(tiny_config, tmp_path):
  # A real ENOSPC in orbax's background writes: 3 MB hold the config, the TensorBoard events and two or three
  # checkpoints of ~0.9 MB; the free space passes the check before the next, which then fills the disk mid-save.
  disk = tmp_path / 'disk'
  _mount_tmpfs(disk, '3m')
  try:
    result = subprocess.run(_main_command(tiny_config, disk / 'workdir', num_train_steps=24), cwd=REPO,
                            capture_output=True, text=True, timeout=300, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
    assert result.returncode == 1, result.stderr[-5000:]
    assert result.stderr.count('No space left') == 1, result.stderr[-5000:]
    assert 'Traceback' not in result.stderr
    # Two or three saves fit (their sizes vary a little between machines); the next one fills the disk. The message
    # names the newest kept checkpoint, which restores.
    checkpoints = disk / 'workdir' / 'checkpoints'
    kept = checkpointer_lib.Checkpointer(str(disk / 'workdir'), tiny_config, read_only=True).all_steps()
    assert kept in ([3, 6], [3, 6, 9]), kept
    newest, failed = kept[-1], kept[-1] + tiny_config.checkpoint_every_steps
    # The size needed is that of the newest checkpoint complete when the check ran: the newest kept one, or the
    # one before it while the newest was still being written in the background.
    sizes = {f'{sum(f.stat().st_size for f in (checkpoints / str(step)).rglob("*") if f.is_file()) / 2**20:.1f}'
             for step in kept[-2:]}
    assert any(f'Error: No space left on {disk / "workdir"}: {size} MB needed for the next checkpoint, '
               in result.stderr for size in sizes), (sizes, result.stderr[-2000:])
    assert (f'Training stopped; the last good checkpoint, step {newest} in {checkpoints}, is kept.'
            in result.stderr), result.stderr[-2000:]
    # Either the save began and hit ENOSPC mid-write (its temporary folder is left), or the check before it saw
    # too little space (where a third checkpoint fitted).
    needed, free = map(float, re.search(r'([\d.]+) MB needed for the next checkpoint, ([\d.]+) MB free',
                                        result.stderr).groups())
    assert (checkpoints / f'{failed}.orbax-checkpoint-tmp').is_dir() or free <= needed  # Both rounded to 0.1 MB.
    # No step is logged after the first log point that follows the failed save.
    logged = [int(step) for step in re.findall(r'step (\d+)/24', result.stderr)]
    assert max(logged) < failed + tiny_config.log_every_steps
    assert _model_arrays(disk / 'workdir')[0] == newest  # It restores.
  finally:
    subprocess.run(['umount', str(disk)], check=True)


@pytest.mark.slow
def test_without_validation_the_schedule_runs_to_its_end_and_saves_its_last_step(tiny_config, tmp_path):
  tiny_config.validation_data, tiny_config.validation_fraction = '', 0.0
  tiny_config.num_train_steps, tiny_config.eval_every_steps, tiny_config.checkpoint_every_steps = 5, 3, 4
  metrics = loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert metrics['step'] == 5 and not any(key.startswith('val/') for key in metrics)
  accumulator = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard'))
  accumulator.Reload()
  assert not any(tag.startswith('val/') for tag in accumulator.Tags()['scalars'])
  assert [event.step for event in accumulator.Scalars('train/loss')][-1] == 5  # The last step is logged too.
  assert checkpointer_lib.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps() == [4, 5]


@pytest.mark.slow
def test_an_evaluation_saves_a_checkpoint_only_when_it_beats_the_best(tiny_config, tmp_path, monkeypatch, caplog):
  tiny_config.update(num_train_steps=8, eval_every_steps=2, checkpoint_every_steps=1000)
  scripted_dice = iter([0.5, 0.4, 0.6, 0.3])  # Steps 2, 4, 6, 8: new best, worse, new best, worse (but last).
  real_evaluate = periodic.evaluate

  def scripted_evaluate(*args, **kwargs):
    scalars, grid = real_evaluate(*args, **kwargs)
    return {**scalars, 'val/dice': next(scripted_dice)}, grid

  monkeypatch.setattr(periodic, 'evaluate', scripted_evaluate)
  caplog.set_level(logging.INFO, logger='absl')
  loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert checkpointer_lib.Checkpointer(str(tmp_path), tiny_config, read_only=True).all_steps() == [2, 6, 8]
  assert model_sources.restore_model(str(tmp_path), tiny_config, checkpoint='best')[1] == 6
  assert any(re.fullmatch(r'The loop was held by 4 validations \d+\.\d s, 3 checkpoint saves \d+\.\d s\.',
                          record.getMessage()) for record in caplog.records)


@pytest.mark.slow
def test_the_first_batch_is_fetched_while_the_train_step_compiles(tiny_config, tmp_path, monkeypatch):
  tiny_config.update(num_train_steps=2, num_workers=1)
  fetch_started = threading.Event()
  real_fetch, real_jit_train_step = loop._FirstBatchEarly._fetch, loop.steps.jit_train_step  # pylint: disable=protected-access

  def fetch(self):
    fetch_started.set()
    return real_fetch(self)

  class CompilesOnlyOnceTheFetchStarted:
    def __init__(self, jitted):
      self._jitted = jitted

    def lower(self, *args):
      assert fetch_started.wait(timeout=60), 'The first batch was not asked for before the train step compiled.'
      return self._jitted.lower(*args)

  monkeypatch.setattr(loop._FirstBatchEarly, '_fetch', fetch)  # pylint: disable=protected-access
  monkeypatch.setattr(loop.steps, 'jit_train_step',
                      lambda *args, **kwargs: CompilesOnlyOnceTheFetchStarted(real_jit_train_step(*args, **kwargs)))
  assert loop.train_and_evaluate(tiny_config, str(tmp_path))['step'] == 2
