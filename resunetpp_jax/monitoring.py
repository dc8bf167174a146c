"""What a run shows while it trains: TensorBoard summaries and a progress line.

Only process 0 writes (the trainer passes `enabled=jax.process_index() == 0`);
on the other hosts both classes do nothing, so the training loop needs no
`if` around each call.
"""
import sys
import time
from typing import Any, Mapping, Sequence

from absl import logging
import ml_collections
import numpy as np
import tensorboardX
from tensorboardX import summary as tbx_summary
import tqdm

CONFIG_TEXT_TAG = 'config'


def flatten_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Maps dotted key -> value in a form TensorBoard's hparams accept.

  Numbers, strings and booleans stay as they are; sequences (e.g. `filters`)
  become their text, so runs with different values still compare.
  """
  flat = {}

  def visit(prefix: str, value: Any):
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      for key in sorted(value.keys()):
        visit(f'{prefix}{key}.', value[key])
    elif isinstance(value, (bool, int, float, str)):
      flat[prefix[:-1]] = value
    elif value is None:
      flat[prefix[:-1]] = 'None'
    else:
      flat[prefix[:-1]] = str(list(value) if isinstance(value, tuple) else
                              value)

  visit('', config)
  return flat


class MetricWriter:
  """TensorBoard summaries under `logdir`, written through tensorboardX.

  Attributes:
    logdir: the folder the event files go to.
    enabled: False on every process but 0; then every method does nothing.
  """

  def __init__(self, logdir: str, enabled: bool):
    self.logdir = logdir
    self.enabled = enabled
    self._writer = (tensorboardX.SummaryWriter(logdir, flush_secs=30)
                    if enabled else None)

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    """One point per tag at `step`; values may be numpy or jax scalars."""
    if not self.enabled:
      return
    for tag, value in scalars.items():
      self._writer.add_scalar(tag, float(value), int(step))

  def write_images(self, step: int, images: Mapping[str, np.ndarray]):
    """One RGB uint8 (H, W, 3) picture per tag at `step`."""
    if not self.enabled:
      return
    for tag, image in images.items():
      image = np.asarray(image)
      if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f'Image {tag!r} must be RGB uint8 (H, W, 3), got'
                         f' {image.dtype} {image.shape}.')
      self._writer.add_image(tag, image, int(step), dataformats='HWC')

  def write_config(self, config: ml_collections.ConfigDict,
                   metric_tags: Sequence[str] = ()):
    """Records the run's configuration as text and as hyperparameters.

    The text (JSON) is the exact config to read back; the hyperparameters let
    TensorBoard's HParams dashboard compare runs of a common logdir.

    Args:
      config: the run's configuration.
      metric_tags: scalar tags (e.g. 'eval/dice') the HParams dashboard shows
        next to each run's hyperparameters (their last value).
    """
    if not self.enabled:
      return
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    # Indented by 4 spaces: Markdown shows it as a code block, keys unmangled.
    self._writer.add_text(CONFIG_TEXT_TAG, _markdown_code(text), 0)
    experiment, session_start, _ = tbx_summary.hparams(
        flatten_config(config), {tag: 0.0 for tag in metric_tags})
    file_writer = self._writer._get_file_writer()  # pylint: disable=protected-access
    file_writer.add_summary(experiment)
    file_writer.add_summary(session_start)

  def flush(self):
    if self.enabled:
      self._writer.flush()

  def close(self):
    if self.enabled:
      self._writer.close()


def _markdown_code(text: str) -> str:
  return '\n'.join('    ' + line for line in text.splitlines())


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
