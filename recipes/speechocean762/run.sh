#!/usr/bin/env bash
# speechocean762 (OpenSLR 101): read English by 250 Mandarin-speaking learners, half of
# them children. Prepare, fine-tune the bundled an4 model on its training speakers with
# channel augmentation, score its test speakers clean and under test conditions.
#
#   recipes/speechocean762/run.sh            # all stages, from the repository root
#   recipes/speechocean762/run.sh 1          # from stage 1 on
#   SO762=/data/so762 DOWNLOAD=1 recipes/speechocean762/run.sh   # fetch it first (520 MB)
#
# Every stage is safe to re-run; training continues from last.pt (keep EXP outside the
# repository for a long run).
set -euo pipefail

stage=${1:-0}
corpus=$(realpath -m "${SO762:-data/speechocean762-corpus}")
data=${DATA:-data/speechocean762}
exp=${EXP:-exp/speechocean762}
INIT=${INIT:-an4}  # bundled name, run folder or model file; INIT= trains from scratch
TRAIN_SETTINGS=${TRAIN_SETTINGS:---set train.epochs=30 --set train.lr=0.0008 --set train.freeze_epochs=1 \
  --set augment.noise_prob=0.4 --set augment.reverb_prob=0.3 --set augment.narrowband_prob=0.2}

if [ "$stage" -le 0 ]; then
  echo "== stage 0: manifests into $data"
  download=()
  [ -n "${DOWNLOAD:-}" ] && download=(--download)
  asrkit data prepare speechocean762 --data-dir "$corpus" --out "$data" "${download[@]}"
fi

if [ "$stage" -le 1 ]; then
  echo "== stage 1: train on $data/train.jsonl${INIT:+ from $INIT} -> $exp"
  extra=()
  [ -f "$exp/last.pt" ] && extra+=(--resume)
  [ -n "$INIT" ] && extra+=(--init "$INIT")
  asrkit train --train "$data/train.jsonl" --valid "$data/valid.jsonl" --out "$exp" \
    "${extra[@]}" $TRAIN_SETTINGS
fi

if [ "$stage" -le 2 ]; then
  echo "== stage 2: score $data/test.jsonl under test conditions"
  asrkit evaluate "$exp" "$data/test.jsonl" --condition clean,8k,noise10,noise0,reverb \
    --plot "$exp/conditions.png" | tee "$exp/conditions.txt"
fi

echo "== done: model $exp/best.pt; scores in $exp/conditions.txt"
