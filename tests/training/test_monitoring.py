"""MetricWriter read back through a real TensorBoard server; Progress output.

`tensorboard_server` starts `tensorboard --logdir=...` on a free port and
answers JSON queries against its HTTP API (TensorBoard 2.21's plugin routes),
so any test can check what a TensorBoard user would see for a logdir.
"""
import html
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import ml_collections
import numpy as np
from PIL import Image
import pytest

from helpers.tiny_runs import TRAINED_STEPS as TRAIN_STEPS
from resunetpp_jax.runtime import progress as progress_lib
from resunetpp_jax.training import monitoring

_START_TIMEOUT_S = 60
_DATA_TIMEOUT_S = 60


class TensorBoardServer:
  """A `tensorboard` subprocess serving one logdir on 127.0.0.1."""

  def __init__(self, logdir: str, log_path: str):
    self.logdir = logdir
    self._log_path = log_path
    self._log = open(log_path, 'w')
    self._process = subprocess.Popen(
        [sys.executable, '-m', 'tensorboard.main', f'--logdir={logdir}',
         '--host=127.0.0.1', '--port=0', '--reload_interval=1'],
        stdout=self._log, stderr=subprocess.STDOUT)
    self.url = self._wait_for_url()

  def _wait_for_url(self) -> str:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
      with open(self._log_path) as log:
        found = re.search(r'(http://127\.0\.0\.1:\d+)/', log.read())
      if found:
        return found.group(1)
      if self._process.poll() is not None:
        break
      time.sleep(0.2)
    with open(self._log_path) as log:
      raise RuntimeError(f'TensorBoard did not start:\n{log.read()}')

  def get(self, route: str, **params) -> bytes:
    query = f'?{urllib.parse.urlencode(params)}' if params else ''
    with urllib.request.urlopen(f'{self.url}{route}{query}', timeout=30) as r:
      return r.read()

  def get_json(self, route: str, **params):
    return json.loads(self.get(route, **params))

  def wait_for_json(self, route: str, ready, **params):
    """Polls `route` until `ready(answer)`: TensorBoard loads logdirs lazily."""
    deadline = time.monotonic() + _DATA_TIMEOUT_S
    answer = None
    while time.monotonic() < deadline:
      try:
        answer = self.get_json(route, **params)
        if ready(answer):
          return answer
      except urllib.error.HTTPError:
        pass  # Run or tag not loaded yet.
      time.sleep(0.5)
    raise AssertionError(f'{route} {params} never became ready; last: {answer}')

  def hparams_session_groups(self):
    request = {
        'startIndex': 0, 'sliceSize': 100, 'colParams': [],
        'allowedStatuses': ['STATUS_UNKNOWN', 'STATUS_SUCCESS',
                            'STATUS_FAILURE', 'STATUS_RUNNING'],
    }
    return self.get_json('/data/plugin/hparams/session_groups',
                         request=json.dumps(request))['sessionGroups']

  def close(self):
    self._process.kill()
    self._process.wait(timeout=30)
    self._log.close()


@pytest.fixture
def tensorboard_server(tmp_path):
  """Returns start(logdir) -> TensorBoardServer; every server is killed after."""
  servers = []

  def start(logdir) -> TensorBoardServer:
    server = TensorBoardServer(
        os.fspath(logdir), os.fspath(tmp_path / f'tensorboard{len(servers)}.log'))
    servers.append(server)
    return server

  yield start
  for server in servers:
    server.close()


def _config():
  config = ml_collections.ConfigDict()
  config.learning_rate = 1e-5
  config.filters = (4, 8, 16, 32, 64)
  config.loss = 'dice'
  config.deep_supervision = True
  config.data = ml_collections.ConfigDict({'image_size': (32, 48)})
  return config


def test_written_summaries_read_back_from_tensorboard(tmp_path,
                                                      tensorboard_server):
  logdir = tmp_path / 'logs'
  picture = np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8)
  writer = monitoring.MetricWriter(os.fspath(logdir), enabled=True)
  writer.write_config(_config(), metric_tags=['eval/dice'])
  for step, loss in ((10, 0.75), (20, 0.5), (30, 0.25)):
    writer.write_scalars(step, {'train/loss': loss,
                                'eval/dice': np.float32(step / 100)})
  writer.write_images(30, {'eval/overlays': picture})
  writer.close()

  server = tensorboard_server(logdir)
  assert server.wait_for_json('/data/runs', lambda runs: runs == ['.'])
  loss = server.wait_for_json('/data/plugin/scalars/scalars', bool,
                              tag='train/loss', run='.')
  assert [(step, value) for _, step, value in loss] == [
      (10, 0.75), (20, 0.5), (30, 0.25)]
  dice = server.get_json('/data/plugin/scalars/scalars', tag='eval/dice',
                         run='.')
  assert [step for _, step, _ in dice] == [10, 20, 30]
  np.testing.assert_allclose([value for _, _, value in dice],
                             [0.1, 0.2, 0.3], rtol=1e-6)

  images = server.wait_for_json('/data/plugin/images/images', bool,
                                tag='eval/overlays', run='.')
  assert [image['step'] for image in images] == [30]
  png = server.get('/data/plugin/images/individualImage?' + images[0]['query'])
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))),
                                picture)

  text = server.wait_for_json('/data/plugin/text/text', bool,
                              tag='config/text_summary', run='.')
  code_block = re.search(r'<pre><code>(.*)</code></pre>', text[0]['text'],
                         re.DOTALL)
  assert json.loads(html.unescape(code_block.group(1))) == {
      'learning_rate': 1e-5, 'filters': [4, 8, 16, 32, 64], 'loss': 'dice',
      'deep_supervision': True, 'data': {'image_size': [32, 48]}}

  (group,) = server.hparams_session_groups()
  assert group['hparams'] == {
      'learning_rate': 1e-5, 'filters': '[4, 8, 16, 32, 64]', 'loss': 'dice',
      'deep_supervision': True, 'data.image_size': '[32, 48]'}
  (metric,) = group['metricValues']
  assert metric['name']['tag'] == 'eval/dice'
  assert metric['trainingStep'] == 30
  assert metric['value'] == pytest.approx(0.3)


def test_a_training_run_reads_back_from_tensorboard(
    trained_workdir, tensorboard_server):  # pylint: disable=redefined-outer-name
  """The trainer's summaries (test_evaluate's tiny run) as TensorBoard shows them."""
  server = tensorboard_server(os.path.join(trained_workdir, 'tensorboard'))
  loss = server.wait_for_json('/data/plugin/scalars/scalars', bool,
                              tag='train/loss', run='.')
  assert [step for _, step, _ in loss] == [2, TRAIN_STEPS]
  assert all(np.isfinite(value) for _, _, value in loss)
  (dice,) = server.get_json('/data/plugin/scalars/scalars', tag='val/dice',
                            run='.')
  assert dice[1] == TRAIN_STEPS and 0.0 <= dice[2] <= 1.0

  (grid,) = server.wait_for_json('/data/plugin/images/images', bool,
                                 tag='val/image_truth_prediction', run='.')
  assert grid['step'] == TRAIN_STEPS
  png = server.get('/data/plugin/images/individualImage?' + grid['query'])
  # 2 rows (num_eval_images_logged) of 32x32 image | truth | prediction.
  assert np.asarray(Image.open(io.BytesIO(png))).shape == (
      2 * 32 + 4, 3 * 32 + 2 * 4, 3)

  (group,) = server.hparams_session_groups()
  assert group['hparams']['filters'] == '[8, 16, 32]'
  assert group['hparams']['image_size'] == '[32, 32]'


def test_disabled_writer_writes_nothing(tmp_path):
  logdir = tmp_path / 'logs'
  writer = monitoring.MetricWriter(os.fspath(logdir), enabled=False)
  writer.write_config(_config())
  writer.write_scalars(1, {'train/loss': 1.0})
  writer.write_images(1, {'eval/overlays': np.zeros((4, 4, 3), np.uint8)})
  writer.flush()
  writer.close()
  assert not logdir.exists()


def test_write_images_rejects_non_rgb_uint8(tmp_path):
  writer = monitoring.MetricWriter(os.fspath(tmp_path), enabled=True)
  with pytest.raises(ValueError, match="'eval/overlays' must be RGB uint8"):
    writer.write_images(1, {'eval/overlays': np.zeros((4, 4, 3), np.float32)})
  writer.close()


def test_flatten_config_dots_nested_keys_and_stringifies_sequences():
  assert monitoring.flatten_config(_config()) == {
      'learning_rate': 1e-5, 'filters': '[4, 8, 16, 32, 64]', 'loss': 'dice',
      'deep_supervision': True, 'data.image_size': '[32, 48]'}


@pytest.fixture
def fake_clock(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(progress_lib.time, 'monotonic', lambda: now[0])
  return now


def test_progress_logs_plain_lines_with_eta_when_not_a_terminal(
    caplog, fake_clock, monkeypatch):
  monkeypatch.setattr(sys, 'stderr', io.StringIO())  # Not a terminal.
  caplog.set_level(logging.INFO, logger='absl')
  progress = progress_lib.Progress(total_steps=1000, initial_step=200,
                                 steps_per_epoch=40, enabled=True)
  fake_clock[0] += 50.0  # 100 steps in 50 s: 0.5 s/step, 700 steps to go.
  progress.update(300, {'loss': 0.51234, 'dice': 0.25, 'images_per_second': 16})
  fake_clock[0] += 2.0  # 10 steps in 2 s: 0.2 s/step, 690 steps to go.
  progress.update(310, {'loss': 0.5, 'dice': 0.3, 'images_per_second': 40})
  progress.close()
  assert [r.getMessage() for r in caplog.records] == [
      'step 300/1000 epoch 7.50 loss 0.5123 dice 0.2500 img/s 16.0 ETA 05:50',
      'step 310/1000 epoch 7.75 loss 0.5000 dice 0.3000 img/s 40.0 ETA 02:18',
  ]
  assert sys.stderr.getvalue() == ''


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_progress_draws_a_bar_on_a_terminal(caplog, monkeypatch):
  terminal = _Terminal()
  monkeypatch.setattr(sys, 'stderr', terminal)
  caplog.set_level(logging.INFO, logger='absl')
  progress = progress_lib.Progress(total_steps=100, initial_step=0,
                                 steps_per_epoch=10, enabled=True)
  progress.update(25, {'loss': 0.5, 'dice': 0.75, 'images_per_second': 8})
  progress.close()
  last_frame = terminal.getvalue().split('\r')[-1]
  assert '25/100' in last_frame
  assert 'epoch=2.50, loss=0.5000, dice=0.7500, img/s=8.0' in last_frame
  assert not caplog.records


def test_disabled_progress_is_silent(caplog, monkeypatch):
  terminal = _Terminal()
  monkeypatch.setattr(sys, 'stderr', terminal)
  caplog.set_level(logging.INFO, logger='absl')
  progress = progress_lib.Progress(total_steps=100, initial_step=0,
                                 steps_per_epoch=10, enabled=False)
  progress.update(10, {'loss': 0.5, 'dice': 0.5, 'images_per_second': 8})
  progress.close()
  assert terminal.getvalue() == '' and not caplog.records
