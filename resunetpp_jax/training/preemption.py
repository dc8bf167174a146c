"""Ending a run on SIGTERM or Ctrl-C at a step boundary, with a checkpoint of that step.

SIGTERM is what cloud preemption and job schedulers send before they kill. While
the training loop runs, the first SIGTERM or SIGINT only asks it to stop: it
finishes the step it is in, saves a checkpoint and ends with exit status 128 + the
signal's number (143 for SIGTERM, 130 for Ctrl-C). A second Ctrl-C stops at once
(KeyboardInterrupt), without that checkpoint.

With several processes every host must checkpoint the same step, so the decision
is JAX's preemption sync point: `jax.distributed` catches SIGTERM on any host and
`multihost_utils.reached_preemption_sync_point` turns true on all hosts at the
same step; Ctrl-C is passed to it as SIGTERM. Asking after each step costs no
device synchronisation: one process reads a flag, several call into the sync
manager (a local check until a notice arrives).
"""
import os
import signal
from types import FrameType

from absl import logging
import jax
from jax.experimental import multihost_utils


class StopRequest:
  """The stop signals' handlers, installed while the context is active; `reached(step)` after each step."""

  def __init__(self):
    self.signal: int | None = None
    self._several_processes = jax.process_count() > 1
    self._previous_handlers = {}

  def __enter__(self) -> 'StopRequest':
    if self._several_processes:  # jax.distributed's handler of SIGTERM must stay.
      self._install(signal.SIGINT, self._forward_as_sigterm)
    else:
      self._install(signal.SIGTERM, self._note)
      self._install(signal.SIGINT, self._note)
    return self

  def __exit__(self, *unused_exc_info):
    for signum, handler in self._previous_handlers.items():
      signal.signal(signum, handler)

  def reached(self, step: int) -> bool:
    """Whether the run stops after `step` (every process gets the same answer)."""
    if self._several_processes:
      if not multihost_utils.reached_preemption_sync_point(step):
        return False
      self.signal = self.signal or signal.SIGTERM
      return True
    return self.signal is not None

  def _install(self, signum: int, handler):
    self._previous_handlers[signum] = signal.signal(signum, handler)

  def _note(self, signum: int, unused_frame: FrameType | None):
    signal.signal(signal.SIGINT, signal.default_int_handler)  # First: a Ctrl-C while this runs already counts.
    if self.signal is None:
      self.signal = signum
      logging.warning('%s received: saving a checkpoint after this step, then stopping (Ctrl-C again stops at '
                      'once, without it).', signal.Signals(signum).name)

  def _forward_as_sigterm(self, signum: int, frame: FrameType | None):
    self._note(signum, frame)
    os.kill(os.getpid(), signal.SIGTERM)
