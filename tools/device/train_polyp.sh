#!/usr/bin/env bash
# The GPU call of the shipped model: trains configs/polyp.py on the carried data, returns the model and its curves.
#
# Prepare here (once per checkout; both folders are git-ignored):
#   bash tools/device/fetch_wheels.sh                 # .whl/: the 18 MB of wheels the GPU image lacks
#   python -m tools.device.make_carry_data            # .carry/data: 1612 pairs at 288x384, 36 MiB
# Dry-run here on the CPU (a few steps of a tiny network, then of a tiny U-Net; writes to /tmp/polyp_out; 1.3 min
# with data preparation and cold compiles, 24 s after, 2 CPU cores, 2026-12-04):
#   POLYP_OVERRIDES="--config.filters=8,16,32 --config.image_size=64,64 --config.num_train_steps=6 \
#     --config.eval_every_steps=3 --config.batch_size=4 --config.num_workers=0" bash tools/device/train_polyp.sh
# The shipped weights (18 MB, tracked) do not fit beside the data and wheels in the 64 MiB a call carries, and the
# GPU run does not need them: leave them behind on a throw-away branch for the call (session 17 did), then return:
#   git switch -c device-call && git rm -q resunetpp_jax/weights/polyp.safetensors && git commit -qm 'device call'
#   ... the device call: command "bash tools/device/train_polyp.sh", carry [".carry", ".whl"], timeout_s 600 ...
#   git switch main && git branch -D device-call
#
# The time the recipe's run leaves of the call goes to a baseline (POLYP_THEN, default unet; '' for none): the same
# command with --config.model=$POLYP_THEN on the data already prepared, stopped by SIGTERM (it checkpoints first) at
# POLYP_DEADLINE_S (540) seconds after the script's start if unfinished; it starts only if 90 s are left. Its minutes
# are not the recipe's (it queues behind the other run); its curve, to the step it reached, compares step for step
# (the same fixed schedule). A run stopped at the deadline resumes in a second call on the still-warm machine (its
# workdir and data stay; session 17 finished the UNet++ so, 69 s): POLYP_OVERRIDES="--config.model=M"
# POLYP_WORKDIR=<its workdir> POLYP_THEN= bash tools/device/train_polyp.sh (its parts then come back as model.part-*).
#
# $OUT gets, as the runs go (8 files at most; 8 come back): train.log (both runs), run.json (GPU, times, hashes),
# the TensorBoard events (events.out.tfevents.polyp and .unet), and each model file (float16 safetensors: ~17 MiB
# the UNet++, ~21 the ResUNet++, ~15 the U-Net) in parts of 15 MiB (model.part-*, unet.part-*), exported from the newest
# checkpoint every few minutes on the CPU and once more at each run's end. Then, here (DIR: the call's files_at):
#   python -m tools.device.join_model --parts=DIR --output=/tmp/gpu.safetensors    # checks the hash
#   python -m tools.device.join_model --parts=DIR --name=unet --output=/tmp/gpu_unet.safetensors  # the baseline
#   python -m resunetpp_jax.evaluate --model=/tmp/gpu.safetensors --config=configs/polyp.py --output_dir=/tmp/gpu_eval \
#     --manual_dirs=kvasir_seg=../shared/data/Kvasir-SEG,cvc_clinicdb=../shared/data/CVC-ClinicDB \
#     --datasets=kvasir_seg:pranet_test,cvc_clinicdb:pranet_test --table=markdown
#   python -m tools.release.model_card --model=/tmp/gpu.safetensors --eval_dir=/tmp/gpu_eval --machine="$(jq -r .gpu DIR/run.json)" \
#     --minutes="$(jq .minutes_to_final_checkpoint DIR/run.json)"
#   (the baseline: the same evaluate with --model=/tmp/gpu_unet.safetensors --output_dir=/tmp/gpu_unet_eval; if
#   run.json's then.stopped_at_deadline, report it as stopped at its step, not as the recipe's result)
#   Which model ships is decided on the validation carve-out, never the test sets: the same evaluate with
#   --validation instead of --datasets, for the new file and for the shipped one (no --model): .870 mDice, 2026-12-04.
#   cp /tmp/gpu.safetensors resunetpp_jax/weights/polyp.safetensors   # only if it beats the shipped one there
#   python -m tools.release.results_figures --run=DIR[,DIR2 of a resumed run] --images=../shared/data/Kvasir-SEG \
#     --names=... --output=docs/
# and rewrite the README's Results and Model card from the printed card.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/polyp_out}
WORKDIR=${POLYP_WORKDIR:-workdirs/polyp}
THEN=${POLYP_THEN-unet}
DEADLINE_S=${POLYP_DEADLINE_S:-540}
mkdir -p "$OUT"
rm -f /tmp/model.sha256 "/tmp/$THEN.sha256"  # A warm machine keeps /tmp: no hash of an earlier call's model.
script_start=$(date +%s.%N)

if ! python3 -c 'import tensorflow_datasets, grain, albumentations, ml_collections, tensorboardX' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU")

export_model() {  # $1: workdir, $2: name of the parts, $3: 'final' or 'periodic'. On the CPU, beside the training.
  JAX_PLATFORMS=cpu python3 -m resunetpp_jax.pretrained --workdir="$1" --checkpoint=latest \
    --output="/tmp/$2.safetensors" >>"$OUT/train.log" 2>&1 || return 0
  rm -f "$OUT/$2".part-*
  split -b 15M -d "/tmp/$2.safetensors" "$OUT/$2.part-"
  sha256sum "/tmp/$2.safetensors" | cut -d' ' -f1 >"/tmp/$2.sha256"
  echo "exported $2 ($3) $(date +%s.%N)" >>"$OUT/train.log"
}

copy_events() {  # $1: workdir, $2: the copy's suffix.
  for f in "$1"/tensorboard/events.*; do [ -f "$f" ] && cp "$f" "$OUT/events.out.tfevents.$2"; done
}

watch_run() {  # $1-$3 as train's. Events every 30 s; the newest checkpoint exported every 150 s, so a killed call
  local exported='' tick=0 latest  # still returns one.
  while sleep 30; do
    copy_events "$1" "$3"
    tick=$((tick + 1))
    latest=$(ls "$1/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
    if [ $((tick % 5)) -eq 0 ] && [ -n "$latest" ] && [ "$latest" != "$exported" ]; then
      export_model "$1" "$2" periodic && exported=$latest
    fi
  done
}

note_caches() {  # $1: 'before' or 'after' a run. Which on-disk cache fills while a fresh machine loses its first
  local dir size  # minute (docs/records/PERF.md, "Change 11 measured"): the CUDA driver's JIT cache is the first suspect.
  for dir in "${CUDA_CACHE_PATH:-$HOME/.nv/ComputeCache}" "$HOME/.cache/resunetpp_jax/xla" "$HOME/.triton/cache"; do
    size=$(du -sk "$dir" 2>/dev/null | cut -f1)
    echo "cache $1 the run: ${size:-0} KiB in $dir $(date +%s.%N)" >>"$OUT/train.log"
  done
}

train() {  # $1: workdir, $2: parts name, $3: events suffix, $4: seconds before SIGTERM (0: none); then extra flags.
  local workdir=$1 parts=$2 events=$3 seconds=$4 watcher status
  shift 4
  watch_run "$workdir" "$parts" "$events" &
  watcher=$!
  # No validation overlays in TensorBoard: 45 evaluations of 8 at 288x384 made the first call's events file 16+ MiB,
  # too large to come back; the scalars are what the curve needs.
  note_caches before
  # shellcheck disable=SC2086
  timeout --signal=TERM "$seconds" python3 -u -m resunetpp_jax.main --config=configs/polyp.py --workdir="$workdir" \
    --config.manual_dirs="kvasir_seg=$PWD/.carry/data/Kvasir-SEG,cvc_clinicdb=$PWD/.carry/data/CVC-ClinicDB" \
    --config.data_dir=/tmp/polyp_tfds --config.num_eval_images_logged=0 ${POLYP_OVERRIDES:-} "$@" \
    >>"$OUT/train.log" 2>&1
  status=$?
  train_end=$(date +%s.%N)  # Before the final export: the run's minutes end at its last checkpoint.
  note_caches after
  kill "$watcher" 2>/dev/null
  copy_events "$workdir" "$events"
  export_model "$workdir" "$parts" final
  return $status
}

minutes_between() { python3 -c "print(round(($2 - $1) / 60, 2))"; }

write_run_json() {  # $1: the baseline's entries (JSON, with a leading comma) or ''. Written after each run.
  cat >"$OUT/run.json" <<EOF
{"gpu": "$gpu", "exit_status": $status, "script_start": $script_start, "process_start": $train_start,
 "training_end": $trained, "minutes_to_final_checkpoint": $minutes,
 "model_sha256": "$(cat /tmp/model.sha256 2>/dev/null)"$1}
EOF
}

train_baseline() {  # The time the recipe's run left goes to $THEN (see the header).
  local left then_start then_status stopped
  left=$(python3 -c "print(int($script_start + $DEADLINE_S - $(date +%s.%N)))")
  if [ "$left" -lt 90 ]; then
    echo "No $THEN run: $left s left before the deadline, under 90." >>"$OUT/train.log"
    return
  fi
  then_start=$(date +%s.%N)
  train "${WORKDIR}_$THEN" "$THEN" "$THEN" "$left" --config.model="$THEN"
  then_status=$?
  stopped=$([ $then_status -eq 124 ] && echo true || echo false)
  write_run_json ", \"then\": {\"model\": \"$THEN\", \"exit_status\": $then_status, \"stopped_at_deadline\": \
$stopped, \"process_start\": $then_start, \"minutes\": $(minutes_between "$then_start" "$train_end")}, \
\"${THEN}_sha256\": \"$(cat "/tmp/$THEN.sha256" 2>/dev/null)\""
}

train_start=$(date +%s.%N)
train "$WORKDIR" model polyp 0
status=$?
trained=$train_end
minutes=$(minutes_between "$train_start" "$trained")
write_run_json ''
if [ -n "$THEN" ] && [ $status -eq 0 ]; then
  train_baseline
fi
cat "$OUT/run.json"
exit $status
