"""A running `resunetpp app` (the shipped model) on a free loopback port, once per test session and worker."""
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest
import requests

REPO_DIR = pathlib.Path(__file__).resolve().parents[2]

STARTUP_S = 240


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Server:
  def __init__(self, process: subprocess.Popen, url: str, tmpdir: pathlib.Path, log: pathlib.Path):
    self.process, self.url, self.tmpdir, self.log = process, url, tmpdir, log

  def rss_mb(self) -> float:
    for line in pathlib.Path(f'/proc/{self.process.pid}/status').read_text().splitlines():
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) / 1024
    return float('nan')


@pytest.fixture(scope='session')
def app_server(tmp_path_factory):
  """`python -m resunetpp_jax.app` with a 1 MB video limit; its TMPDIR is checked empty after it stops."""
  tmpdir = tmp_path_factory.mktemp('app_tmp')
  log = tmp_path_factory.mktemp('app_log') / 'server.log'
  port = free_port()
  env = {**os.environ, 'PYTHONPATH': f'{REPO_DIR}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
         'TMPDIR': str(tmpdir), 'GRADIO_ANALYTICS_ENABLED': 'False'}
  with open(log, 'w') as out:
    process = subprocess.Popen([sys.executable, '-m', 'resunetpp_jax.app', f'--port={port}', '--max_video_mb=1',
                                '--queue_size=32'], env=env, stdout=out, stderr=subprocess.STDOUT)
  server = Server(process, f'http://127.0.0.1:{port}', tmpdir, log)
  deadline = time.monotonic() + STARTUP_S
  while True:
    if process.poll() is not None:
      pytest.fail(f'The app exited with {process.returncode}:\n{log.read_text()[-3000:]}')
    try:
      if requests.get(f'{server.url}/api/health', timeout=2).status_code == 200:
        break
    except requests.ConnectionError:
      pass
    if time.monotonic() > deadline:
      process.kill()
      pytest.fail(f'The app was not ready in {STARTUP_S} s:\n{log.read_text()[-3000:]}')
    time.sleep(0.5)
  yield server
  process.terminate()
  process.wait(timeout=30)
  leftovers = [p for p in tmpdir.rglob('*') if p.is_file()]
  assert not leftovers, f'Uploads left behind after the app stopped: {leftovers[:5]}'


@pytest.fixture(scope='session')
def kvasir_images(shared_dir) -> list[pathlib.Path]:
  images = sorted((shared_dir / 'data' / 'Kvasir-SEG' / 'images').glob('*.jpg'))
  if not images:
    pytest.skip('Kvasir-SEG images are absent.')
  return images


@pytest.fixture(scope='session')
def shipped_predictor():
  from resunetpp_jax.inference import Predictor  # pylint: disable=import-outside-toplevel
  return Predictor.pretrained()
