#!/usr/bin/env bash
# Synthetic speech, end to end, with no data to download: make a corpus with the
# speech synthesisers, train a recogniser on it, score it on voices it never heard,
# transcribe a few files, then index a long archive and find a spoken word in it, and
# end with the bundled recogniser on a few real recordings shipped with asrkit.
#
#   recipes/synth/run.sh            # all stages
#   recipes/synth/run.sh 2          # from stage 2 on
#   DATA=data/s EXP=exp/s recipes/synth/run.sh
#
# Every stage is safe to re-run: the corpus resumes where it stopped, training
# continues from last.pt, the index build resumes an unfinished index.
set -euo pipefail

stage=${1:-0}
data=${DATA:-data/synth}
exp=${EXP:-exp/synth}
archive=${ARCHIVE:-data/synth-archive}
index=${INDEX:-$exp/archive-index}
BUNDLED=${BUNDLED:-$(python3 -c 'from asrkit.pretrained import DEFAULT_MODEL; print(DEFAULT_MODEL)')}
# 12,000 utterances seen 3 times each teach more about voices never heard than 2,400
# seen 16 times, in the same number of updates (recipes/synth/README.md).
SYNTH_SETTINGS=${SYNTH_SETTINGS:---utterances 12000}
# A model small enough to train in a few minutes on 2 CPU cores. Layer normalisation and
# orthogonal recurrent weights get it off the all-blank plateau in the first epoch; the
# synthetic voices vary enough that SpecAugment and speed perturbation only slow this
# short run down.
TRAIN_SETTINGS=${TRAIN_SETTINGS:---set model.hidden=192 --set model.layer_norm=true --set model.recurrent_init=orthogonal --set train.epochs=3 --set train.batch_seconds=30 --set train.lr=0.003 --set train.spec_augment=false --set train.speed_perturb=false --set train.patience=4}

if [ "$stage" -le 0 ]; then
  echo "== stage 0: synthesise a labelled corpus into $data"
  asrkit data synth "$data" $SYNTH_SETTINGS
fi

if [ "$stage" -le 1 ]; then
  echo "== stage 1: train on $data/train.jsonl -> $exp"
  resume=()
  [ -f "$exp/last.pt" ] && resume=(--resume)
  asrkit train --train "$data/train.jsonl" --valid "$data/valid.jsonl" --out "$exp" \
    "${resume[@]}" $TRAIN_SETTINGS
fi

if [ "$stage" -le 2 ]; then
  echo "== stage 2: evaluate on the unseen voices of $data/test.jsonl"
  asrkit evaluate "$exp/best.pt" "$data/test.jsonl" --results "$exp/test-results.jsonl" \
    | tee "$exp/test-wer.txt"
fi

if [ "$stage" -le 3 ]; then
  echo "== stage 3: transcribe five test recordings"
  asrkit transcribe "$exp/best.pt" $(ls "$data"/wav/test/*.wav | head -n 5)
fi

if [ "$stage" -le 4 ]; then
  echo "== stage 4: a search archive with known word positions in $archive"
  asrkit data synth-archive "$archive" --texts commands --files 4 --words-per-file 20
  asrkit index build "$archive/recordings.jsonl" --out "$index"
fi

if [ "$stage" -le 5 ]; then
  # Query: the first word of the first recording, cut from the archive itself.
  read -r word file start end < <(python3 -c '
import json, sys
first = json.loads(open(sys.argv[1]).readline())
print(first["text"], first["audio"], first["offset"], first["offset"] + first["duration"])
' "$archive/words.jsonl")
  echo "== stage 5: where else is \"$word\" said? (query: $file $start-$end s)"
  asrkit search "$index" --span "$archive/$file:$start-$end" --top 8
  echo "   true positions of \"$word\" (from $archive/words.jsonl):"
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    w = json.loads(line)
    if w["text"] == sys.argv[2]:
        print("   %s  %.2f-%.2f" % (w["id"].rsplit("-", 1)[0], w["offset"], w["offset"] + w["duration"]))
' "$archive/words.jsonl" "$word"
fi

if [ "$stage" -le 6 ]; then
  # Real people, not synthesisers: six clips shipped with asrkit (AN4 and speechocean762
  # test speakers, asrkit/pretrained/clips/README.md), transcribed by the bundled model.
  clips=$(python3 -c 'from asrkit.pretrained import EXAMPLE_CLIPS; print(EXAMPLE_CLIPS)')
  echo "== stage 6: the bundled model ($BUNDLED) on six real recordings"
  asrkit evaluate "$BUNDLED" "$clips" --worst 6
fi

if [ "$stage" -le 7 ]; then
  # Live transcription: the bundled forward-only model hears one of those clips as it
  # is played (real-time speed), printing each word once it is final.
  clip=$(python3 -c 'from asrkit.pretrained import EXAMPLE_CLIPS as c; print(c.parent / "an4-an439-mjgm-b.flac")')
  echo "== stage 7: live transcription (asrkit transcribe --stream an4-stream), reference ENTER FIVE SIX EIGHT"
  asrkit transcribe --stream an4-stream "$clip"
fi

echo "== done: model $exp/best.pt, test WER in $exp/test-wer.txt, index $index"
