#!/usr/bin/env bash
# LibriSpeech, the 100-hour setup: download and prepare, train on train-clean-100,
# score on the clean and other test sets with greedy decoding.
#
#   recipes/librispeech/run.sh              # all stages, from the repository root
#   recipes/librispeech/run.sh 1            # from stage 1 on
#   LIBRISPEECH=/data/librispeech MIRROR=https://openslr.elda.org/resources/12 recipes/librispeech/run.sh
#
# Every stage is safe to re-run: parts already unpacked are not fetched again, training
# continues from last.pt. Stage 0 downloads about 7.6 GB.
set -euo pipefail

stage=${1:-0}
corpus=$(realpath -m "${LIBRISPEECH:-data/librispeech-corpus}")
data=${DATA:-data/librispeech}
exp=${EXP:-exp/librispeech}
mirror=${MIRROR:-https://www.openslr.org/resources/12}
# Longer utterances than AN4 (up to 35 s), so larger batches; all else is the default.
TRAIN_SETTINGS=${TRAIN_SETTINGS:---set train.batch_seconds=240 --set train.epochs=30}

if [ "$stage" -le 0 ]; then
  echo "== stage 0: fetch and check the archives into $corpus, manifests into $data"
  asrkit data prepare librispeech --data-dir "$corpus" --out "$data" --download \
    --mirror "$mirror" --part train-clean-100 --part dev-clean --part dev-other \
    --part test-clean --part test-other
fi

if [ "$stage" -le 1 ]; then
  echo "== stage 1: train on $data/train-clean-100.jsonl -> $exp"
  resume=()
  [ -f "$exp/last.pt" ] && resume=(--resume)
  asrkit train --train "$data/train-clean-100.jsonl" --valid "$data/dev-clean.jsonl" \
    --out "$exp" "${resume[@]}" $TRAIN_SETTINGS
fi

if [ "$stage" -le 2 ]; then
  for part in test-clean test-other; do
    echo "== stage 2: evaluate on $data/$part.jsonl, greedy decoding"
    asrkit evaluate "$exp/best.pt" "$data/$part.jsonl" --results "$exp/$part.jsonl" \
      | tee "$exp/$part.txt"
  done
fi

echo "== done: model $exp/best.pt; scores in $exp/test-clean.txt and $exp/test-other.txt"
