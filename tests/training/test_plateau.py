"""The learning-rate plateau and early stopping follow Keras' callbacks, evaluation by evaluation."""
from resunetpp_jax.training import plateau


def _run(losses, patience=2, early_stop_patience=4):
  state, history = plateau.PlateauState(), []
  for loss in losses:
    state, stop = plateau.update(state, loss, patience=patience, factor=10.0,
                                 early_stop_patience=early_stop_patience)
    history.append((state.lr_scale, stop))
  return state, history


def test_learning_rate_falls_after_patience_evaluations_without_improvement():
  state, history = _run([1.0, 0.9, 0.95, 0.91, 0.92, 0.93])
  assert [h[0] for h in history] == [1.0, 1.0, 1.0, 0.1, 0.1, 0.01]
  assert state.best_loss == 0.9


def test_improvements_smaller_than_min_delta_do_not_count():
  _, history = _run([1.0, 1.0 - plateau.MIN_DELTA / 2, 1.0 - plateau.MIN_DELTA / 2])
  assert history[-1][0] == 0.1


def test_early_stopping_counts_from_the_best_even_across_lr_falls():
  _, history = _run([1.0, 1.1, 1.2, 1.3, 1.4])
  assert [h[1] for h in history] == [False, False, False, False, True]


def test_an_improvement_resets_both_counters_and_keeps_the_scale():
  state, _ = _run([1.0, 1.1, 1.2, 0.5])
  assert (state.evals_without_improvement, state.evals_since_best, state.lr_scale) == (0, 0, 0.1)


def test_state_round_trips_through_json():
  state, _ = _run([1.0, 1.1, 1.2])
  assert plateau.PlateauState.from_json(state.to_json()) == state


def test_early_stopping_off_with_zero_patience():
  _, history = _run([1.0] + [2.0] * 30, early_stop_patience=0)
  assert not any(stop for _, stop in history)


def test_plateau_off_with_zero_patience():
  state, history = _run([1.0] + [2.0] * 30, patience=0, early_stop_patience=0)
  assert {scale for scale, _ in history} == {1.0}
  assert state.evals_since_best == 30
