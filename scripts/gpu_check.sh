#!/usr/bin/env bash
# The GPU check behind scripts/PERF.md: the PyTorch peer and our benchmark in one call on one card, most
# important first.
#
# Run from the repository root on a CUDA machine whose python3 has jax[cuda] and torch:
#   OUT=/tmp/gpu_check bash scripts/gpu_check.sh
# It needs files that are not in the repository (git-ignored; carry them to the device machine):
#   .whl/*.whl            packages the machine lacks (ml_collections), installed into /tmp/site;
#   .carry/torch_peer.py  a copy of ../shared/bench/torch_peer.py (the peer; ../shared does not travel);
#   .carry/baseline/      optional: the package before the optimisations of PERF.md, timed for comparison:
#                         mkdir -p .carry/baseline && git archive 5a5e8ec resunetpp_jax | tar -x -C .carry/baseline
# Every result line is appended to $OUT/results.jsonl as soon as it exists and all output goes to $OUT/log.txt,
# so a run stopped at its time limit still returns what it measured. GPU_CHECK_SECONDS (default 560) is the
# budget of the whole script: each item runs with what is left and is skipped when too little is.
# BENCH_FLAGS is appended to every benchmark command: a dry run on a CPU (the peer is skipped without CUDA):
#   OUT=/tmp/gpu_check BENCH_FLAGS='--hw=64x64 --filters=8,16,32,64,128 --steps=2 --warmup=1' \
#     bash scripts/gpu_check.sh
set -u -o pipefail

OUT=${OUT:?set OUT to the folder that receives the results}
REPO=$(pwd)
LOG=$OUT/log.txt
RESULTS=$OUT/results.jsonl
CACHE=/tmp/resunetpp_xla_cache
BASELINE_CACHE=/tmp/resunetpp_xla_cache_baseline
DEADLINE=$((SECONDS + ${GPU_CHECK_SECONDS:-560}))
export PYTHONUNBUFFERED=1 BENCH_FLAGS=${BENCH_FLAGS:-}
mkdir -p "$OUT"

# item NAME MAX_SECONDS COMMAND...: runs COMMAND with at most MAX_SECONDS (less if the deadline is nearer).
item() {
  local name=$1 limit=$2 left=$((DEADLINE - SECONDS))
  shift 2
  ((left < limit)) && limit=$left
  if ((limit < 30)); then
    echo "=== SKIPPED $name: ${left}s left" | tee -a "$LOG"
    return
  fi
  echo "=== $name (at most ${limit}s, $(date +%T))" | tee -a "$LOG"
  local start=$SECONDS
  # bash -c: the commands are the functions below (exported), which timeout cannot start by itself.
  timeout -k 10 "$limit" bash -c '"$@"' item "$@" 2>&1 | grep --line-buffered -v '^[IW][0-9]\{4\} ' | tee -a "$LOG"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start))s" | tee -a "$LOG"
}

ours() {  # Our benchmark on the repository's package.
  # shellcheck disable=SC2086  # BENCH_FLAGS is a list of flags.
  PYTHONPATH=$REPO:/tmp/site python3 "$REPO/scripts/benchmark.py" --out="$RESULTS" "$@" ${BENCH_FLAGS:-}
}

baseline() {  # The same benchmark script on the package before the optimisations.
  # shellcheck disable=SC2086
  PYTHONPATH=$REPO/.carry/baseline:/tmp/site python3 "$REPO/scripts/benchmark.py" --out="$RESULTS" \
    --compilation_cache_dir="$BASELINE_CACHE" --label=baseline "$@" ${BENCH_FLAGS:-}
}

peer() {
  if ! python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    echo "skipped: python3 has no torch with CUDA"
    return
  fi
  python3 "$REPO/.carry/torch_peer.py" --models resunetpp --out "$RESULTS" "$@"
}

setup() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
    --format=csv
  nproc
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$REPO"/.whl/*.whl
  PYTHONPATH=/tmp/site python3 -c 'import jax, flax, optax, ml_collections
print("jax", jax.__version__, jax.devices(), "flax", flax.__version__, "optax", optax.__version__)'
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'
}

save_cache() {
  tar -C /tmp -czf "$OUT/xla_cache.tar.gz" "$(basename "$CACHE")" && ls -la "$OUT/xla_cache.tar.gz"
}

save_traces() {  # The raw profiles, for reading on another machine (jax.profiler.ProfileData).
  local name trace
  for name in ours baseline; do
    trace=$(find "/tmp/profile_$name" -name '*.xplane.pb' 2>/dev/null | head -1)
    [[ -n $trace ]] && gzip -c "$trace" >"$OUT/profile_$name.xplane.pb.gz"
  done
  [[ -d /tmp/hlo ]] && tar -C /tmp -czf "$OUT/hlo.tar.gz" hlo
  ls -la "$OUT"
}

export OUT REPO RESULTS CACHE BASELINE_CACHE
export -f ours baseline peer setup save_cache

item setup 60 setup
item "peer amp_cl b8,b32" 120 peer --modes amp_cl --batches 8,32
item "ours bf16 b8,b32 (cold compile; profile of b8)" 400 \
  ours --batches=8,32 --dtypes=bfloat16 --noeval --compilation_cache_dir="$CACHE" --profile_dir=/tmp/profile_ours \
  --hlo_dir=/tmp/hlo
item "ours bf16 b8 again (cached start)" 60 \
  ours --batches=8 --dtypes=bfloat16 --noeval --compilation_cache_dir="$CACHE" --steps=10
save_traces 2>&1 | tee -a "$LOG"
item "peer compile b8" 260 peer --modes compile --batches 8
if [[ -d $REPO/.carry/baseline ]]; then
  item "baseline bf16 b8 (cold compile, profile)" 200 \
    baseline --batches=8 --dtypes=bfloat16 --noeval --profile_dir=/tmp/profile_baseline
fi
item "peer compile b32" 320 peer --modes compile --batches 32
item "ours eval bf16 b8,b32 (train from the cache)" 200 \
  ours --batches=8,32 --dtypes=bfloat16 --compilation_cache_dir="$CACHE" --steps=10
item "save cache" 60 save_cache
item "ours float32 b8,b32" 400 ours --batches=8,32 --dtypes=float32 --compilation_cache_dir="$CACHE" --noeval
save_traces 2>&1 | tee -a "$LOG"
echo "=== results" | tee -a "$LOG"
python3 - "$RESULTS" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
for line in open(sys.argv[1]):
  r = json.loads(line)
  if r.get('step') == 'profile':
    continue
  peer = 'mode' in r
  name = f"peer {r['mode']}" if peer else f"{r.get('label', 'ours')} {r['step']} {r['dtype']}"
  if 'error' in r:
    print(f"{name:<24} b{r['batch']}: {r['error'][:120]}")
    continue
  step_ms = 1e3 * r['step_s_median'] if peer else r['step_ms_median']
  start_s = r['warmup_s'] if peer else r['lower_s'] + r['compile_s']
  print(f"{name:<24} b{r['batch']:<3} {r['img_per_s']:8.1f} img/s {step_ms:7.1f} ms  compile/warm-up {start_s:6.1f} s")
EOF
