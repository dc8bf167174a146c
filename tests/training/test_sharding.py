"""Data parallelism: the sharded computation equals the single-device one.

Each check runs in fresh subprocesses, since the device count (XLA_FLAGS) and the
process group are fixed when JAX starts.
"""
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
WORKER = REPO / 'tests' / 'helpers' / 'distributed_worker.py'


def _run(args, extra_env=None, timeout=300):
  env = {**os.environ, 'PYTHONPATH': str(REPO), 'JAX_PLATFORMS': 'cpu', **(extra_env or {})}
  return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _wait(proc, timeout=300):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-4000:]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_gradient_sharded_over_four_devices_equals_one_device(tmp_path):
  out = tmp_path / 'grads.npz'
  _wait(_run(['grads', str(out)], {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}))
  data = np.load(out)
  np.testing.assert_allclose(data['loss4'], data['loss1'], rtol=1e-6)
  names = [k[1:] for k in data.files if k.startswith('1')]
  assert len(names) > 50  # Every parameter of the network, not a subset.
  scale = max(np.abs(data['1' + n]).max() for n in names)
  assert scale > 0
  for name in names:
    # Only the order of the floating-point sums differs. Biases feeding a BatchNorm
    # have gradients that are pure rounding noise, hence an absolute floor.
    np.testing.assert_allclose(data['4' + name], data['1' + name], rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.slow
def test_two_processes_take_the_same_step_as_one(tmp_path):
  single, multi = tmp_path / 'single.npz', tmp_path / 'multi.npz'
  port = _free_port()
  # All three at once: a process spends most of its start single-threaded (imports, tracing).
  procs = [_run(['step', str(single)])] + [_run(['step', str(multi), str(port), str(i), '2']) for i in range(2)]
  for proc in procs:
    _wait(proc)
  a, b = np.load(single), np.load(multi)
  np.testing.assert_allclose(b['loss'], a['loss'], rtol=1e-5)
  np.testing.assert_allclose(b['dice_sum'], a['dice_sum'], rtol=1e-5)
  assert set(a.files) == set(b.files)
  for name in a.files:
    np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6, err_msg=name)
