#!/usr/bin/env bash
# The default search embedder (asrkit/pretrained/embedder.pt): trained on AN4 audio
# and every fourth speechocean762 training utterance (625 recordings of non-native adults
# and children), without transcripts, plus synthetic single words (none of them an AN4
# word), each heard through 3 simulated channels; scored on AN4 speakers it never heard.
#
#   recipes/an4/embedder.sh          # all stages
#   recipes/an4/embedder.sh 2        # from stage 2 on
#   AN4=/path/to/an4 SO762=data/speechocean762 recipes/an4/embedder.sh
#
# SO762 is the folder of `asrkit data prepare speechocean762` (train.jsonl, valid.jsonl);
# without it the embedder learns from AN4 alone (as the previous default did).
#
# The speakers in search_heldout_speakers.txt are left out of training; their
# single-word recordings (YES, NO, REPEAT, ...) are the evaluation words.
# Every stage is safe to re-run; training resumes from its checkpoint.
set -euo pipefail

stage=${1:-0}
an4=${AN4:-../shared/data/an4}
so762=${SO762:-data/speechocean762}
data=${DATA:-data/an4-search}
exp=${EXP:-exp/an4-search}
here=$(dirname "$0")

if [ "$stage" -le 0 ]; then
  echo "stage 0: manifests in $data (training audio, held-out words, held-out archive)"
  python - "$an4" "$data" "$here/search_heldout_speakers.txt" "$so762" <<'PY'
import sys
from pathlib import Path
from asrkit.corpora.an4 import read_an4_split
from asrkit.manifest import read_manifest, write_manifest
an4, out, speakers_file, so762 = (Path(a) for a in sys.argv[1:5])
held = {s for line in speakers_file.read_text().splitlines()
        if not line.startswith("#") for s in line.split()}
utts = read_an4_split(an4, "train") + read_an4_split(an4, "test")
# Other speakers, rooms and microphones: every fourth speechocean762 training recording
# (all of them, four times AN4's audio, drowned AN4's windows: held-out AP fell).
other = []
if (so762 / "train.jsonl").is_file():
    other = [u for split in ("train", "valid")
             for u in read_manifest(so762 / f"{split}.jsonl")][3::4]
else:
    print(f"{so762}/train.jsonl not found: training on AN4 alone")
write_manifest(out / "train_audio.jsonl", [u for u in utts if u.speaker not in held] + other)
write_manifest(out / "heldout_audio.jsonl", [u for u in utts if u.speaker in held])
write_manifest(out / "heldout_words.jsonl",
               [u for u in utts if u.speaker in held and len(u.text.split()) == 1])
PY
fi

if [ "$stage" -le 1 ]; then
  echo "stage 1: 500 synthetic words x 8 voices (espeak-ng, flite, festival) in $data/words"
  python "$here/synth_words.py" "$data/words" --words 500 --voices-per-word 8 --an4 "$an4"
fi

if [ "$stage" -le 2 ]; then
  echo "stage 2: train on $data/train_audio.jsonl (transcripts unused) + the synthetic words"
  # A quarter of each batch are synthetic words (TrainConfig.word_share), the rest AN4 windows.
  resume=()
  [ -f "$exp/embedder.pt.ckpt" ] && resume=(--resume)
  asrkit embedder train --manifest "$data/train_audio.jsonl" --words "$data/words/words.jsonl" \
    --out "$exp/embedder.pt" --epochs 15 --windows-per-epoch 4096 \
    --stack 3 --hidden 160 --layers 2 --dim 128 --channel-copies 3 "${resume[@]}"
fi

if [ "$stage" -le 3 ]; then
  echo "stage 3: embeddings vs DTW on the held-out speakers' words"
  asrkit search eval "$data/heldout_words.jsonl" --embedder "$exp/embedder.pt"
fi

if [ "$stage" -le 4 ]; then
  echo "stage 4: ship it as the packaged default"
  cp "$exp/embedder.pt" asrkit/pretrained/embedder.pt
fi
