#!/usr/bin/env bash
# Synthetic speech, end to end, with no data to download: make a corpus with the
# speech synthesisers, train a recogniser on it, score it on voices it never heard.
#
#   recipes/synth/run.sh            # all stages
#   recipes/synth/run.sh 2          # from stage 2 on
#   DATA=data/s EXP=exp/s recipes/synth/run.sh
#
# Every stage is safe to re-run: the corpus resumes where it stopped, training
# continues from last.pt.
set -euo pipefail

stage=${1:-0}
data=${DATA:-data/synth}
exp=${EXP:-exp/synth}
archive=${ARCHIVE:-data/synth-archive}

if [ "$stage" -le 0 ]; then
  echo "stage 0: synthesise the corpus into $data"
  asrkit data synth "$data"            # --list-voices shows what is installed
fi

if [ "$stage" -le 1 ]; then
  echo "stage 1: train on $data/train.jsonl"
  resume=()
  [ -f "$exp/last.pt" ] && resume=(--resume)
  asrkit train --train "$data/train.jsonl" --valid "$data/valid.jsonl" --out "$exp" \
    "${resume[@]}" ${TRAIN_SETTINGS:-}
fi

if [ "$stage" -le 2 ]; then
  echo "stage 2: evaluate on the held-out voices of $data/test.jsonl"
  asrkit evaluate "$exp/best.pt" "$data/test.jsonl" --results "$exp/test-results.jsonl"
fi

if [ "$stage" -le 3 ]; then
  echo "stage 3: a search archive with known word positions in $archive"
  asrkit data synth-archive "$archive" --texts commands --files 4 --words-per-file 20
fi
