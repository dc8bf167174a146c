"""`train_and_evaluate(config, workdir)`: the training loop the CLI and the tests run.

Resumes automatically from the newest checkpoint in `workdir` (model, optimizer,
plateau state and data position), evaluates on the validation data (a carve-out
of the training data or `validation_data`; none: no evaluation) once per epoch
(or every `eval_every_steps`), keeps the last and the best checkpoints, and
writes TensorBoard summaries and a progress bar on process 0. One run at a time holds
the workdir (`workdir_lock`); SIGTERM or Ctrl-C ends it with a checkpoint of the
step it was in (`preemption`).
"""
import concurrent.futures
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

from resunetpp_jax import errors
from resunetpp_jax.checkpoints import checkpointer as checkpointer_lib
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.config import validation as config_validation
from resunetpp_jax.data import pipeline
from resunetpp_jax.data.plan import DataPlan
from resunetpp_jax.runtime import compilation_cache
from resunetpp_jax.runtime import progress as progress_lib
from resunetpp_jax.training import fine_tuning
from resunetpp_jax.training import monitoring
from resunetpp_jax.training import periodic
from resunetpp_jax.training import plateau
from resunetpp_jax.training import preemption
from resunetpp_jax.training import sharding
from resunetpp_jax.training import state as train_state
from resunetpp_jax.training import steps
from resunetpp_jax.training import workdir_lock


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
  data_plan = config_validation.validate(config, num_devices=jax.device_count(), num_processes=jax.process_count())
  workdir = os.path.abspath(workdir)
  with workdir_lock.hold(workdir):
    try:
      return _train(config, data_plan, workdir)
    except jax.errors.JaxRuntimeError as error:
      if not errors.is_out_of_memory(error):
        raise
      raise OutOfMemoryError(_out_of_memory_message(config, workdir, error)) from error


def _train(config: ml_collections.ConfigDict, data_plan: DataPlan, workdir: str) -> dict[str, Any]:
  compilation_cache.enable(config.compilation_cache_dir)
  mesh = sharding.create_mesh()
  is_chief = jax.process_index() == 0
  checkpointer = checkpointer_lib.Checkpointer(workdir, config)
  if config.init_from and not checkpointer.all_steps():  # Before preparing data: a wrong file fails in seconds.
    fine_tuning.check(config)

  # Process 0 prepares first, so hosts that share a data_dir never race to write it.
  if is_chief:
    pipeline.prepare_if_needed(data_plan)
  multihost_utils.sync_global_devices('dataset prepared')
  if not is_chief:
    pipeline.prepare_if_needed(data_plan)
  steps_per_epoch = pipeline.train_steps_per_epoch(data_plan)
  validation = pipeline.validation_examples(data_plan)
  logging.info('Training on %s; validating on %s.', pipeline.training_examples(data_plan).describe(),
               validation.describe() if validation is not None else
               'nothing (no evaluation while training: the schedule runs to its end)')
  total_steps = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * steps_per_epoch
  eval_every = steps_per_epoch if config.eval_every_steps == -1 else config.eval_every_steps

  train_iter = pipeline.make_train_iterator(data_plan, process_index=jax.process_index(),
                                            process_count=jax.process_count())
  graphdef, state, step, plateau_state = _start_or_resume(config, mesh, total_steps, checkpointer, train_iter)
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

  log = periodic.LogMetrics(config, step=step, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                            writer=writer, progress=progress, checkpointer=checkpointer)
  validate = periodic.Validate(config, data_plan, validation, every=eval_every, total_steps=total_steps,
                               graphdef=graphdef, mesh=mesh, writer=writer, plateau_state=plateau_state
                               ) if validation is not None else None
  save = periodic.SaveCheckpoint(config.checkpoint_every_steps, total_steps, checkpointer)
  pauses = periodic.Pauses('validations', 'checkpoint saves')
  # The loop looks at its periodic work only every `every` steps (and at the last, or when stopping).
  every = math.gcd(config.log_every_steps, eval_every, config.checkpoint_every_steps)
  last_scalars, sums, stop, stopping = {}, None, False, False
  try:
    with preemption.StopRequest() as stop_request:
      batches = iter(first_batch_early or ())
      while step < total_steps and not stop:
        batch = sharding.global_batch(next(batches), mesh)
        state, step_sums = compiled_train_step(state, batch)
        sums = step_sums if sums is None else jax.tree.map(jnp.add, sums, step_sums)
        step += 1
        stopping = stop_request.reached(step)
        if not (stopping or step % every == 0 or step == total_steps):
          continue
        validating = validate is not None and validate.cadence.due(step)
        logging_now = log.cadence.due(step) or validating
        if logging_now:
          lr_scale = validate.plateau_state.lr_scale if validate else plateau_state.lr_scale
          last_scalars.update(log(step, periodic.host_sums(sums), state, lr_scale))
        elif save.wanted(step, stopping=stopping, metrics=None):  # Never checkpoint a state gone non-finite.
          log.check_finite(periodic.host_sums({'loss': sums['loss']}), step)
        stop, metrics = stopping, None
        if validating:
          with pauses.timed('validations'):
            state, eval_scalars, early_stop = validate(step, state)
          last_scalars.update(eval_scalars)
          stop = stop or early_stop
          metrics = {checkpointer_lib.BEST_METRIC: eval_scalars['val/dice']}
        if stop or save.wanted(step, stopping=stopping, metrics=metrics):
          with pauses.timed('checkpoint saves'):
            save(step, state, validate.plateau_state if validate else plateau_state, train_iter, metrics)
        if logging_now:
          log.restart_clock(step)
          sums = None
  finally:
    checkpointer.wait_until_finished()
    checkpointer.close()
    progress.close()
    writer.close()
  logging.info('The loop was held by %s.', pauses)
  last_scalars['step'] = step
  if stopping:
    logging.warning('Stopped by %s after step %d: checkpoint %d saved in %s. Run the same command to resume.',
                    signal.Signals(stop_request.signal).name, step, step, checkpointer.directory)
    last_scalars['stopped_by_signal'] = stop_request.signal
  return last_scalars
