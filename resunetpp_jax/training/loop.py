"""`train_and_evaluate(config, workdir)`: the training loop the CLI and the tests run.

Resumes automatically from the newest checkpoint in `workdir` (model, optimizer,
plateau state and data position), evaluates on the validation data (a carve-out
of the training data or `validation_data`; none: no evaluation) once per epoch
(or every `eval_every_steps`), keeps the last and the best checkpoints, and
writes TensorBoard summaries and a progress bar on process 0. One run at a time holds
the workdir (`workdir_lock`); SIGTERM or Ctrl-C ends it with a checkpoint of the
step it was in (`preemption`).
"""
from collections.abc import Iterator
import concurrent.futures
import contextlib
import math
import os
import signal
import time
from typing import Any

from absl import logging
from flax import nnx
import grain
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from resunetpp_jax import errors
from resunetpp_jax import visualize
from resunetpp_jax.checkpoints import checkpointer as checkpointer_lib
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.config import validation as config_validation
from resunetpp_jax.data import pipeline
from resunetpp_jax.evaluation import metrics as metrics_lib
from resunetpp_jax.runtime import compilation_cache
from resunetpp_jax.runtime import progress as progress_lib
from resunetpp_jax.training import fine_tuning
from resunetpp_jax.training import monitoring
from resunetpp_jax.training import optimizer as optimizer_lib
from resunetpp_jax.training import plateau
from resunetpp_jax.training import preemption
from resunetpp_jax.training import sharding
from resunetpp_jax.training import state as train_state
from resunetpp_jax.training import steps
from resunetpp_jax.training import workdir_lock


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """The loss became NaN or Inf; the checkpoints saved before are kept."""


class OutOfMemoryError(errors.UserError, MemoryError):
  """A device ran out of memory for the step or the evaluation; the checkpoints saved before are kept."""


def _out_of_memory_message(config: ml_collections.ConfigDict, workdir: str, error: Exception) -> str:
  devices = jax.devices()
  lower = '--config.batch_size, --config.image_size or --config.filters'
  if config.dtype != 'bfloat16':
    lower += ', use --config.dtype=bfloat16'
  return (f'{errors.out_of_memory_opening(error, devices[0].platform)} training with '
          f'batch_size={config.batch_size} over {len(devices)} device(s), image_size={tuple(config.image_size)}, '
          f'filters={tuple(config.filters)}, dtype={config.dtype}. Lower {lower}, or train on a device with more '
          f'memory. Checkpoints saved in {os.path.join(workdir, "checkpoints")} are kept.')


class _FirstBatchEarly:
  """`train_iter`'s batches, the first fetched on a thread from construction on: grain starts its worker processes
  at the first fetch (about 6 s on the H200 host, 10 workers), and the step's compile that follows now hides it.
  Nothing else touches `train_iter` until the first batch is taken; `train_iter` itself keeps the data position,
  which the checkpoints save after each step has used its batch."""

  def __init__(self, train_iter: grain.DatasetIterator):
    self._train_iter = train_iter
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='first-training-batch')
    self._first = executor.submit(self._fetch)
    executor.shutdown(wait=False)  # Its one task still runs.

  def _fetch(self):
    return next(self._train_iter)

  def __iter__(self):
    start = time.perf_counter()
    first = self._first.result()  # Raises what the fetch raised.
    logging.info('First training batch after %.1f s more (the data-loader workers start during the compile).',
                 time.perf_counter() - start)
    yield first
    yield from self._train_iter


def _host_sums(sums: dict[str, jax.Array]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(sums).items()}


def _train_scalars(sums: dict[str, float]) -> dict[str, float]:
  n = sums['steps']
  scalars = {'train/loss': sums['loss'] / n, 'train/l2_penalty': sums['l2_penalty'] / n}
  scalars.update({f'train/{k}': v / n for k, v in sums.items() if k.startswith('loss_head')})
  scalars.update({f'train/{k}': v for k, v in metrics_lib.summarize(sums).items()})
  return scalars


def _set_lr_scale(graphdef, state, value: float, mesh) -> train_state.TrainState:
  model, optimizer, ema = train_state.merge(graphdef, state)
  scale = optimizer_lib.plateau_scale(optimizer)
  scale.set_value(jax.make_array_from_callback((), sharding.replicated(mesh),
                                               lambda _: np.asarray(value, scale.get_value().dtype)))
  return train_state.pure_state(model, optimizer, ema)


def evaluate(config, validation: pipeline.Examples, state, eval_step, predict_step, mesh
             ) -> tuple[dict[str, float], np.ndarray | None]:
  """Validation metrics over all of `validation`, and a grid of its first images."""
  sums, grid = None, None
  iterator = pipeline.make_eval_iterator(config, validation, process_index=jax.process_index(),
                                         process_count=jax.process_count())
  for local_batch in iterator:
    batch = sharding.global_batch(local_batch, mesh)
    batch_sums = eval_step(state, batch)
    sums = batch_sums if sums is None else jax.tree.map(jnp.add, sums, batch_sums)
    if grid is None and config.num_eval_images_logged > 0:
      probs = multihost_utils.process_allgather(predict_step(state, batch), tiled=True)
      images = multihost_utils.process_allgather(batch['image'], tiled=True)
      labels = multihost_utils.process_allgather(batch['mask'], tiled=True)
      grid = visualize.comparison_grid(images, labels[..., 0] > 0, probs[..., 0] >= 0.5,
                                       config.num_eval_images_logged)
  host = _host_sums(sums)
  scalars = {f'val/{k}': v for k, v in metrics_lib.summarize(host).items()}
  scalars['val/loss'] = steps.dice_loss_from_sums(host)
  return scalars, grid


class _Boundaries:
  """What the loop does every log_every_steps, eval_every_steps and checkpoint_every_steps, and when asked to
  stop; kept out of the loop, whose per-step body stays the step's dispatch and nothing the device must finish."""

  def __init__(self, config: ml_collections.ConfigDict, validation: pipeline.Examples | None, *, mesh, graphdef,
               checkpointer: checkpointer_lib.Checkpointer, writer: monitoring.MetricWriter,
               progress: progress_lib.Progress, loop: plateau.PlateauState, step: int, total_steps: int,
               steps_per_epoch: int, eval_every: int):
    self.config = config
    self.loop = loop
    self.last_scalars = {}
    self._validation = validation
    self._mesh = mesh
    self._graphdef = graphdef
    self._checkpointer = checkpointer
    self._writer = writer
    self._progress = progress
    self._total_steps = total_steps
    self._steps_per_epoch = steps_per_epoch
    self._eval_every = eval_every
    self._lr_schedule = optimizer_lib.learning_rate_schedule(config, total_steps)
    self._eval_step = steps.jit_eval_step(graphdef, mesh)
    self._predict_step = steps.jit_predict_step(graphdef, mesh)
    self._tick, self._tick_step = time.perf_counter(), step
    # The loop calls `run` only every `every` steps (and at the last, or when stopping).
    self.every = math.gcd(config.log_every_steps, eval_every, config.checkpoint_every_steps)
    self._pauses = {'validations': [0, 0.0], 'checkpoint saves': [0, 0.0]}  # What holds the loop: count, seconds.

  def run(self, step: int, state, sums, train_iter, *, stopping: bool):
    """Logs, evaluates and checkpoints as due after `step`.

    Returns:
      The state (its learning-rate scale may change), the sums not logged yet, and whether to stop.
    """
    is_last = step == self._total_steps
    is_eval = self._validation is not None and (step % self._eval_every == 0 or is_last)
    is_log = step % self.config.log_every_steps == 0 or is_eval or is_last
    must_save = is_last or stopping or step % self.config.checkpoint_every_steps == 0
    if is_log:
      self._log(step, _host_sums(sums), state)
    elif must_save:  # Never checkpoint a state that has gone non-finite.
      self._check_finite(_host_sums({'loss': sums['loss']}), step)
    stop, metrics = stopping, None
    if is_eval:
      with self._pause('validations'):
        state, eval_scalars, early_stop = self._evaluate(step, state)
      stop = stop or early_stop
      metrics = {checkpointer_lib.BEST_METRIC: eval_scalars['val/dice']}
    # An evaluation saves only a new best: a save held run 35's loop ~2 s, its validation 0.2 (docs/records/PERF.md).
    if must_save or stop or (metrics and self._checkpointer.improves_on_best(metrics)):
      with self._pause('checkpoint saves'):
        self._checkpointer.save(step, state, {'plateau': self.loop.to_json()}, train_iter, metrics=metrics)
    if is_log:
      self._tick, self._tick_step = time.perf_counter(), step
      return state, None, stop
    return state, sums, stop

  @contextlib.contextmanager
  def _pause(self, kind: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    self._pauses[kind][0] += 1
    self._pauses[kind][1] += time.perf_counter() - start

  def pauses(self) -> str:
    """What held the training loop, in words: e.g. '45 validations 11.2 s, 24 checkpoint saves 50.3 s'."""
    return ', '.join(f'{count} {kind} {seconds:.1f} s' for kind, (count, seconds) in self._pauses.items())

  def _check_finite(self, sums: dict[str, float], step: int):
    if not math.isfinite(sums['loss']):
      raise NonFiniteLossError(
          f'The training loss became {sums["loss"]} before step {step}. Training stopped; '
          f'{self._checkpointer.kept_checkpoint()}. Lower config.learning_rate, use config.dtype=\'float32\', or '
          'check the data.')

  def _log(self, step: int, sums: dict[str, float], state):
    self._check_finite(sums, step)
    self._checkpointer.check_disk(state)  # A full disk stops the run now, not at the next save.
    elapsed = time.perf_counter() - self._tick
    scalars = _train_scalars(sums)
    scalars['train/learning_rate'] = float(self._lr_schedule(step)) * self.loop.lr_scale
    scalars['train/images_per_second'] = (step - self._tick_step) * self.config.batch_size / elapsed
    scalars['train/step_time_ms'] = 1e3 * elapsed / (step - self._tick_step)
    scalars['train/epoch'] = step / self._steps_per_epoch
    self._writer.write_scalars(step, scalars)
    self._progress.update(step, {'loss': scalars['train/loss'], 'dice': scalars['train/dice'],
                                 'images_per_second': scalars['train/images_per_second']})
    self.last_scalars.update(scalars)

  def _evaluate(self, step: int, state):
    """Validation, the plateau schedule and early stopping: the state, the scalars and whether to stop."""
    config = self.config
    eval_scalars, grid = evaluate(config, self._validation, state, self._eval_step, self._predict_step, self._mesh)
    previous_lr_scale = self.loop.lr_scale
    self.loop, stop = plateau.update(self.loop, eval_scalars['val/loss'], patience=config.plateau_patience,
                                     factor=config.plateau_factor, early_stop_patience=config.early_stop_patience)
    if self.loop.lr_scale != previous_lr_scale:
      logging.info('Validation loss has not improved for %d evaluations: learning rate x%g.',
                   config.plateau_patience, self.loop.lr_scale)
      state = _set_lr_scale(self._graphdef, state, self.loop.lr_scale, self._mesh)
    eval_scalars.update({'val/best_loss': self.loop.best_loss, 'val/lr_scale': self.loop.lr_scale,
                         'val/evals_since_best': self.loop.evals_since_best})
    self._writer.write_scalars(step, eval_scalars)
    logging.info('step %d validation: loss %.4f dice %.4f iou %.4f precision %.4f recall %.4f', step,
                 eval_scalars['val/loss'], eval_scalars['val/dice'], eval_scalars['val/iou'],
                 eval_scalars['val/precision'], eval_scalars['val/recall'])
    if grid is not None:
      self._writer.write_images(step, {'val/image_truth_prediction': grid})
    self.last_scalars.update(eval_scalars)
    if stop:
      logging.info('Early stopping at step %d: no improvement in %d evaluations.', step, config.early_stop_patience)
    return state, eval_scalars, stop


def _start_or_resume(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, total_steps: int,
                     checkpointer: checkpointer_lib.Checkpointer, train_iter: grain.DatasetIterator
                     ) -> tuple[nnx.GraphDef, train_state.TrainState, int, plateau.PlateauState]:
  """(graphdef, state, step, plateau state) of the newest checkpoint that restores, else of a fresh start.

  Only a fresh start reads config.init_from, so a fine-tuning run resumes without its initial model file.
  """
  resuming = bool(checkpointer.all_steps())
  graphdef, state = train_state.create_train_state(config, mesh, total_steps, read_init_from=not resuming)
  restored = checkpointer.restore_latest(train_state.abstract_like(state), train_iter)
  if restored is not None:
    step, state, loop_json = restored
    logging.info('Resumed from step %d of %s.', step, checkpointer.directory)
    return graphdef, state, step, plateau.PlateauState.from_json(loop_json['plateau'])
  if resuming and config.init_from:  # Every checkpoint was set aside as unrestorable: a fresh start after all.
    graphdef, state = train_state.create_train_state(config, mesh, total_steps)
  return graphdef, state, 0, plateau.PlateauState()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming if `workdir` holds checkpoints) and returns the last metrics.

  The metrics hold 'step', the last step trained, and 'stopped_by_signal' (its
  number) when SIGTERM or SIGINT ended the run early, after a checkpoint of that step.
  """
  config_validation.validate(config, num_devices=jax.device_count(), num_processes=jax.process_count())
  workdir = os.path.abspath(workdir)
  with workdir_lock.hold(workdir):
    try:
      return _train(config, workdir)
    except jax.errors.JaxRuntimeError as error:
      if not errors.is_out_of_memory(error):
        raise
      raise OutOfMemoryError(_out_of_memory_message(config, workdir, error)) from error


def _train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  compilation_cache.enable(config.compilation_cache_dir)
  mesh = sharding.create_mesh()
  is_chief = jax.process_index() == 0
  checkpointer = checkpointer_lib.Checkpointer(workdir, config)
  if config.init_from and not checkpointer.all_steps():  # Before preparing data: a wrong file fails in seconds.
    fine_tuning.check(config)

  # Process 0 prepares first, so hosts that share a data_dir never race to write it.
  if is_chief:
    pipeline.prepare_if_needed(config)
  multihost_utils.sync_global_devices('dataset prepared')
  if not is_chief:
    pipeline.prepare_if_needed(config)
  steps_per_epoch = pipeline.train_steps_per_epoch(config)
  validation = pipeline.validation_examples(config)
  logging.info('Training on %s; validating on %s.', pipeline.training_examples(config).describe(),
               validation.describe() if validation is not None else
               'nothing (no evaluation while training: the schedule runs to its end)')
  total_steps = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * steps_per_epoch
  eval_every = steps_per_epoch if config.eval_every_steps == -1 else config.eval_every_steps

  train_iter = pipeline.make_train_iterator(config, process_index=jax.process_index(),
                                            process_count=jax.process_count())
  graphdef, state, step, loop = _start_or_resume(config, mesh, total_steps, checkpointer, train_iter)
  # After the restore: a config refused for not matching the checkpoints leaves the run's own in place.
  workdir_config.save_config(workdir, config)

  writer = monitoring.MetricWriter(os.path.join(workdir, 'tensorboard'), enabled=is_chief)
  if step == 0:
    writer.write_config(config, metric_tags=('val/dice', 'val/loss'))
  progress = progress_lib.Progress(total_steps, step, steps_per_epoch, enabled=is_chief)

  first_batch_early = _FirstBatchEarly(train_iter) if step < total_steps else None
  train_step = steps.jit_train_step(config, graphdef, mesh)
  start = time.perf_counter()
  compiled_train_step = train_step.lower(state, steps.batch_spec(config, mesh)).compile()
  logging.info('Train step compiled (or loaded from the cache) in %.1f s.', time.perf_counter() - start)
  writer.write_scalars(step, {'perf/train_step_compile_seconds': time.perf_counter() - start})

  boundaries = _Boundaries(config, validation, mesh=mesh, graphdef=graphdef, checkpointer=checkpointer, writer=writer,
                           progress=progress, loop=loop, step=step, total_steps=total_steps,
                           steps_per_epoch=steps_per_epoch, eval_every=eval_every)
  sums, stop, stopping = None, False, False
  try:
    with preemption.StopRequest() as stop_request:
      batches = iter(first_batch_early or ())
      while step < total_steps and not stop:
        batch = sharding.global_batch(next(batches), mesh)
        state, step_sums = compiled_train_step(state, batch)
        sums = step_sums if sums is None else jax.tree.map(jnp.add, sums, step_sums)
        step += 1
        stopping = stop_request.reached(step)
        if stopping or step % boundaries.every == 0 or step == total_steps:
          state, sums, stop = boundaries.run(step, state, sums, train_iter, stopping=stopping)
  finally:
    checkpointer.wait_until_finished()
    checkpointer.close()
    progress.close()
    writer.close()
  logging.info('The loop was held by %s.', boundaries.pauses())
  last_scalars = {**boundaries.last_scalars, 'step': step}
  if stopping:
    logging.warning('Stopped by %s after step %d: checkpoint %d saved in %s. Run the same command to resume.',
                    signal.Signals(stop_request.signal).name, step, step, checkpointer.directory)
    last_scalars['stopped_by_signal'] = stop_request.signal
  return last_scalars
