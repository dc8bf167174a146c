"""scripts/bench_app.py, tiny (2 clients, 4 requests), against the session's app: every mask right, numbers out."""
import json

import pytest

from scripts import bench_app

pytestmark = pytest.mark.slow


def test_bench_app_tiny_run_checks_every_mask(app_server, kvasir_images, tmp_path, capsys):
  out = tmp_path / 'bench.json'
  status = bench_app.main(['--url', app_server.url, '--server_pid', str(app_server.process.pid), '--clients=2',
                           '--requests=4', '--images=2', '--max_seconds=120', '--json', str(out)])
  numbers = json.loads(out.read_text())
  assert status == 0, numbers['failures']
  assert numbers['sent'] == numbers['ok'] == 4 and not numbers['failures']
  assert 0 < numbers['p50_ms'] <= numbers['p95_ms'] <= numbers['p99_ms']
  assert numbers['requests_per_s'] > 0 and numbers['peak_server_rss_mb'] > 100
  assert '4 of 4 requests answered with the right mask' in capsys.readouterr().out


def test_bench_app_counts_a_mixed_up_answer(app_server, kvasir_images, shipped_predictor):
  """The check can fail: answers compared with another image's mask are counted as failures."""
  paths = kvasir_images[:2]
  from resunetpp_jax.data import image_io  # pylint: disable=import-outside-toplevel
  expected = [shipped_predictor.predict_mask(image_io.read_image(p)) for p in paths]
  payloads = [(p.name, p.read_bytes()) for p in paths]
  result = bench_app.run_load(app_server.url, payloads, expected[::-1], clients=2, count=2, max_seconds=60)
  assert result['ok'] == 0 and len(result['failures']) == 2
  assert all('differs' in f for f in result['failures'])
