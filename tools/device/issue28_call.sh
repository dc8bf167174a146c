#!/usr/bin/env bash
# Issue 28, part 2: the GPU calls, in order, one STAGE per device call (each fits the 600-s limit of one command).
# A sketch that runs, not a finished campaign: see docs/records/ablation_resunetpp.md, "What remains".
#
# Prepare here first, as for tools/device/train_polyp.sh (its header): .whl/ (fetch_wheels.sh), .carry/data
# (make_carry_data), and a throw-away branch without the 18 MB shipped weights for the training stages only (the
# fps stage needs them: it times the shipped model; carry [".whl"] alone then).
#
#   STAGE=fps       bash tools/device/issue28_call.sh  # ~3-4 min on one H100/H200, carry [".whl"]
#   STAGE=train100  bash tools/device/issue28_call.sh  # the UNet++ recipe at 100 epochs, carry [".carry", ".whl"]
#   STAGE=train100  bash tools/device/issue28_call.sh  # again at once on the still-warm machine: it resumes
#   STAGE=ablation SWITCH=--config.resunetpp_attention=none bash tools/device/issue28_call.sh  # part 1's verdict
#
# fps: predict_proba of the shipped model on random 1080x1920 frames, batch 1 and 8, float32 and bfloat16
#   (tools/device/predict_fps.py; one JSON line each in $OUT/fps.jsonl).
# train100: configs/polyp.py (the UNet++) with num_epochs=100 (8,100 steps; 45 epochs took 6.2 min on one H200,
#   so ~14 min: two calls), checkpoints every 500 steps so the second call loses little; the call's 600 s end the
#   first process (SIGTERM at 560 s: it checkpoints), the second call resumes from the workdir the warm machine kept.
#   Results come back as train_polyp.sh's (model.part-*, run.json, events); compare on the carve-out only
#   (`resunetpp evaluate --validation`), against the shipped model's .870.
# ablation: the ResUNet++ under the full recipe with one switch of part 1 (the confirmed one), then the same
#   without the switch if time is left, to compare on the carve-out (bar: +.01 mDice, RECIPES.md run 18).
# Multi-scale training (PraNet's rescaling of each batch by 0.75/1/1.25) is not in the package yet: no stage.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/issue28_out}
mkdir -p "$OUT"
STAGE=${STAGE:?set STAGE=fps, train100 or ablation}

if ! python3 -c 'import tensorflow_datasets, grain, albumentations, ml_collections, tensorboardX' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi

case $STAGE in
  fps)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT/gpu.txt" 2>&1
    timeout --signal=TERM 540 python3 -m tools.device.predict_fps --height=1080 --width=1920 --frames=64 \
      --batches=1,8 --dtypes=float32,bfloat16 >"$OUT/fps.jsonl" 2>"$OUT/fps.log"
    status=$?
    cat "$OUT/fps.jsonl"; tail -5 "$OUT/fps.log"
    exit $status
    ;;
  train100)
    # train_polyp.sh runs the recipe's run without a deadline; bound it here so that it checkpoints before the
    # call's limit. POLYP_WORKDIR stays the same so that the second call resumes.
    POLYP_OVERRIDES="--config.num_epochs=100 --config.checkpoint_every_steps=500 ${POLYP_OVERRIDES:-}" \
      POLYP_THEN='' POLYP_WORKDIR=workdirs/polyp100 OUT=$OUT timeout --signal=TERM 560 \
      bash tools/device/train_polyp.sh
    ;;
  ablation)
    POLYP_OVERRIDES="--config.model=resunetpp ${SWITCH:?set SWITCH=--config.resunetpp_...} ${POLYP_OVERRIDES:-}" \
      POLYP_THEN='' POLYP_WORKDIR=workdirs/ablation_gpu OUT=$OUT timeout --signal=TERM 560 \
      bash tools/device/train_polyp.sh
    ;;
  *) echo "unknown STAGE=$STAGE"; exit 2 ;;
esac
