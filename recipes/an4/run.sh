#!/usr/bin/env bash
# CMU AN4 (spelled letters, digits, commands; 16 kHz): prepare, train, score with greedy
# decoding, then with a word trigram LM whose weights are tuned on the validation set.
#
#   recipes/an4/run.sh              # all stages, from the repository root
#   recipes/an4/run.sh 3            # from stage 3 on
#   AN4=/path/to/an4 DATA=data/an4 EXP=exp/an4 recipes/an4/run.sh
#   CONF=recipes/an4/conf_stream.yaml EXP=exp/an4-stream recipes/an4/run.sh  # forward-only
#
# Every stage is safe to re-run; training continues from last.pt.
set -euo pipefail

stage=${1:-0}
# Absolute, so the manifests' audio paths hold wherever the manifests are read from.
an4=$(realpath -m "${AN4:-../shared/data/an4}")
data=${DATA:-data/an4}
exp=${EXP:-exp/an4}
here=$(dirname "$0")

if [ "$stage" -le 0 ]; then
  echo "== stage 0: manifests in $data (train, valid = 6 held-out speakers, test)"
  download=()
  [ -d "$an4" ] || download=(--download)  # clones github.com/cmusphinx/an4 into $an4
  asrkit data prepare an4 --data-dir "$an4" --out "$data" "${download[@]}"
fi

if [ "$stage" -le 1 ]; then
  echo "== stage 1: train on $data/train.jsonl -> $exp"
  if [ -f "$exp/last.pt" ]; then
    config=(--resume)  # the run's own config.yaml is used
  else
    config=(--config "${CONF:-$here/conf.yaml}")
  fi
  asrkit train --train "$data/train.jsonl" --valid "$data/valid.jsonl" --out "$exp" \
    "${config[@]}" ${TRAIN_SETTINGS:-}
fi

if [ "$stage" -le 2 ]; then
  echo "== stage 2: evaluate on $data/test.jsonl, greedy decoding"
  asrkit evaluate "$exp/best.pt" "$data/test.jsonl" --results "$exp/test-greedy.jsonl" \
    | tee "$exp/test-greedy.txt"
fi

if [ "$stage" -le 3 ]; then
  echo "== stage 3: word trigram LM on the training transcripts"
  mkdir -p "$exp/lm"
  python3 -c '
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip():
        print(json.loads(line)["text"])
' "$data/train.jsonl" > "$exp/lm/train.txt"
  asrkit lm build "$exp/lm/train.txt" --out "$exp/lm/train-3gram.arpa" --order 3
fi

if [ "$stage" -le 4 ]; then
  echo "== stage 4: tune LM weight and word bonus on $data/valid.jsonl"
  asrkit lm tune "$exp/best.pt" "$data/valid.jsonl" --lm "$exp/lm/train-3gram.arpa" \
    --out "$exp/decoding.json" ${TUNE_SETTINGS:-}
fi

if [ "$stage" -le 5 ]; then
  echo "== stage 5: evaluate on $data/test.jsonl, beam search with the tuned LM"
  asrkit evaluate "$exp/best.pt" "$data/test.jsonl" --decoding-config "$exp/decoding.json" \
    --results "$exp/test-lm.jsonl" | tee "$exp/test-lm.txt"
fi

if [ "$stage" -le 6 ] && [ -n "${BUNDLE:-}" ]; then
  echo "== stage 6: ship the model as the bundled default ($BUNDLE)"
  python recipes/an4/bundle.py "$exp/best.pt" "$exp/test-greedy.jsonl" "$BUNDLE"
fi

echo "== done: model $exp/best.pt; test scores in $exp/test-greedy.txt and $exp/test-lm.txt"
