r"""Load on `resunetpp app`'s HTTP API: concurrent clients POST real Kvasir-SEG images to /api/segment.

  python -m scripts.bench_app --clients=16 --requests=64 --max_seconds=300
  python -m scripts.bench_app --url=http://127.0.0.1:7860 --server_pid=PID --clients=16 --requests=256

(from the repository root). Without --url it starts `python -m resunetpp_jax.app` (the shipped model, or
--model) on a free loopback port with --queue_size=--clients, waits for /api/health, and stops it at the end.
Before the load it computes every image's mask once with its own Predictor (the same model, in this process).
Then --clients threads send --requests requests in all (image k % --images), and stop sending after
--max_seconds. Each answer's PNG mask must equal its image's own mask: a lost, failed or mixed-up answer is
counted and makes the exit status 1. Prints requests/s, latency p50/p95/p99 and the server's peak RSS
(VmHWM of /proc/PID/status). A benchmark, not a test (tests/app/test_bench_app.py runs it tiny).
"""
import argparse
import concurrent.futures
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image
import requests

REPO_DIR = pathlib.Path(__file__).resolve().parents[1]
KVASIR = REPO_DIR.parent / 'shared' / 'data' / 'Kvasir-SEG' / 'images'


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--clients', type=int, default=16)
  parser.add_argument('--requests', type=int, default=64, help='Requests in all, over all clients.')
  parser.add_argument('--max_seconds', type=float, default=300.0, help='No new request after this.')
  parser.add_argument('--images', type=int, default=8, help='Distinct Kvasir-SEG images sent in turn.')
  parser.add_argument('--image_dir', default=str(KVASIR))
  parser.add_argument('--url', default=None, help='A running app; default: start one.')
  parser.add_argument('--server_pid', type=int, default=None, help='With --url: its process, for the RSS.')
  parser.add_argument('--model', default=None, help='The model file the app serves (default: shipped).')
  parser.add_argument('--concurrency', type=int, default=1, help="The started app's --concurrency.")
  parser.add_argument('--json', default=None, help='Also write the numbers to this JSON file.')
  return parser.parse_args(argv)


def peak_rss_mb(pid: int | None) -> float:
  if pid is None:
    return float('nan')
  for line in pathlib.Path(f'/proc/{pid}/status').read_text().splitlines():
    if line.startswith('VmHWM:'):
      return int(line.split()[1]) / 1024
  return float('nan')


def start_server(args, log_path: str) -> tuple[subprocess.Popen, str]:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  command = [sys.executable, '-m', 'resunetpp_jax.app', f'--port={port}', f'--queue_size={args.clients}',
             f'--concurrency={args.concurrency}'] + ([f'--model={args.model}'] if args.model else [])
  env = {**os.environ, 'PYTHONPATH': f'{REPO_DIR}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
         'GRADIO_ANALYTICS_ENABLED': 'False'}
  with open(log_path, 'w') as log:
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
  return process, f'http://127.0.0.1:{port}'


def wait_ready(url: str, process: subprocess.Popen | None, timeout_s: float = 300.0):
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if process is not None and process.poll() is not None:
      raise RuntimeError(f'The app exited with {process.returncode} before it was ready.')
    try:
      if requests.get(f'{url}/api/health', timeout=2).status_code == 200:
        return
    except requests.ConnectionError:
      pass
    time.sleep(0.5)
  raise RuntimeError(f'{url}/api/health was not 200 within {timeout_s:.0f} s.')


def run_load(url: str, payloads: list[tuple[str, bytes]], expected: list[np.ndarray], clients: int,
             count: int, max_seconds: float) -> dict:
  """Sends `count` requests from `clients` threads; latencies of the correct answers and the failures."""
  lock = threading.Lock()
  next_index = [0]
  latencies, failures = [], []
  start = time.monotonic()
  local = threading.local()

  def take() -> int | None:
    with lock:
      if next_index[0] >= count or time.monotonic() - start > max_seconds:
        return None
      next_index[0] += 1
      return next_index[0] - 1

  def client():
    local.session = requests.Session()
    while (index := take()) is not None:
      k = index % len(payloads)
      name, data = payloads[k]
      sent = time.monotonic()
      try:
        answer = local.session.post(f'{url}/api/segment', files={'image': (name, data)}, timeout=600)
      except requests.RequestException as e:
        with lock:
          failures.append(f'request {index} ({name}): {e}')
        continue
      took = time.monotonic() - sent
      if answer.status_code != 200:
        problem = f'request {index} ({name}): HTTP {answer.status_code} {answer.text[:200]}'
      else:
        mask = np.asarray(Image.open(io.BytesIO(answer.content))) == 255
        problem = None if mask.shape == expected[k].shape and np.array_equal(mask, expected[k]) else (
            f'request {index} ({name}): the mask differs from the image\'s own mask')
      with lock:
        (failures.append(problem) if problem else latencies.append(took))

  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    for future in [pool.submit(client) for _ in range(clients)]:
      future.result()
  elapsed = time.monotonic() - start
  return {'sent': next_index[0], 'ok': len(latencies), 'failures': failures, 'seconds': elapsed,
          'latencies': latencies}


def main(argv=None) -> int:
  args = parse_args(argv)
  paths = sorted(pathlib.Path(args.image_dir).glob('*.jpg'))[:args.images]
  if not paths:
    print(f'No .jpg images in {args.image_dir}.', file=sys.stderr)
    return 2
  sys.path.insert(0, str(REPO_DIR))
  from resunetpp_jax.data import image_io  # pylint: disable=import-outside-toplevel
  from resunetpp_jax.inference import predictor as predictor_lib  # pylint: disable=import-outside-toplevel

  process, log_dir = None, tempfile.mkdtemp(prefix='bench_app_')
  url, pid = args.url, args.server_pid
  if url is None:
    process, url = start_server(args, os.path.join(log_dir, 'server.log'))
    pid = process.pid
  try:
    # Meanwhile the expected masks, computed once, by a Predictor of this process.
    predictor = predictor_lib.Predictor.from_flags(None, args.model, 'best', 1)
    expected = [predictor.predict_mask(image_io.read_image(str(path))) for path in paths]
    payloads = [(path.name, path.read_bytes()) for path in paths]
    wait_ready(url, process)
    result = run_load(url, payloads, expected, args.clients, args.requests, args.max_seconds)
    rss = peak_rss_mb(pid)
  except Exception:
    print(f'The server\'s log: {log_dir}/server.log', file=sys.stderr)
    raise
  else:
    shutil.rmtree(log_dir, ignore_errors=True)
  finally:
    if process is not None:
      process.terminate()
      process.wait(timeout=60)
  latencies = np.array(result.pop('latencies') or [np.nan]) * 1000
  numbers = {'clients': args.clients, 'requests': args.requests, **result,
             'requests_per_s': result['ok'] / result['seconds'],
             'p50_ms': float(np.percentile(latencies, 50)), 'p95_ms': float(np.percentile(latencies, 95)),
             'p99_ms': float(np.percentile(latencies, 99)), 'peak_server_rss_mb': rss,
             'images': [p.name for p in paths]}
  print(f'{numbers["ok"]} of {numbers["sent"]} requests answered with the right mask ({args.requests} asked,'
        f' {args.clients} clients) in {numbers["seconds"]:.1f} s: {numbers["requests_per_s"]:.2f} requests/s;'
        f' latency p50 {numbers["p50_ms"]:.0f} ms, p95 {numbers["p95_ms"]:.0f} ms, p99 {numbers["p99_ms"]:.0f} ms;'
        f' peak server RSS {rss:.0f} MB.')
  for failure in result['failures'][:10]:
    print(f'FAILED: {failure}')
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(numbers, f, indent=2)
  return 0 if not result['failures'] and result['ok'] == result['sent'] else 1


if __name__ == '__main__':
  sys.exit(main())
