"""Learning rate on plateau and early stopping, as Keras' callbacks did for the original.

Host-side bookkeeping on the validation loss, checkpointed as plain JSON with the
run. Like Keras' `ReduceLROnPlateau(factor=0.1, patience=5)` and
`EarlyStopping(patience=20)`: an evaluation improves when the loss falls by more
than `min_delta` (1e-4) below the best so far.
"""
import dataclasses
import math

MIN_DELTA = 1e-4


@dataclasses.dataclass(frozen=True)
class PlateauState:
  best_loss: float = math.inf
  evals_without_improvement: int = 0  # Reset when the learning rate falls (the plateau counter).
  evals_since_best: int = 0  # Never reset by a fall of the learning rate (the early-stopping counter).
  lr_scale: float = 1.0

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: dict) -> 'PlateauState':
    return cls(**data)


def update(state: PlateauState, val_loss: float, *, patience: int, factor: float,
           early_stop_patience: int) -> tuple[PlateauState, bool]:
  """The state after one evaluation, and whether training should stop (a patience of 0: never acts)."""
  if val_loss < state.best_loss - MIN_DELTA:
    return PlateauState(best_loss=val_loss, lr_scale=state.lr_scale), False
  without = state.evals_without_improvement + 1
  since_best = state.evals_since_best + 1
  lr_scale = state.lr_scale
  if patience > 0 and without >= patience:
    lr_scale, without = lr_scale / factor, 0
  stop = early_stop_patience > 0 and since_best >= early_stop_patience
  return PlateauState(state.best_loss, without, since_best, lr_scale), stop
