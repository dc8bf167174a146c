r"""Throughput, compile time and memory of the real training and evaluation steps, on random data.

  python -m scripts.benchmark --batches=8,32 --dtypes=bfloat16,float32 \
      --compilation_cache_dir=/tmp/xla_cache --out=bench.jsonl

(from the repository root; tools/device/gpu_check.sh runs it beside the PyTorch peer).

It times the code `main` runs, not a copy: the state comes from
`train_state.create_train_state`, the steps from `steps.jit_train_step` and
`steps.jit_eval_step`, compiled with `.lower(...).compile()` as `train.py` does,
and batches go through `sharding.global_batch` as uint8. Step times are medians
over `--steps` steps after `--warmup`, each step synchronised with
`block_until_ready`; `dispatch_ms_median` is how long the host took to hand a
step to the device, and `pipelined_img_per_s` the rate of steps launched back to
back (what the training loop gets). The persistent compilation cache is on (as in training):
run the same command twice and the second run's compile time shows the cache hit
(`cache_entries_added` is 0 then). One JSON line per measurement goes to `--out`;
a table goes to stdout. A benchmark, not a test.

On a CPU, use tiny shapes:
  python -m scripts.benchmark --hw=64x64 --batches=2 --filters=8,16,32,64,128 --steps=3
"""
import time

_PROCESS_START = time.perf_counter()  # Before the heavy imports: time to first step includes them.

# pylint: disable=g-import-not-at-top,wrong-import-position
import ast
import collections
import glob
import gzip
import json
import os
import re
import statistics
from typing import Any
from typing import Callable

from absl import app
from absl import flags
import jax
import numpy as np

from resunetpp_jax.config import defaults
from resunetpp_jax.runtime import compilation_cache
from resunetpp_jax.training import sharding
from resunetpp_jax.training import state as train_state
from resunetpp_jax.training import steps

_PROFILED_STEPS = 3

_BATCHES = flags.DEFINE_list('batches', ['8', '32'], 'Global batch sizes.')
_DTYPES = flags.DEFINE_list('dtypes', ['bfloat16', 'float32'], 'Compute dtypes (config.dtype).')
_HW = flags.DEFINE_string('hw', '288x384', 'Image height x width.')
_FILTERS = flags.DEFINE_list('filters', None, 'Filters per level (default: the config default).')
_STEPS = flags.DEFINE_integer('steps', 30, 'Timed steps per measurement.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps after the first one.')
_EVAL = flags.DEFINE_bool('eval', True, 'Also time the evaluation step.')
_OUT = flags.DEFINE_string('out', '', 'Append one JSON line per measurement to this file.')
_LABEL = flags.DEFINE_string('label', 'ours', 'Names this run in the JSON lines (e.g. baseline).')
_SET = flags.DEFINE_multi_string(
    'set', [], 'A config override KEY=VALUE (a Python literal or a bare string), e.g. '
    '--set=deep_supervision=False; repeatable. Recorded in the JSON lines.')
_CACHE_DIR = flags.DEFINE_string(
    'compilation_cache_dir', defaults.get_default_config().compilation_cache_dir,
    "Persistent compilation cache ('' disables it); a fresh folder measures a cold compile.")
_PROFILE_DIR = flags.DEFINE_string(
    'profile_dir', '', 'Trace a few train steps of the first measurement into this folder (jax.profiler).')
_HLO_DIR = flags.DEFINE_string(
    'hlo_dir', '', 'Write the optimised HLO of each freshly compiled train step here (gzipped text).')


def _config(batch_size: int, dtype: str, overrides: dict[str, Any]):
  config = defaults.get_default_config()
  height, width = (int(s) for s in _HW.value.lower().split('x'))
  config.image_size = (height, width)
  config.batch_size = batch_size
  config.dtype = dtype
  if _FILTERS.value:
    config.filters = tuple(int(f) for f in _FILTERS.value)
  config.compilation_cache_dir = _CACHE_DIR.value
  config.update(overrides)
  return config


def _overrides() -> dict[str, Any]:
  """--set's KEY=VALUE pairs; a key the config does not have is an error, not a silently added key."""
  known = defaults.get_default_config()
  overrides = {}
  for item in _SET.value:
    key, _, text = item.partition('=')
    if key not in known:
      raise app.UsageError(f'--set={item}: the config has no key {key!r} (README.md, "Configuration").')
    try:
      overrides[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      overrides[key] = text
  return overrides


def _random_batch(config, mesh, with_weight: bool) -> dict[str, jax.Array]:
  rng = np.random.default_rng(0)
  height, width = config.image_size
  local = {
      'image': rng.integers(0, 256, (config.batch_size, height, width, 3), dtype=np.uint8),
      'mask': (rng.random((config.batch_size, height, width, 1)) < 0.3).astype(np.uint8),
  }
  if with_weight:
    local['weight'] = np.ones((config.batch_size,), np.float32)
  return sharding.global_batch(local, mesh)


def _cache_entries() -> int:
  cache_dir = os.path.expanduser(_CACHE_DIR.value)
  return len(os.listdir(cache_dir)) if cache_dir and os.path.isdir(cache_dir) else 0


def _peak_memory_gib() -> float | None:
  """Peak device memory of this process so far (None where the backend does not report it)."""
  stats = jax.local_devices()[0].memory_stats()
  return stats['peak_bytes_in_use'] / 2**30 if stats and 'peak_bytes_in_use' in stats else None


def _compiled_facts(compiled) -> dict[str, float]:
  facts = {}
  memory = compiled.memory_analysis()
  if memory is not None:
    facts['compiled_temp_gib'] = memory.temp_size_in_bytes / 2**30
    facts['compiled_argument_gib'] = memory.argument_size_in_bytes / 2**30
  # XLA's cost model: bytes are the memory-traffic floor's input (PERF.md); on a GPU its flops leave out the
  # cuDNN convolutions, so they are no measure of the arithmetic there.
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  if cost and 'flops' in cost:
    facts['xla_flops_per_step'] = float(cost['flops'])
    facts['xla_bytes_accessed_per_step'] = float(cost.get('bytes accessed', 0.0))
  return facts


def _compile(jitted, *args) -> tuple[object, dict[str, float]]:
  entries = _cache_entries()
  start = time.perf_counter()
  lowered = jitted.lower(*args)
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  done = time.perf_counter()
  return compiled, {'lower_s': lowered_at - start, 'compile_s': done - lowered_at,
                    'cache_entries_added': _cache_entries() - entries}


def _time_steps(run_step, num_steps: int) -> tuple[list[float], list[float]]:
  """Seconds per step, each step synchronised, and seconds until each call returned (the host's dispatch)."""
  times, dispatch = [], []
  for _ in range(num_steps):
    start = time.perf_counter()
    out = run_step()
    dispatch.append(time.perf_counter() - start)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
  return times, dispatch


def _summary(timed: tuple[list[float], list[float]], batch_size: int) -> dict[str, float]:
  times, dispatch = timed
  median = statistics.median(times)
  return {'step_ms_median': 1e3 * median, 'step_ms_min': 1e3 * min(times),
          'step_ms_max': 1e3 * max(times), 'img_per_s': batch_size / median,
          'dispatch_ms_median': 1e3 * statistics.median(dispatch)}


def _category(kernel: str, hlo_op: str) -> str:
  """A coarse bucket for a device kernel: convolutions (cuDNN), matrix products, or XLA's own fusions."""
  name = f'{kernel} {hlo_op}'.lower()
  # XLA names fusions after their ops ('loop_convert_fusion'): 'conv' alone would count type conversions.
  if re.search(r'conv(?!ert)|cudnn|fprop|dgrad|wgrad|xmma', name):
    return 'convolution'
  if any(k in name for k in ('gemm', 'cublas', 'cutlass', 'nvjet', 'dot')):
    return 'matmul'
  if 'reduce' in name:
    return 'reduction fusion'
  if any(k in name for k in ('copy', 'transpose', 'memcpy', 'memset')):
    return 'copy/transpose'
  return 'elementwise fusion' if 'fusion' in name else 'other'


def _kernel_summary(profile_dir: str, num_steps: int) -> dict:
  """Device time per step by kernel and by category, read back from the jax.profiler trace just written."""
  paths = sorted(glob.glob(os.path.join(profile_dir, '**', '*.xplane.pb'), recursive=True), key=os.path.getmtime)
  if not paths:
    return {'error': f'no .xplane.pb under {profile_dir}'}
  totals = collections.defaultdict(lambda: [0, 0.0])  # (kernel, hlo op) -> [launches, seconds]
  for plane in jax.profiler.ProfileData.from_file(paths[-1]).planes:
    if not plane.name.startswith('/device:'):
      continue
    for line in plane.lines:
      if line.name.startswith('XLA'):  # 'XLA Ops' / 'XLA Modules' repeat the kernels' time.
        continue
      for event in line.events:
        stats = dict(event.stats)
        entry = totals[(event.name, str(stats.get('hlo_op', '')))]
        entry[0] += 1
        entry[1] += event.duration_ns * 1e-9
  by_category = collections.Counter()
  for (kernel, hlo_op), (_, seconds) in totals.items():
    by_category[_category(kernel, hlo_op)] += 1e3 * seconds / num_steps
  top = sorted(totals.items(), key=lambda item: -item[1][1])[:60]
  return {
      'device_ms_per_step': sum(by_category.values()),
      'ms_per_step_by_category': dict(by_category.most_common()),
      'top_kernels': [{'kernel': kernel[:160], 'hlo_op': hlo_op, 'launches_per_step': launches / num_steps,
                       'ms_per_step': 1e3 * seconds / num_steps}
                      for (kernel, hlo_op), (launches, seconds) in top],
  }


def _write_hlo(compiled, name: str):
  os.makedirs(_HLO_DIR.value, exist_ok=True)
  with gzip.open(os.path.join(_HLO_DIR.value, f'{name}.hlo.txt.gz'), 'wt') as f:
    f.write(compiled.as_text())


def measure_train(config, mesh, is_first: bool) -> tuple[dict, Callable[[], Any]]:
  """The train step's record, and a function that runs one more step (for profiling)."""
  graphdef, state = train_state.create_train_state(config, mesh, total_steps=1_000_000)
  compiled, record = _compile(steps.jit_train_step(config, graphdef, mesh), state, steps.batch_spec(config, mesh))
  record.update(_compiled_facts(compiled))
  batch = _random_batch(config, mesh, with_weight=False)

  def run_step():
    nonlocal state
    state, sums = compiled(state, batch)
    return sums

  start = time.perf_counter()
  first_sums = jax.block_until_ready(run_step())
  record['first_step_s'] = time.perf_counter() - start
  if is_first:
    record['process_start_to_first_step_s'] = time.perf_counter() - _PROCESS_START
  if _HLO_DIR.value and record['cache_entries_added']:
    _write_hlo(compiled, f'train_b{config.batch_size}_{config.dtype}')
  _time_steps(run_step, _WARMUP.value)
  times = _time_steps(run_step, _STEPS.value)
  record.update(_summary(times, config.batch_size))
  # Back-to-back steps without a host sync in between: what the training loop sees.
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    sums = run_step()
  jax.block_until_ready(sums)
  record['pipelined_img_per_s'] = _STEPS.value * config.batch_size / (time.perf_counter() - start)
  record['first_loss'] = float(first_sums['loss'])
  record['last_loss'] = float(sums['loss'])
  record['peak_gib_so_far'] = _peak_memory_gib()
  return record, run_step


def profile(run_step) -> dict:
  """Traces a few steps (after the timed ones, so the tracer cannot disturb them) and summarises the kernels."""
  jax.profiler.start_trace(_PROFILE_DIR.value)
  _time_steps(run_step, _PROFILED_STEPS)
  jax.profiler.stop_trace()
  return _kernel_summary(_PROFILE_DIR.value, _PROFILED_STEPS)


def measure_eval(config, mesh) -> dict:
  graphdef, state = train_state.create_train_state(config, mesh, total_steps=1)
  batch = _random_batch(config, mesh, with_weight=True)
  compiled, record = _compile(steps.jit_eval_step(graphdef, mesh), state, batch)
  start = time.perf_counter()
  jax.block_until_ready(compiled(state, batch))
  record['first_step_s'] = time.perf_counter() - start
  _time_steps(lambda: compiled(state, batch), _WARMUP.value)
  record.update(_summary(_time_steps(lambda: compiled(state, batch), _STEPS.value), config.batch_size))
  record['peak_gib_so_far'] = _peak_memory_gib()
  return record


def _emit(record: dict):
  line = json.dumps(record)
  print(line, flush=True)
  if _OUT.value:
    with open(_OUT.value, 'a') as f:
      f.write(line + '\n')


def _table(records: list[dict]) -> str:
  rows = [f'{"step":<6}{"dtype":<10}{"batch":>6}{"img/s":>9}{"ms/step":>9}{"pipelined img/s":>17}{"compile s":>11}'
          f'{"first step s":>14}{"peak GiB":>10}']
  for r in records:
    peak = r.get('peak_gib_so_far')
    pipelined = f'{r["pipelined_img_per_s"]:.1f}' if 'pipelined_img_per_s' in r else '-'
    rows.append(f'{r["step"]:<6}{r["dtype"]:<10}{r["batch"]:>6}{r["img_per_s"]:>9.1f}{r["step_ms_median"]:>9.1f}'
                f'{pipelined:>17}'
                f'{r["lower_s"] + r["compile_s"]:>11.1f}{r["first_step_s"]:>14.2f}'
                f'{"n/a" if peak is None else f"{peak:.1f}":>10}')
  return '\n'.join(rows)


def _print_kernel_summary(record: dict):
  summary = record['kernel_summary']
  if 'error' in summary:
    print(f'profile: {summary["error"]}')
    return
  print(f'Device time per train step ({record["dtype"]}, batch {record["batch"]}): '
        f'{summary["device_ms_per_step"]:.1f} ms')
  for category, ms in summary['ms_per_step_by_category'].items():
    print(f'  {category:<20}{ms:>8.2f} ms')
  for kernel in summary['top_kernels'][:15]:
    print(f'  {kernel["ms_per_step"]:>7.2f} ms {kernel["launches_per_step"]:>5.0f}x {kernel["hlo_op"][:30]:<30} '
          f'{kernel["kernel"][:70]}')


def main(argv):
  del argv
  compilation_cache.enable(_CACHE_DIR.value)
  mesh = sharding.create_mesh()
  device = jax.local_devices()[0]
  common = {'label': _LABEL.value, 'device': device.device_kind, 'num_devices': jax.device_count(),
            'jax': jax.__version__, 'hw': _HW.value, 'date': time.strftime('%Y-%m-%d'), 'overrides': _SET.value}
  records, profiled, overrides = [], None, _overrides()
  for dtype in _DTYPES.value:
    for batch_size in (int(b) for b in _BATCHES.value):
      config = _config(batch_size, dtype, overrides)
      base = dict(common, dtype=dtype, batch=batch_size, filters=list(config.filters))
      measured, run_step = measure_train(config, mesh, is_first=not records)
      records.append(dict(base, step='train', **measured))
      _emit(records[-1])
      if _PROFILE_DIR.value and profiled is None:
        profiled = dict(base, step='profile', kernel_summary=profile(run_step))
        _emit(profiled)
      del run_step  # Frees the training state before the next measurement.
      if _EVAL.value:
        records.append(dict(base, step='eval', **measure_eval(config, mesh)))
        _emit(records[-1])
  if profiled:
    _print_kernel_summary(profiled)
  print(f'{common["device"]}, {_HW.value}, median of {_STEPS.value} synchronised steps')
  print(_table(records))


if __name__ == '__main__':
  app.run(main)
