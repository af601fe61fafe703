#!/usr/bin/env bash
# English: one recogniser for more speakers, microphones and rooms than AN4 alone. The
# bundled an4 model is fine-tuned on AN4 + speechocean762 (non-native adults and
# children) with channel augmentation, then scored per corpus and per test condition.
#
#   recipes/english/run.sh           # all stages, from the repository root
#   recipes/english/run.sh 2         # from stage 2 on
#   EXP=~/runs/english recipes/english/run.sh    # keep a long run outside the repository
#
# Every stage is safe to re-run; training continues from last.pt.
set -euo pipefail

stage=${1:-0}
an4=$(realpath -m "${AN4:-../shared/data/an4}")
so762=$(realpath -m "${SO762:-../shared/data/speechocean762}")
data=${DATA:-data}
exp=${EXP:-exp/english}
here=$(dirname "$0")
AN4_WEIGHT=${AN4_WEIGHT:-1.5}  # AN4 is 40 min against speechocean762's 2.6 h: draw it more
CONDITIONS=${CONDITIONS:-clean,8k,telephone,noise10,noise0,reverb}

if [ "$stage" -le 0 ]; then
  echo "== stage 0: manifests in $data/an4 and $data/speechocean762"
  an4_download=() so_download=()
  [ -d "$an4" ] || an4_download=(--download)
  [ -d "$so762" ] || so_download=(--download)
  asrkit data prepare an4 --data-dir "$an4" --out "$data/an4" "${an4_download[@]}"
  asrkit data prepare speechocean762 --data-dir "$so762" --out "$data/speechocean762" \
    "${so_download[@]}"
fi

if [ "$stage" -le 1 ]; then
  echo "== stage 1: fine-tune ${INIT:-an4} on both corpora -> $exp"
  if [ -f "$exp/last.pt" ]; then
    config=(--resume)
  else
    config=(--config "$here/conf.yaml" --init "${INIT:-an4}")
  fi
  asrkit train --train "$data/an4/train.jsonl:$AN4_WEIGHT" \
    --train "$data/speechocean762/train.jsonl" \
    --valid "$data/an4/valid.jsonl" --valid "$data/speechocean762/valid.jsonl" \
    --out "$exp" "${config[@]}" ${TRAIN_SETTINGS:-}
fi

if [ "$stage" -le 2 ]; then
  echo "== stage 2: score both test sets under $CONDITIONS"
  for corpus in an4 speechocean762; do
    asrkit evaluate "$exp/best.pt" "$data/$corpus/test.jsonl" --condition "$CONDITIONS" \
      --plot "$exp/$corpus-conditions.png" --json > "$exp/$corpus-conditions.json"
    python3 -c 'import json, sys
for row in json.load(open(sys.argv[1])):
    print(f"{sys.argv[2]:15} {row[\"condition\"]:10} WER {100 * row[\"wer\"]:6.2f} %  CER {100 * row[\"cer\"]:6.2f} %")' \
      "$exp/$corpus-conditions.json" "$corpus"
  done
fi

if [ "$stage" -le 3 ]; then
  echo "== stage 3: the six example clips shipped with asrkit"
  asrkit evaluate "$exp/best.pt" \
    "$(python3 -c 'from asrkit.pretrained import EXAMPLE_CLIPS; print(EXAMPLE_CLIPS)')" --worst 6
fi

echo "== done: model $exp/best.pt; scores in $exp/*-conditions.json"
