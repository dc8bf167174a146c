"""Orbax checkpoints of a run: everything needed to continue it exactly, and the best models.

One `CheckpointManager` in WORKDIR/checkpoints. Every checkpoint holds four items:
'model' (parameters and BatchNorm statistics), 'optimizer' (its state, step and
plateau factor included), 'loop' (plateau / early-stopping bookkeeping, JSON) and
'data' (each host's grain iterator position); a run with `config.ema_decay > 0` adds
'ema', the moving average of 'model' (same structure), which read-only tools restore
in its place. Saves are asynchronous and atomic (orbax writes a temporary folder
and renames it when complete). Training saves every `checkpoint_every_steps`, at its
end or stop, and after an evaluation that beats the best validation Dice kept
(`improves_on_best`): a save held the loop ~2 s for the ResUNet++ on an H200
(0.3-0.45 s for the smaller U-Net and UNet++), more than a validation. The preservation policy keeps the last `keep_checkpoints` AND the
best `keep_best_checkpoints` by validation Dice, so a restart never deletes the best.

Faults end in one `errors.UserError` each: a full disk (`DiskFullError`, checked
before each save and caught from orbax's background writes), a config that builds
another network than the checkpoint holds, or keeps a moving average where the
checkpoints have none or the reverse (`ConfigMismatchError`), an explicitly
requested checkpoint that cannot be read (`UnreadableCheckpointError`). A 'best' or
'latest' one that cannot be read is skipped with one warning for the newest that
can (training also moves it aside; read-only tools move nothing).
"""
from collections.abc import Iterator
import contextlib
import errno
import json
import os
import pathlib
import shutil
import time
from typing import Any

from absl import logging
from flax import nnx
import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as policy_lib

from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.checkpoints.errors import CheckpointFolderGoneError
from resunetpp_jax.checkpoints.errors import CheckpointNotFoundError
from resunetpp_jax.checkpoints.errors import ConfigMismatchError
from resunetpp_jax.checkpoints.errors import DiskFullError
from resunetpp_jax.checkpoints.errors import UnreadableCheckpointError

BEST_METRIC = 'val_dice'
# The config keys that set the shapes of the model's parameters (models.create_model).
SHAPE_KEYS = ('filters', 'num_classes', 'deep_supervision')
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class _Unreadable(Exception):
  """A checkpoint failed to restore; its __cause__ says why."""


def _is_no_space(error: BaseException) -> bool:
  """Whether `error` or its causes are ENOSPC or EDQUOT: an OSError from Python, or tensorstore's message."""
  while error is not None:
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
      return True
    if any(os.strerror(code) in str(error) for code in _NO_SPACE):
      return True
    error = error.__cause__ or error.__context__
  return False


def _first_line(error: BaseException, limit: int = 200) -> str:
  """`error` in a few words: tensorstore's messages run to kilobytes of spec."""
  text = f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'.split(' [tensorstore_spec')[0]
  return text if len(text) <= limit else text[:limit] + '...'


def _folder_bytes(folder: pathlib.Path) -> int:
  return sum(f.stat().st_size for f in folder.rglob('*') if f.is_file())


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  """'enc.0.unit.conv1.kernel' -> shape, for a tree of arrays or of orbax's array metadata."""
  return {'.'.join(str(getattr(key, 'key', getattr(key, 'idx', key))) for key in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


class _TolerantManager(ocp.CheckpointManager):
  """orbax's manager, listing a step whose metrics file is corrupt as never evaluated.

  orbax reads every step's metrics when it opens the folder and fails on one bad
  file; training moves such a step aside first, but read-only tools must not.
  """

  def metrics(self, step: int):
    try:
      return super().metrics(step)
    except ValueError:
      return None


def _val_dice(metrics: dict[str, float]) -> float:
  return metrics[BEST_METRIC]


class Checkpointer:
  """The run's checkpoints: periodic and evaluation saves, and a robust resume."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, *, read_only: bool = False):
    self.directory = pathlib.Path(workdir).absolute() / 'checkpoints'
    self._config = config
    self._read_only = read_only
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
    self._manager = _TolerantManager(self.directory, options=options)
    # The item inference uses; configs saved before config.ema_decay existed keep no average.
    self._inference_item = 'ema' if config.get('ema_decay', 0.0) > 0 else 'model'
    self._bytes_needed = 0
    self._best_val_dice = None if read_only else self._read_best_val_dice()  # Only training saves.

  def save(self, step: int, state: dict[int, Any], loop_state: dict[str, Any],
           data_iterator: grain.DatasetIterator, metrics: dict[str, float] | None = None):
    """Starts an asynchronous save of the pure-dict train state; `metrics` (with 'val_dice') marks an evaluation
    checkpoint. Raises DiskFullError as `check_disk` does, before writing anything."""
    self.check_disk(state)
    with self._no_space_as_user_error():
      self._manager.save(
          step,
          args=ocp.args.Composite(
              model=ocp.args.StandardSave(state[0]),
              optimizer=ocp.args.StandardSave(state[1]),
              loop=ocp.args.JsonSave(loop_state),
              data=grain.checkpoint.CheckpointSave(data_iterator),
              **({'ema': ocp.args.StandardSave(state[2]['params'])} if 2 in state else {}),
          ),
          metrics=metrics,
          force=True,
      )
    if metrics is not None and self.improves_on_best(metrics):
      self._best_val_dice = _val_dice(metrics)

  def improves_on_best(self, metrics: dict[str, float]) -> bool:
    """Whether an evaluation's `metrics` beat the best checkpoint's (or no checkpoint has metrics yet)."""
    return self._best_val_dice is None or _val_dice(metrics) > self._best_val_dice

  def _read_best_val_dice(self) -> float | None:
    """The best validation Dice of the checkpoints on disk; saves after this update it themselves, as an
    asynchronous save's metrics reach the disk only when it completes."""
    best_step = self._manager.best_step()
    best = self._manager.metrics(best_step) if best_step is not None else None
    return _val_dice(best) if best else None

  def check_disk(self, state: dict[int, Any]):
    """Raises DiskFullError when a background save failed for lack of space, or when the file system
    could not hold the next checkpoint: the run stops now rather than steps later, before any write fails.
    Raises CheckpointFolderGoneError when the folder itself was moved or deleted.

    The next checkpoint is taken to be the size of the newest complete one, or,
    before the first, of the state's arrays plus orbax's metadata (under 1 KiB per
    array, measured). A save still running is not waited for.
    """
    if not self.directory.is_dir():
      raise CheckpointFolderGoneError(
          f'The checkpoint folder {self.directory} is gone: it was moved or deleted while training ran. Training '
          'stopped; the steps since its last checkpoint are lost. Put the folder back (or pass the --workdir it '
          'was moved to) and run the same command to resume from its newest checkpoint.')
    if not self._manager.is_saving_in_progress():
      self.wait_until_finished()
    complete = [d for d in self.directory.iterdir() if d.name.isdigit()]
    newest = max(complete, key=lambda d: int(d.name), default=None)
    leaves = jax.tree.leaves(state)
    self._bytes_needed = (_folder_bytes(newest) if newest
                          else sum(leaf.nbytes for leaf in leaves) + 1024 * len(leaves))
    with self._no_space_as_user_error():
      if shutil.disk_usage(self.directory).free < self._bytes_needed:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.directory))

  @contextlib.contextmanager
  def _no_space_as_user_error(self) -> Iterator[None]:
    try:
      yield
    except Exception as error:  # pylint: disable=broad-except
      if not _is_no_space(error):
        raise
      workdir = self.directory.parent
      raise DiskFullError(
          f'No space left on {workdir}: {self._bytes_needed / 2**20:.1f} MB needed for the next checkpoint, '
          f'{shutil.disk_usage(workdir).free / 2**20:.1f} MB free. Training stopped; '
          f'{self.kept_checkpoint()}. Free some space or move the workdir, then run the same command to '
          'resume.') from error

  def kept_checkpoint(self) -> str:
    """Which checkpoint a run that stops now resumes from, in words."""
    latest = self._manager.latest_step()
    if latest is None:
      return f'no checkpoint has been saved in {self.directory} yet'
    return f'the last good checkpoint, step {latest} in {self.directory}, is kept'

  def restore_latest(self, abstract_state: dict[int, Any], data_iterator: grain.DatasetIterator
                     ) -> tuple[int, dict[int, Any], dict[str, Any]] | None:
    """The newest checkpoint that restores completely, or None for a fresh run.

    A checkpoint that fails to restore (a step folder left without its metadata
    by a kill mid-save, a corrupt file) is moved aside with a warning, never
    deleted, and the one before it is tried. `data_iterator` is left where it was unless one restores.
    """
    ema = {'ema': ocp.args.StandardRestore(abstract_state[2]['params'])} if 2 in abstract_state else {}
    data_start = data_iterator.get_state()
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._restore(
            step, abstract_state[0],
            optimizer=ocp.args.StandardRestore(abstract_state[1]),
            loop=ocp.args.JsonRestore(),
            data=grain.checkpoint.CheckpointRestore(data_iterator), **ema)
      except _Unreadable as unreadable:
        data_iterator.set_state(data_start)  # Its data item may have restored before another item failed.
        self._quarantine(step, unreadable.__cause__)
        continue
      state = {0: restored['model'], 1: restored['optimizer']}
      if ema:
        state[2] = {'params': restored['ema']}
      return step, state, dict(restored['loop'])
    return None

  def _restore(self, step: int, abstract_model: dict[str, Any], item: str = 'model',
               **other_items: ocp.args.CheckpointArgs) -> dict[str, Any]:
    """The model's state from `item` ('model' or 'ema'), and `other_items`, of `step`.

    Raises:
      ConfigMismatchError: the checkpoint's parameters have other shapes than the config's, or it has a moving
        average where the config keeps none or the reverse.
      _Unreadable: anything else went wrong (its cause says what).
    """
    self._raise_if_other_ema(step)
    try:
      return self._manager.restore(step, args=ocp.args.Composite(
          **{item: ocp.args.StandardRestore(abstract_model)}, **other_items))
    except Exception as error:  # pylint: disable=broad-except
      self._raise_if_other_network(step, abstract_model)
      raise _Unreadable() from error

  def _raise_if_other_ema(self, step: int):
    has_ema = (self.directory / str(step) / 'ema').is_dir()
    if has_ema == (self._inference_item == 'ema') or not (self.directory / str(step) / 'model').is_dir():
      return  # Agreed, or a damaged checkpoint (no 'model' either), which _restore reports as such.
    config_file = self.directory.parent / workdir_config.CONFIG_FILE
    source = config_file if self._read_only else "this run's config"
    raise ConfigMismatchError(
        f'Checkpoint {step} in {self.directory} {"keeps a" if has_ema else "keeps no"} moving average of the weights '
        f'but {source} has config.ema_decay={self._config.get("ema_decay", 0.0)!r}. Set config.ema_decay back to '
        f'the value the run was trained with ({config_file} keeps it), or train into another --workdir.')

  def _raise_if_other_network(self, step: int, abstract_model: dict[str, Any]):
    try:
      stored = _shapes(ocp.StandardCheckpointHandler().metadata(self.directory / str(step) / 'model'))
    except Exception:  # pylint: disable=broad-except
      return  # Its metadata is unreadable too: a damaged checkpoint, not another network.
    wanted = _shapes(abstract_model)
    differing = [key for key in sorted(stored.keys() | wanted.keys()) if stored.get(key) != wanted.get(key)]
    if not differing:
      return
    key = differing[0]
    config_file = self.directory.parent / workdir_config.CONFIG_FILE
    settings = ', '.join(f'{name}={self._config[name]!r}' for name in SHAPE_KEYS)
    source = config_file if self._read_only else "this run's config"
    advice = (f'Set them in {config_file} back to the values the run was trained with.' if self._read_only else
              f'Train with the values it was trained with ({config_file} keeps them), or into another --workdir.')
    raise ConfigMismatchError(
        f'Checkpoint {step} in {self.directory} holds another network than {source} describes ({settings}): '
        f'its {key} has shape {stored.get(key, "(absent)")}, the config builds {wanted.get(key, "(absent)")} '
        f'({len(differing)} of {len(wanted)} parameters differ). {advice}')

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
    self._best_val_dice = self._read_best_val_dice()

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
    """Parameters and BatchNorm statistics of the 'best', 'latest' or a given step, and that step.

    When the 'best' or 'latest' cannot be read, the newest that can is used, with
    one warning line; nothing is moved (this is what read-only tools call).

    Raises:
      UnreadableCheckpointError: the step asked for, or every checkpoint, cannot be read.
      ConfigMismatchError: the config builds parameters of other shapes than the checkpoint's.
    """
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
    abstract_model = nnx.to_pure_dict(abstract_model_state)
    if checkpoint in ('best', 'latest'):
      candidates = [step] + [s for s in sorted(self._manager.all_steps(), reverse=True) if s != step]
    else:
      candidates = [step]
    failures = []
    for candidate in candidates:
      try:
        restored = self._restore(candidate, abstract_model, self._inference_item)
      except _Unreadable as unreadable:
        failures.append(f'{candidate} ({_first_line(unreadable.__cause__)})')
        continue
      if failures:
        logging.warning('Checkpoint %s in %s cannot be read; using step %d, the newest that can.',
                        ', '.join(failures), self.directory, candidate)
      nnx.replace_by_pure_dict(abstract_model_state, restored[self._inference_item])
      return candidate, abstract_model_state
    if checkpoint in ('best', 'latest'):
      raise UnreadableCheckpointError(f'No checkpoint in {self.directory} can be read: {"; ".join(failures)}.')
    raise UnreadableCheckpointError(
        f'Checkpoint {failures[0]} in {self.directory} cannot be read. Choose another with --checkpoint (steps '
        f'{", ".join(map(str, self.all_steps()))}), or best or latest, which skip unreadable ones.')

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def wait_until_finished(self):
    with self._no_space_as_user_error():
      self._manager.wait_until_finished()

  def close(self):
    with self._no_space_as_user_error():
      self._manager.close()
