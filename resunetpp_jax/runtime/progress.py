"""Progress of long work in the console: a tqdm bar on a terminal, plain log lines with an ETA elsewhere."""
import sys
import time
from typing import Mapping

from absl import logging
import tqdm


def format_duration(seconds: float) -> str:
  """'1:02:03' style, as tqdm prints it."""
  seconds = int(round(max(seconds, 0)))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else (
      f'{minutes:02d}:{seconds:02d}')


class Progress:
  """Step, epoch, loss, Dice, images/s and ETA at every log point.

  A tqdm bar when stderr is a terminal; plain log lines otherwise (job logs,
  pipes), where a bar would leave one carriage-return-joined line.
  """

  def __init__(self, total_steps: int, initial_step: int,
               steps_per_epoch: int, enabled: bool):
    if steps_per_epoch < 1:
      raise ValueError(f'steps_per_epoch must be >= 1, got {steps_per_epoch}.')
    self.total_steps = total_steps
    self.steps_per_epoch = steps_per_epoch
    self.enabled = enabled
    self._last_step = initial_step
    self._last_time = time.monotonic()
    self._bar = None
    if enabled and sys.stderr.isatty():
      self._bar = tqdm.tqdm(total=total_steps, initial=initial_step,
                            unit='step', dynamic_ncols=True, file=sys.stderr)

  def update(self, step: int, metrics: Mapping[str, float]):
    """Shows the state at `step` (metrics: 'loss', 'dice', 'images_per_second')."""
    if not self.enabled:
      return
    now = time.monotonic()
    fields = {'epoch': f'{step / self.steps_per_epoch:.2f}'}
    for name, key in (('loss', 'loss'), ('dice', 'dice')):
      if key in metrics:
        fields[name] = f'{float(metrics[key]):.4f}'
    if 'images_per_second' in metrics:
      fields['img/s'] = f'{float(metrics["images_per_second"]):.1f}'
    if self._bar is not None:
      self._bar.set_postfix(fields, refresh=False)
      self._bar.update(step - self._bar.n)
    else:
      line = f'step {step}/{self.total_steps}' + ''.join(
          f' {name} {value}' for name, value in fields.items())
      steps_done = step - self._last_step
      if steps_done > 0:
        seconds_per_step = (now - self._last_time) / steps_done
        line += ' ETA ' + format_duration(
            seconds_per_step * (self.total_steps - step))
      logging.info('%s', line)
    self._last_step, self._last_time = step, now

  def close(self):
    if self._bar is not None:
      self._bar.close()
