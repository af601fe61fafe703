#!/usr/bin/env bash
# Mozilla Common Voice, one language: prepare the official train/dev/test split of a
# release you downloaded, train, and score on the test split with greedy decoding.
#
#   CV=/data/cv-corpus-17.0-2024-03-15 LANGUAGE=en recipes/commonvoice/run.sh
#   CV=/data/cv-corpus-17.0-2024-03-15/cy recipes/commonvoice/run.sh 1   # from stage 1
#
# Common Voice cannot be downloaded without accepting its terms on
# https://commonvoice.mozilla.org/datasets: fetch and extract the archive first.
# Every stage is safe to re-run; training continues from last.pt.
set -euo pipefail

stage=${1:-0}
cv=$(realpath -m "${CV:-data/commonvoice-release}")
language=${LANGUAGE:-en}
data=${DATA:-data/commonvoice-$language}
exp=${EXP:-exp/commonvoice-$language}
TRAIN_SETTINGS=${TRAIN_SETTINGS:---set train.batch_seconds=120}

if [ "$stage" -le 0 ]; then
  echo "== stage 0: manifests for $cv ($language) in $data"
  download=()
  [ -d "$cv" ] || download=(--download)  # explains where to get the release, then stops
  # Upper case without punctuation (apostrophes kept): a smaller character set for CTC.
  asrkit data prepare commonvoice --data-dir "$cv" --language "$language" --out "$data" \
    --normalize upper "${download[@]}"
fi

if [ "$stage" -le 1 ]; then
  echo "== stage 1: train on $data/train.jsonl -> $exp"
  resume=()
  [ -f "$exp/last.pt" ] && resume=(--resume)
  asrkit train --train "$data/train.jsonl" --valid "$data/dev.jsonl" --out "$exp" \
    "${resume[@]}" $TRAIN_SETTINGS
fi

if [ "$stage" -le 2 ]; then
  echo "== stage 2: evaluate on $data/test.jsonl, greedy decoding"
  asrkit evaluate "$exp/best.pt" "$data/test.jsonl" --results "$exp/test-results.jsonl" \
    | tee "$exp/test.txt"
fi

echo "== done: model $exp/best.pt; test scores in $exp/test.txt"
