#!/usr/bin/env bash
# The GPU check behind docs/records/PERF.md: the PyTorch peer and our benchmark in one call on one card, most
# important first.
#
# Run from the repository root on a CUDA machine whose python3 has jax[cuda] and torch:
#   OUT=/tmp/gpu_check bash tools/device/gpu_check.sh
# It needs files that are not in the repository (git-ignored; carry them to the device machine):
#   .whl/*.whl            packages the machine lacks (ml_collections), installed into /tmp/site;
#   .carry/torch_peer.py  a copy of ../shared/bench/torch_peer.py (the peer; ../shared does not travel);
#   .carry/<name>/        optional: earlier versions of the package, timed beside this one under that label:
#                         mkdir -p .carry/baseline && git archive <commit> resunetpp_jax | tar -x -C .carry/baseline
#                         (GPU_CHECK_VARIANTS, default 'baseline', names them in the order they run).
# Every result line is appended to $OUT/results.jsonl as soon as it exists and all output goes to $OUT/log.txt,
# so a run stopped at its time limit still returns what it measured. GPU_CHECK_SECONDS (default 540) is the
# budget of the whole script: each item runs with what is left and is skipped when too little is. All of our
# runs share one compilation cache, so later variants reuse the cuDNN/GEMM autotuning of the first.
# torch.compile's warm-up (minutes of CPU) runs in the background on the upper half of the CPU cores; everything
# timed runs on the lower half. Its timed steps wait for a gate and run alone
# (tools/device/peer_gated.py).
# BENCH_FLAGS is appended to every benchmark command: a dry run on a CPU (the peer is skipped without CUDA):
#   OUT=/tmp/gpu_check BENCH_FLAGS='--hw=64x64 --filters=8,16,32,64,128 --steps=2 --warmup=1' \
#     bash tools/device/gpu_check.sh
set -u -o pipefail

OUT=${OUT:?set OUT to the folder that receives the results}
REPO=$(pwd)
LOG=$OUT/log.txt
RESULTS=$OUT/results.jsonl
CACHE=/tmp/resunetpp_xla_cache
DEADLINE=$((SECONDS + ${GPU_CHECK_SECONDS:-540}))
VARIANTS=${GPU_CHECK_VARIANTS-baseline}  # Set but empty: no variants.
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
  # shellcheck disable=SC2086  # FOREGROUND is a command prefix.
  timeout -k 10 "$limit" $FOREGROUND bash -c '"$@"' item "$@" 2>&1 | grep --line-buffered -v '^[IW][0-9]\{4\} ' | tee -a "$LOG"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start))s" | tee -a "$LOG"
}

bench() {  # bench PACKAGE_DIR LABEL FLAGS...: our benchmark script on the package found in PACKAGE_DIR.
  local package=$1 label=$2
  shift 2
  # shellcheck disable=SC2086  # BENCH_FLAGS is a list of flags.
  PYTHONPATH=$package:/tmp/site python3 "$REPO/scripts/benchmark.py" --out="$RESULTS" --label="$label" \
    --compilation_cache_dir="$CACHE" --noeval --dtypes=bfloat16 "$@" ${BENCH_FLAGS:-}
}

peer() {  # The peer's own command line, for measurements that run alone.
  ((HAS_CUDA_TORCH)) || { echo "skipped: python3 has no torch with CUDA"; return; }
  python3 "$REPO/.carry/torch_peer.py" --models resunetpp --out "$RESULTS" "$@"
}

# peer_start NAME MODE BATCH: the peer in the background, compiling while our items run; its timed steps wait
# for the gate that peer_finish opens (tools/device/peer_gated.py), so they never share the GPU with ours.
peer_start() {
  ((HAS_CUDA_TORCH)) || { echo "=== peer $1: skipped, python3 has no torch with CUDA" | tee -a "$LOG"; return; }
  echo "=== peer $1 started in the background ($(date +%T))" | tee -a "$LOG"
  # shellcheck disable=SC2086  # BACKGROUND is a command prefix.
  TORCHINDUCTOR_COMPILE_THREADS=$COMPILE_THREADS timeout -k 10 600 $BACKGROUND python3 "$REPO/tools/device/peer_gated.py" \
    --peer="$REPO/.carry/torch_peer.py" --mode="$2" --batch="$3" --gate="/tmp/gate_$1" --out="$RESULTS" \
    >"$OUT/peer_$1.log" 2>&1 &
  echo $! >"/tmp/peer_$1.pid"
}

peer_finish() {  # peer_finish NAME: opens the gate and waits for the peer (until the deadline).
  [[ -f /tmp/peer_$1.pid ]] || return
  local pid start=$SECONDS
  pid=$(cat "/tmp/peer_$1.pid")
  touch "/tmp/gate_$1"
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < DEADLINE)); do sleep 1; done
  kill "$pid" 2>/dev/null && echo "=== peer $1: stopped at the deadline" | tee -a "$LOG"
  echo "=== peer $1 finished after waiting $((SECONDS - start))s for it" | tee -a "$LOG"
  grep -v '^[IW][0-9]\{4\} ' "$OUT/peer_$1.log" | tail -5 | tee -a "$LOG"
}

setup() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
    --format=csv
  echo "CPU cores: $CORES (timed items run on ${FOREGROUND:-all of them})"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$REPO"/.whl/*.whl
  PYTHONPATH=/tmp/site python3 -c 'import jax, flax, optax, ml_collections
print("jax", jax.__version__, jax.devices(), "flax", flax.__version__, "optax", optax.__version__)'
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'
}

save_artifacts() {  # The profile and optimised HLO of our first measurement, for reading on another machine.
  local trace
  trace=$(find /tmp/profile_ours -name '*.xplane.pb' 2>/dev/null | head -1)
  [[ -n $trace ]] && gzip -c "$trace" >"$OUT/profile_ours.xplane.pb.gz"
  [[ -d /tmp/hlo ]] && tar -C /tmp -czf "$OUT/hlo.tar.gz" hlo
  ls -la "$OUT"
}

# The CPU cores split in two halves (taskset), so that torch.compile's background compile does not slow what is
# timed: the peer's eager steps are partly bound by its Python dispatch, ours by XLA's launches.
CORES=$(nproc)
FOREGROUND='' BACKGROUND='' COMPILE_THREADS=$(((CORES + 3) / 4))
if command -v taskset >/dev/null && ((CORES >= 4)); then
  FOREGROUND="taskset -c 0-$((CORES / 2 - 1))"
  BACKGROUND="taskset -c $((CORES / 2))-$((CORES - 1))"
fi
# Asked once: importing torch takes seconds, and the peer's items are on the call's critical path.
HAS_CUDA_TORCH=0
python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null && HAS_CUDA_TORCH=1
export OUT REPO RESULTS CACHE CORES FOREGROUND HAS_CUDA_TORCH
# Our runs allocate as they go (no 75% preallocation), so a peer can run beside them.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export -f bench peer setup

item setup 60 setup
item "peer amp_cl b8" 90 peer --modes amp_cl --batches 8 --steps 20 --warmup 3
item "peer amp_cl b32" 120 peer --modes amp_cl --batches 32 --steps 20 --warmup 3
# torch.compile's warm-up took 240 s (batch 8) on 4 threads on the H100 host (2026-11-27): it compiles in the
# background while ours run, and only its timed steps wait for the GPU to be free. It starts after the peer's eager
# batch 32 (60 GiB): started beside it, its first compiled step ran out of memory on the H100.
peer_start compile_b8 compile 8
peer_start compile_b32 compile 32
item "ours b8 (cold compile, profile)" 170 \
  bench "$REPO" ours --batches=8 --profile_dir=/tmp/profile_ours --hlo_dir=/tmp/hlo
save_artifacts 2>&1 | tee -a "$LOG"
item "ours b8 again (cached start)" 60 bench "$REPO" ours --batches=8 --steps=10
item "ours b32 (cold compile)" 180 bench "$REPO" ours --batches=32
for variant in $VARIANTS; do
  [[ -d $REPO/.carry/$variant ]] &&
    item "$variant b8" 75 bench "$REPO/.carry/$variant" "$variant" --batches=8 --profile_dir="/tmp/profile_$variant"
done
peer_finish compile_b8
peer_finish compile_b32
echo "=== results" | tee -a "$LOG"
python3 "$REPO/tools/device/gpu_check_table.py" "$RESULTS" 2>&1 | tee -a "$LOG"
