"""Orbax checkpoints of a run: everything needed to continue it exactly, and the best models.

One `CheckpointManager` in WORKDIR/checkpoints. Every checkpoint holds four items:
'model' (parameters and BatchNorm statistics), 'optimizer' (its state, step and
plateau factor included), 'loop' (plateau / early-stopping bookkeeping, JSON) and
'data' (each host's grain iterator position). Saves are asynchronous and atomic
(orbax writes a temporary folder and renames it when complete). The preservation
policy keeps the last `keep_checkpoints` AND the best `keep_best_checkpoints` by
validation Dice, so a restart never deletes the best.
"""
import json
import pathlib
import shutil
import time
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from orbax.checkpoint.checkpoint_managers import preservation_policy as policy_lib

from resunetpp_jax import cli

BEST_METRIC = 'val_dice'
CONFIG_FILE = 'config.json'


class CheckpointNotFoundError(cli.UserError, FileNotFoundError):
  """The workdir has no trained run, or no checkpoint at the step asked for."""


def _val_dice(metrics: dict[str, float]) -> float:
  return metrics[BEST_METRIC]


def save_config(workdir: str, config: ml_collections.ConfigDict):
  """Writes the run's config beside its checkpoints (process 0 only)."""
  if jax.process_index() == 0:
    path = pathlib.Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json_best_effort(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise CheckpointNotFoundError(f'{path} does not exist: {workdir} is not a training workdir '
                                  '(train into it first with resunetpp_jax.main).')
  config = ml_collections.ConfigDict(json.loads(path.read_text()))
  config.image_size = tuple(config.image_size)
  config.filters = tuple(config.filters)
  return config


class Checkpointer:
  """The run's checkpoints: periodic and evaluation saves, and a robust resume."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, *, read_only: bool = False):
    self.directory = pathlib.Path(workdir).absolute() / 'checkpoints'
    options = ocp.CheckpointManagerOptions(
        best_fn=_val_dice,
        best_mode='max',
        preservation_policy=policy_lib.AnyPreservationPolicy([
            policy_lib.LatestN(n=config.keep_checkpoints),
            policy_lib.BestN(get_metric_fn=_val_dice, reverse=False, n=config.keep_best_checkpoints,
                             keep_checkpoints_without_metrics=False),
        ]),
        cleanup_tmp_directories=not read_only,
        read_only=read_only,
        save_interval_steps=0 if read_only else 1,
        create=not read_only,
    )
    if not read_only:
      self._set_aside_unlistable_steps()
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state: dict[int, Any], loop_state: dict[str, Any],
           data_iterator: grain.DatasetIterator, metrics: dict[str, float] | None = None):
    """Starts an asynchronous save of the pure-dict train state; `metrics` (with 'val_dice') marks an evaluation
    checkpoint."""
    self._manager.save(
        step,
        args=ocp.args.Composite(
            model=ocp.args.StandardSave(state[0]),
            optimizer=ocp.args.StandardSave(state[1]),
            loop=ocp.args.JsonSave(loop_state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
        ),
        metrics=metrics,
        force=True,
    )

  def restore_latest(self, abstract_state: dict[int, Any], data_iterator: grain.DatasetIterator
                     ) -> tuple[int, dict[int, Any], dict[str, Any]] | None:
    """The newest checkpoint that restores completely, or None for a fresh run.

    A checkpoint that fails to restore (a step folder left without its metadata
    by a kill mid-save, a corrupt file) is moved aside with a warning, never
    deleted, and the one before it is tried.
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardRestore(abstract_state[0]),
                optimizer=ocp.args.StandardRestore(abstract_state[1]),
                loop=ocp.args.JsonRestore(),
                data=grain.checkpoint.CheckpointRestore(data_iterator),
            ))
      except Exception as error:  # pylint: disable=broad-except
        self._quarantine(step, error)
        continue
      return step, {0: restored['model'], 1: restored['optimizer']}, dict(restored['loop'])
    return None

  def _set_aside_unlistable_steps(self):
    """Moves aside step folders that would stop orbax from even listing the checkpoints.

    A step folder without `_CHECKPOINT_METADATA` (a kill mid-save where renames are
    not atomic) or with unreadable metrics (a corrupt file) would otherwise be
    listed as the latest, or crash the manager when it reads the metrics.
    """
    if not self.directory.is_dir():
      return
    for step_dir in sorted(p for p in self.directory.iterdir() if p.name.isdigit()):
      metrics_file = step_dir / 'metrics' / 'metrics'
      try:
        if not (step_dir / '_CHECKPOINT_METADATA').is_file():
          raise FileNotFoundError('it has no _CHECKPOINT_METADATA')
        if metrics_file.exists():
          json.loads(metrics_file.read_text())
      except (OSError, ValueError) as error:
        self._move_aside(int(step_dir.name), error)

  def _quarantine(self, step: int, error: Exception):
    self._move_aside(step, error)
    self._manager.reload()

  def _move_aside(self, step: int, error: Exception):
    logging.warning('Checkpoint %s/%d cannot be restored (%s: %s); it is moved to '
                    'checkpoints_unrestorable/ and the one before it is used.', self.directory, step,
                    type(error).__name__, error)
    if jax.process_index() == 0:
      aside = self.directory.parent / 'checkpoints_unrestorable' / f'{step}-{int(time.time())}'
      aside.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(str(self.directory / str(step)), str(aside))

  def restore_model_state(self, abstract_model_state: nnx.State, checkpoint: str | int = 'best'
                          ) -> tuple[int, nnx.State]:
    """Parameters and BatchNorm statistics of the 'best', 'latest' or a given step."""
    if checkpoint == 'best':
      # No evaluation has run yet in a very short run: the newest is the best known.
      step = self._manager.best_step() or self._manager.latest_step()
    elif checkpoint == 'latest':
      step = self._manager.latest_step()
    else:
      step = int(checkpoint)
      if step not in self._manager.all_steps():
        raise CheckpointNotFoundError(
            f'No checkpoint at step {step} in {self.directory}; the saved steps are '
            f'{sorted(self._manager.all_steps())}: pass one of them, best or latest to --checkpoint.')
    if step is None:
      raise CheckpointNotFoundError(f'No checkpoint in {self.directory}: train first, or check --workdir.')
    restored = self._manager.restore(step, args=ocp.args.Composite(
        model=ocp.args.StandardRestore(nnx.to_pure_dict(abstract_model_state))))
    nnx.replace_by_pure_dict(abstract_model_state, restored['model'])
    return step, abstract_model_state

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def wait_until_finished(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


def restore_model(workdir: str, config: ml_collections.ConfigDict | None = None,
                  checkpoint: str | int = 'best') -> tuple[nnx.Module, int]:
  """The trained model of a workdir (in eval mode) and the step it was saved at."""
  from resunetpp_jax import models  # Deferred: keeps this module importable without building a model.
  config = config or load_config(workdir)
  abstract_model = nnx.eval_shape(lambda: models.create_model(config, nnx.Rngs(config.seed)))
  graphdef, abstract_state = nnx.split(abstract_model)
  checkpointer = Checkpointer(workdir, config, read_only=True)
  try:
    step, model_state = checkpointer.restore_model_state(abstract_state, checkpoint)
  finally:
    checkpointer.close()
  model = nnx.merge(graphdef, model_state)
  model.eval()
  return model, step
