"""Labelled single words from speech synthesisers, for training a search embedder.

Writes ``OUT/wav/<word>/<voice>.wav`` and ``OUT/words.jsonl`` (``text`` = the word).
Words come from the CMU pronouncing dictionary shipped with festival (common words:
those with a part-of-speech tag), minus every word of AN4's dictionary, so an
embedder trained on them has never been taught the words it is evaluated on.
Safe to re-run: finished words are kept.

    python recipes/an4/synth_words.py OUT [--words 500] [--voices-per-word 8]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from asrkit.audio import SAMPLE_RATE, resample, write_audio
from asrkit.manifest import Utterance, write_manifest
from asrkit.synth.voices import Prosody, list_voices, synthesize_many

CMUDICT = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")
ENTRY = re.compile(r'^\("([a-z]+)" (\w+) ')


def vocabulary(count: int, exclude: set[str], seed: int) -> list[str]:
    words = set()
    for line in CMUDICT.read_text(errors="replace").splitlines():
        m = ENTRY.match(line)
        if m and m.group(2) != "nil" and 3 <= len(m.group(1)) <= 10:
            words.add(m.group(1).upper())
    pool = sorted(words - exclude)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(pool, size=count, replace=False).tolist())


def an4_words(an4_dir: Path) -> set[str]:
    dic = an4_dir / "etc" / "an4.dic"
    return {line.split()[0].split("(")[0] for line in dic.read_text().splitlines() if line.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--words", type=int, default=500)
    parser.add_argument("--voices-per-word", type=int, default=8)
    parser.add_argument("--an4", type=Path, default=Path("../shared/data/an4"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    words = vocabulary(args.words, an4_words(args.an4), args.seed)
    voices = list_voices()
    plan: dict[int, list[str]] = {}
    for word in words:
        for v in rng.choice(len(voices), size=args.voices_per_word, replace=False):
            plan.setdefault(int(v), []).append(word)
    utts = []
    for v, vocab in sorted(plan.items()):
        voice = voices[v]
        tag = voice.id.replace(":", "_").replace("+", "_")
        paths = [args.out / "wav" / w / f"{tag}.wav" for w in vocab]
        todo = [(w, p) for w, p in zip(vocab, paths) if not p.exists()]
        items = [(w.lower(), Prosody(rate=float(rng.uniform(0.85, 1.15)),
                                     pitch=float(rng.uniform(-3, 3)))) for w, _ in todo]
        for (w, path), (wave, rate) in zip(todo, synthesize_many(voice, items) if items else []):
            write_audio(path, resample(wave, rate, SAMPLE_RATE))
        utts += [Utterance(f"{w}/{tag}", str(p.resolve()), w, speaker=voice.speaker)
                 for w, p in zip(vocab, paths)]
        print(f"{voice.id}: {len(vocab)} words", flush=True)
    write_manifest(args.out / "words.jsonl", sorted(utts, key=lambda u: u.id))


if __name__ == "__main__":
    main()
