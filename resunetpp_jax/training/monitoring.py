"""What a run shows in TensorBoard while it trains (its progress line: runtime.progress).

Only process 0 writes (the trainer passes `enabled=jax.process_index() == 0`);
on the other hosts the writer does nothing, so the training loop needs no
`if` around each call.
"""
from typing import Any
from typing import Mapping
from typing import Sequence

import ml_collections
import numpy as np
import tensorboardX
from tensorboardX import summary as tbx_summary

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
