#!/usr/bin/env bash
# The GPU call of the shipped model: trains configs/polyp.py on the carried data, returns the model and its curves.
#
# Prepare here (once per checkout; both folders are git-ignored):
#   bash scripts/device/fetch_wheels.sh                 # .whl/: the 18 MB of wheels the GPU image lacks
#   python -m scripts.device.make_carry_data            # .carry/data: 1612 pairs at 288x384, 36 MiB
# Dry-run here on the CPU (a few steps of a tiny network; writes to /tmp/polyp_out):
#   POLYP_OVERRIDES="--config.filters=8,16,32 --config.image_size=64,64 --config.num_train_steps=6 \
#     --config.eval_every_steps=3 --config.batch_size=4 --config.num_workers=0" bash scripts/device/train_polyp.sh
# Then one device call: command "bash scripts/device/train_polyp.sh", carry [".carry", ".whl"], timeout_s 600.
#
# $OUT gets, as the run goes (at most 8 files come back): train.log, run.json (GPU, times, hash), the TensorBoard
# events file, and the model file (float16 safetensors, ~21 MB) in parts of 15 MiB, exported from the newest
# checkpoint every few minutes on the CPU and once more at the end. Then, here (DIR: the call's files_at):
#   python -m scripts.device.join_model --parts=DIR --output=/tmp/gpu.safetensors    # checks the hash
#   python -m resunetpp_jax.evaluate --model=/tmp/gpu.safetensors --config=configs/polyp.py --output_dir=/tmp/gpu_eval \
#     --manual_dirs=kvasir_seg=../shared/data/Kvasir-SEG,cvc_clinicdb=../shared/data/CVC-ClinicDB \
#     --datasets=kvasir_seg:pranet_test,cvc_clinicdb:pranet_test --table=markdown
#   python -m scripts.model_card --model=/tmp/gpu.safetensors --eval_dir=/tmp/gpu_eval --machine="$(jq -r .gpu DIR/run.json)" \
#     --minutes="$(jq .minutes_to_final_checkpoint DIR/run.json)"
#   cp /tmp/gpu.safetensors resunetpp_jax/weights/polyp.safetensors   # only if it beats the shipped model's card
#   python -m scripts.results_figures --run=DIR --images=../shared/data/Kvasir-SEG --names=... --output=docs/
# and rewrite the README's Results and Model card from the printed card.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/polyp_out}
WORKDIR=${POLYP_WORKDIR:-workdirs/polyp}
mkdir -p "$OUT"
script_start=$(date +%s.%N)

if ! python3 -c 'import tensorflow_datasets, grain, albumentations, ml_collections, tensorboardX' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU")

export_model() {  # $1: 'final' or 'periodic'. On the CPU, beside the training process.
  JAX_PLATFORMS=cpu python3 -m resunetpp_jax.pretrained --workdir="$WORKDIR" --checkpoint=latest \
    --output=/tmp/polyp_model.safetensors >>"$OUT/train.log" 2>&1 || return 0
  rm -f "$OUT"/model.part-*
  split -b 15M -d /tmp/polyp_model.safetensors "$OUT/model.part-"
  sha256sum /tmp/polyp_model.safetensors | cut -d' ' -f1 >/tmp/polyp_model.sha256
  echo "exported ($1) $(date +%s.%N)" >>"$OUT/train.log"
}

copy_events() {
  for f in "$WORKDIR"/tensorboard/events.*; do [ -f "$f" ] && cp "$f" "$OUT/events.out.tfevents.polyp"; done
}

watch_run() {  # Events every 30 s; the newest checkpoint exported every 150 s, so a killed call still returns one.
  local exported='' tick=0
  while sleep 30; do
    copy_events
    tick=$((tick + 1))
    latest=$(ls "$WORKDIR/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
    if [ $((tick % 5)) -eq 0 ] && [ -n "$latest" ] && [ "$latest" != "$exported" ]; then
      export_model periodic && exported=$latest
    fi
  done
}
watch_run &
watcher=$!

train_start=$(date +%s.%N)
# shellcheck disable=SC2086
python3 -u -m resunetpp_jax.main --config=configs/polyp.py --workdir="$WORKDIR" \
  --config.manual_dirs="kvasir_seg=$PWD/.carry/data/Kvasir-SEG,cvc_clinicdb=$PWD/.carry/data/CVC-ClinicDB" \
  --config.data_dir=/tmp/polyp_tfds ${POLYP_OVERRIDES:-} >>"$OUT/train.log" 2>&1
status=$?
trained=$(date +%s.%N)
kill "$watcher" 2>/dev/null
copy_events
export_model final
cat >"$OUT/run.json" <<EOF
{"gpu": "$gpu", "exit_status": $status, "script_start": $script_start, "process_start": $train_start,
 "training_end": $trained, "minutes_to_final_checkpoint": $(python3 -c "print(round(($trained - $train_start) / 60, 2))"),
 "model_sha256": "$(cat /tmp/polyp_model.sha256 2>/dev/null)"}
EOF
cat "$OUT/run.json"
exit $status
