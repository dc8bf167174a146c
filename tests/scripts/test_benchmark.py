"""scripts/benchmark.py runs on a CPU (as CI does) and reports what PERF.md quotes; its kernel categories are right."""
import json
import math
import os
import subprocess
import sys

import pytest

from scripts import benchmark

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_benchmark_times_the_train_step_on_cpu_and_writes_json(tmp_path):
  out = tmp_path / 'bench.jsonl'
  subprocess.run(
      [sys.executable, '-m', 'scripts.benchmark', '--hw=32x32', '--filters=4,8,16', '--batches=2',
       '--dtypes=float32', '--steps=2', '--warmup=1', '--noeval', f'--out={out}',
       f'--compilation_cache_dir={tmp_path / "cache"}', '--set=learning_rate=0.01'],
      cwd=REPO, check=True, capture_output=True, timeout=300)
  (record,) = [json.loads(line) for line in out.read_text().splitlines()]
  assert (record['step'], record['batch'], record['dtype'], record['hw']) == ('train', 2, 'float32', '32x32')
  assert record['overrides'] == ['learning_rate=0.01']
  assert record['img_per_s'] == pytest.approx(2e3 / record['step_ms_median'])
  assert record['compile_s'] > 0 and record['cache_entries_added'] >= 1
  assert math.isfinite(record['first_loss']) and math.isfinite(record['last_loss'])
  assert record['last_loss'] != record['first_loss']  # The timed steps trained.


@pytest.mark.slow
def test_benchmark_rejects_an_unknown_override(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'scripts.benchmark', '--set=learning_rat=0.01', f'--out={tmp_path / "b.jsonl"}'],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert 'learning_rat' in result.stderr


@pytest.mark.parametrize('kernel,hlo_op,category', [
    ('sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc', 'cudnn-conv-bias-activation.213',
     'convolution'),
    ('void cudnn::cnn::dgrad2d_grouped_direct_kernel<__nv_bfloat16>', '', 'convolution'),
    ('loop_convert_fusion_2', 'loop_convert_fusion.2', 'elementwise fusion'),
    ('input_convert_reduce_fusion_3', 'command_buffer_909', 'reduction fusion'),
    ('nvjet_sm90_tst_160x192_64x4_1x2_h_bx_coopB_bias_TNN', 'cudnn-conv-bias-activation.268', 'convolution'),
    ('nvjet_sm90_tst_64x32_64x16_2x1_v_bz_splitK_NTT', 'custom-call.12', 'matmul'),
    ('memcpy32_post', 'command_buffer_1', 'copy/transpose'),
])
def test_kernel_categories(kernel, hlo_op, category):
  assert benchmark._category(kernel, hlo_op) == category  # pylint: disable=protected-access
