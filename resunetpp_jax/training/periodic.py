"""The work the training loop does between steps, each piece with its own cadence (clu's periodic actions' shape).

`LogMetrics` every log_every_steps, `Validate` every eval_every_steps, `SaveCheckpoint` every checkpoint_every_steps
(and after a validation that beats the best, at the end, or on a stop); `Pauses` counts what held the loop. The loop
only asks each `Cadence` whether it is due, so its per-step body stays the step's dispatch and nothing the device
must finish.
"""
import contextlib
import time
from typing import Iterator

from absl import logging
import grain
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from resunetpp_jax import errors
from resunetpp_jax import visualize
from resunetpp_jax.checkpoints import checkpointer as checkpointer_lib
from resunetpp_jax.data import pipeline
from resunetpp_jax.data.plan import DataPlan
from resunetpp_jax.evaluation import metrics as metrics_lib
from resunetpp_jax.runtime import progress as progress_lib
from resunetpp_jax.training import monitoring
from resunetpp_jax.training import optimizer as optimizer_lib
from resunetpp_jax.training import plateau
from resunetpp_jax.training import sharding
from resunetpp_jax.training import state as train_state
from resunetpp_jax.training import steps


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """The loss became NaN or Inf; the checkpoints saved before are kept."""


class Cadence:
  """Due at every multiple of `every` and at the run's last step."""

  def __init__(self, every: int, last_step: int):
    self.every = every
    self.last_step = last_step

  def due(self, step: int) -> bool:
    return step % self.every == 0 or step == self.last_step


class Pauses:
  """What held the training loop: a count and the seconds of each kind of work."""

  def __init__(self, *kinds: str):
    self._totals = {kind: [0, 0.0] for kind in kinds}

  @contextlib.contextmanager
  def timed(self, kind: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    self._totals[kind][0] += 1
    self._totals[kind][1] += time.perf_counter() - start

  def __str__(self) -> str:
    """'45 validations 11.2 s, 24 checkpoint saves 50.3 s'."""
    return ', '.join(f'{count} {kind} {seconds:.1f} s' for kind, (count, seconds) in self._totals.items())


def host_sums(sums: dict[str, jax.Array]) -> dict[str, float]:
  """The step sums on the host: where XLA's asynchronous errors (out of memory) surface."""
  return {k: float(v) for k, v in jax.device_get(sums).items()}


def _train_scalars(sums: dict[str, float]) -> dict[str, float]:
  n = sums['steps']
  scalars = {'train/loss': sums['loss'] / n, 'train/l2_penalty': sums['l2_penalty'] / n}
  scalars.update({f'train/{k}': v / n for k, v in sums.items() if k.startswith('loss_head')})
  scalars.update({f'train/{k}': v for k, v in metrics_lib.summarize(sums).items()})
  return scalars


class LogMetrics:
  """The training scalars to TensorBoard and the progress line; a non-finite loss or a full disk stops the run here,
  not at the next save."""

  def __init__(self, config: ml_collections.ConfigDict, *, step: int, total_steps: int, steps_per_epoch: int,
               writer: monitoring.MetricWriter, progress: progress_lib.Progress,
               checkpointer: checkpointer_lib.Checkpointer):
    self.cadence = Cadence(config.log_every_steps, total_steps)
    self._batch_size = config.batch_size
    self._steps_per_epoch = steps_per_epoch
    self._lr_schedule = optimizer_lib.learning_rate_schedule(config, total_steps)
    self._writer = writer
    self._progress = progress
    self._checkpointer = checkpointer
    self.restart_clock(step)

  def restart_clock(self, step: int):
    """Images/s counts from here: the validations and saves after a log point are not training time."""
    self._tick, self._tick_step = time.perf_counter(), step

  def check_finite(self, sums: dict[str, float], step: int):
    if not np.isfinite(sums['loss']):
      raise NonFiniteLossError(
          f'The training loss became {sums["loss"]} before step {step}. Training stopped; '
          f'{self._checkpointer.kept_checkpoint()}. Lower config.learning_rate, use config.dtype=\'float32\', or '
          'check the data.')

  def __call__(self, step: int, sums: dict[str, float], state, lr_scale: float) -> dict[str, float]:
    self.check_finite(sums, step)
    self._checkpointer.check_disk(state)
    elapsed = time.perf_counter() - self._tick
    scalars = _train_scalars(sums)
    scalars['train/learning_rate'] = float(self._lr_schedule(step)) * lr_scale
    scalars['train/images_per_second'] = (step - self._tick_step) * self._batch_size / elapsed
    scalars['train/step_time_ms'] = 1e3 * elapsed / (step - self._tick_step)
    scalars['train/epoch'] = step / self._steps_per_epoch
    self._writer.write_scalars(step, scalars)
    self._progress.update(step, {'loss': scalars['train/loss'], 'dice': scalars['train/dice'],
                                 'images_per_second': scalars['train/images_per_second']})
    return scalars


def evaluate(config: ml_collections.ConfigDict, data_plan: DataPlan, validation: pipeline.Examples, state, eval_step,
             predict_step, mesh) -> tuple[dict[str, float], np.ndarray | None]:
  """Validation metrics over all of `validation`, and a grid of its first images."""
  sums, grid = None, None
  iterator = pipeline.make_eval_iterator(data_plan, validation, process_index=jax.process_index(),
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
  host = host_sums(sums)
  scalars = {f'val/{k}': v for k, v in metrics_lib.summarize(host).items()}
  scalars['val/loss'] = steps.dice_loss_from_sums(host)
  return scalars, grid


def set_lr_scale(graphdef, state, value: float, mesh) -> train_state.TrainState:
  """`state` with the plateau schedule's learning-rate factor set to `value` (replicated over `mesh`)."""
  model, optimizer, ema = train_state.merge(graphdef, state)
  scale = optimizer_lib.plateau_scale(optimizer)
  scale.set_value(jax.make_array_from_callback((), sharding.replicated(mesh),
                                               lambda _: np.asarray(value, scale.get_value().dtype)))
  return train_state.pure_state(model, optimizer, ema)


class Validate:
  """Validation metrics, then the plateau schedule (which may lower the learning rate) and early stopping."""

  def __init__(self, config: ml_collections.ConfigDict, data_plan: DataPlan, validation: pipeline.Examples, *,
               every: int, total_steps: int, graphdef, mesh, writer: monitoring.MetricWriter,
               plateau_state: plateau.PlateauState):
    self.cadence = Cadence(every, total_steps)
    self.plateau_state = plateau_state
    self._config = config
    self._data_plan = data_plan
    self._validation = validation
    self._graphdef = graphdef
    self._mesh = mesh
    self._writer = writer
    self._eval_step = steps.jit_eval_step(graphdef, mesh)
    self._predict_step = steps.jit_predict_step(graphdef, mesh)

  def __call__(self, step: int, state) -> tuple[object, dict[str, float], bool]:
    """The state (its learning-rate factor may change), the validation scalars, and whether to stop early."""
    config = self._config
    scalars, grid = evaluate(config, self._data_plan, self._validation, state, self._eval_step,
                             self._predict_step, self._mesh)
    previous_lr_scale = self.plateau_state.lr_scale
    self.plateau_state, stop = plateau.update(
        self.plateau_state, scalars['val/loss'], patience=config.plateau_patience, factor=config.plateau_factor,
        early_stop_patience=config.early_stop_patience)
    if self.plateau_state.lr_scale != previous_lr_scale:
      logging.info('Validation loss has not improved for %d evaluations: learning rate x%g.',
                   config.plateau_patience, self.plateau_state.lr_scale)
      state = set_lr_scale(self._graphdef, state, self.plateau_state.lr_scale, self._mesh)
    scalars.update({'val/best_loss': self.plateau_state.best_loss, 'val/lr_scale': self.plateau_state.lr_scale,
                    'val/evals_since_best': self.plateau_state.evals_since_best})
    self._writer.write_scalars(step, scalars)
    logging.info('step %d validation: loss %.4f dice %.4f iou %.4f precision %.4f recall %.4f', step,
                 scalars['val/loss'], scalars['val/dice'], scalars['val/iou'], scalars['val/precision'],
                 scalars['val/recall'])
    if grid is not None:
      self._writer.write_images(step, {'val/image_truth_prediction': grid})
    if stop:
      logging.info('Early stopping at step %d: no improvement in %d evaluations.', step, config.early_stop_patience)
    return state, scalars, stop


class SaveCheckpoint:
  """A checkpoint of everything needed to continue exactly: due on its cadence, and also when the run ends or stops
  and after a validation that beats the best kept (a save held the loop longer than a validation: PERF.md)."""

  def __init__(self, every: int, total_steps: int, checkpointer: checkpointer_lib.Checkpointer):
    self.cadence = Cadence(every, total_steps)
    self._checkpointer = checkpointer

  def wanted(self, step: int, *, stopping: bool, metrics: dict[str, float] | None) -> bool:
    return (self.cadence.due(step) or stopping
            or (metrics is not None and self._checkpointer.improves_on_best(metrics)))

  def __call__(self, step: int, state, plateau_state: plateau.PlateauState, train_iter: grain.DatasetIterator,
               metrics: dict[str, float] | None):
    self._checkpointer.save(step, state, {'plateau': plateau_state.to_json()}, train_iter, metrics=metrics)
