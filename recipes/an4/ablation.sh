#!/usr/bin/env bash
# The recurrent-network options, each against the default, on AN4: every option is one
# training run per seed on the same budget, scored on the test speakers with greedy
# decoding; ablation_table.py then prints the table of recipes/an4/README.md.
#
#   recipes/an4/ablation.sh                     # after stage 0 of run.sh (the manifests)
#   SEEDS="0 1 2" JOBS=1 recipes/an4/ablation.sh
#   BUDGET="train.epochs=60" recipes/an4/ablation.sh   # the full recipe's length
#   CHECKPOINT=last.pt recipes/an4/ablation.sh      # score the last epoch, not the best
#   OPTIONS="default sortagrad" recipes/an4/ablation.sh   # some of the options, in this order
#
# Runs go in $EXP/<option>-s<seed>; a finished run is skipped and a stopped one resumed,
# so the script is safe to re-run. JOBS runs share the cores, one thread each.
set -euo pipefail

data=${DATA:-data/an4}
exp=${EXP:-exp/an4-ablation}
seeds=${SEEDS:-0 1}
jobs=${JOBS:-2}
checkpoint=${CHECKPOINT:-best.pt}  # best.pt: the epoch of lowest validation WER
here=$(dirname "$0")
# A smaller network and a shorter run than run.sh: 18 runs take about 1.5 hours on 2 cores.
# No per-utterance mean (a streaming model cannot know it) and frame stacking instead of
# the convolutions (the plateau at the start of training is shorter without them).
budget=(model.layers=2 model.hidden=128 model.conv_channels=0 model.utterance_mean=false
        train.epochs=30 train.precision=fp32 train.threads=1 ${BUDGET:-})

declare -A options=(
  [default]=""
  [gru]="model.cell=gru"
  [forward-lookahead5]="model.bidirectional=false model.lookahead=5"
  [forward-lookahead5-layer-norm]="model.bidirectional=false model.lookahead=5 model.layer_norm=true"
  [layer-norm]="model.layer_norm=true"
  [forget-bias1]="model.forget_bias=1.0"
  [orthogonal]="model.recurrent_init=orthogonal"
  [locked-dropout]="model.dropout_kind=locked"
  [sortagrad]="train.sortagrad=true"
)

run_one() {  # option seed
  local out="$exp/$1-s$2" sets=() s
  for s in "${budget[@]}" ${options[$1]} "train.seed=$2"; do sets+=(--set "$s"); done
  if [ ! -f "$out/test.json" ]; then
    if [ -f "$out/last.pt" ]; then
      asrkit train --train "$data/train.jsonl" --valid "$data/valid.jsonl" --out "$out" \
        --resume > "$out.log" 2>&1
    else
      asrkit train --train "$data/train.jsonl" --valid "$data/valid.jsonl" --out "$out" \
        --config "$here/conf.yaml" "${sets[@]}" > "$out.log" 2>&1
    fi
    asrkit evaluate "$out/$checkpoint" "$data/test.jsonl" --json > "$out/test.json.part"
    mv "$out/test.json.part" "$out/test.json"
  fi
  echo "done: $out"
}

mkdir -p "$exp"
for option in ${OPTIONS:-${!options[@]}}; do
  [ -n "${options[$option]+set}" ] || { echo "no option $option: one of ${!options[*]}"; exit 2; }
  for seed in $seeds; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || echo "a run failed: see its .log"; done
    run_one "$option" "$seed" &
  done
done
wait || echo "a run failed: see its .log"
python3 "$here/ablation_table.py" "$exp" | tee "$exp/table.md"
