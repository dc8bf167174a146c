#!/usr/bin/env bash
# Issue 28, part 1: the ResUNet++ ablation queue at the CPU scale of RECIPES.md's runs 10-17 (base C at
# configs/polyp.py's learning rate 3e-3, i.e. run 13's recipe), one run at a time. Record and rule:
# docs/records/ablation_resunetpp.md.
#
#   setsid nohup tools/ablation_queue.sh > workdirs/ablation/queue.log 2>&1 &
#   tools/ablation_queue.sh baseline:0 attention_none:0      # only these runs, in this order
#
# Each item is NAME:SEED; NAME is a key of VARIANTS below. A run writes workdirs/ablation/NAME_sSEED/ and its log
# workdirs/ablation/NAME_sSEED.log (`grep 'validation:' LOG` gives the Dice at steps 100..400); a run whose log
# already reports step 400 is skipped, so the queue can be started again after an interruption (an interrupted
# run resumes from its last checkpoint, every 100 steps). Environment: PYTHON (default /work/main/.venv/bin/python),
# DATA_DIR (prepared TFDS datasets, default workdirs/tfds), SHARED (default /work/shared).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/work/main/.venv/bin/python}
DATA_DIR=${DATA_DIR:-$PWD/workdirs/tfds}
SHARED=${SHARED:-/work/shared}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
OUT=workdirs/ablation
mkdir -p "$OUT"

declare -A VARIANTS=(
  [baseline]=''
  [attention_none]='--config.resunetpp_attention=none'
  [downsample_pool]='--config.resunetpp_downsample=pool'
  [upsample_transpose]='--config.resunetpp_upsample=transpose'
  [block_plain]='--config.resunetpp_block=plain'
)
# Seed 0 of the baseline and of every variant; then seed 1 of the baseline. Seed 1 of the two most promising
# variants is added by hand once their seed-0 numbers exist (the rule in the record names them).
DEFAULT_QUEUE=(baseline:0 attention_none:0 downsample_pool:0 upsample_transpose:0 block_plain:0 baseline:1)
if [ $# -gt 0 ]; then QUEUE=("$@"); else QUEUE=("${DEFAULT_QUEUE[@]}"); fi

for item in "${QUEUE[@]}"; do
  name=${item%%:*}; seed=${item##*:}
  if [ -z "${VARIANTS[$name]+set}" ]; then echo "unknown variant $name (one of ${!VARIANTS[*]})"; exit 2; fi
  run=${name}_s${seed}
  log=$OUT/$run.log
  if grep -q 'step 400 validation:' "$log" 2>/dev/null; then echo "$(date -u +%FT%TZ) skip $run (done)"; continue; fi
  echo "$(date -u +%FT%TZ) start $run"
  start=$(date +%s)
  # shellcheck disable=SC2086  # the variant's flags are split on purpose
  nice -n 19 "$PYTHON" -m resunetpp_jax.main --config=configs/polyp.py --workdir="$OUT/$run" \
    --config.manual_dirs=kvasir_seg=$SHARED/data/Kvasir-SEG,cvc_clinicdb=$SHARED/data/CVC-ClinicDB \
    --config.data_dir="$DATA_DIR" \
    --config.image_size='(64,64)' --config.filters='(8,16,32,64,128)' --config.num_train_steps=400 \
    --config.warmup_steps=40 --config.eval_every_steps=100 --config.checkpoint_every_steps=100 \
    --config.num_workers=0 --config.dtype=float32 --config.model=resunetpp --config.seed="$seed" \
    ${VARIANTS[$name]} >> "$log" 2>&1
  rc=$?
  echo "$(date -u +%FT%TZ) end $run rc=$rc minutes=$(( ($(date +%s) - start + 30) / 60 ))" \
    "dice=$(grep -o 'step [0-9]* validation:.*dice [0-9.]*' "$log" | sed 's/ validation:.*dice / /' | tr '\n' ' ')"
done
