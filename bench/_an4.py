"""AN4 as search benchmark material (development data; tests never use it).

The single-word recordings of AN4 (YES, NO, REPEAT, STOP, HELP, GO, START...) are the
labelled words. Their speakers are split in two (recipes/an4/search_heldout_speakers.txt):
*held-out* speakers' recordings are only ever evaluated on; every recording by the
other speakers may be used (without transcripts) to train an embedder. So benchmark
numbers are on voices the embedder never heard.
"""

from __future__ import annotations

import os
from pathlib import Path

from asrkit.corpora.an4 import read_an4_split
from asrkit.manifest import Utterance

ROOT = Path(__file__).resolve().parents[1]
AN4 = Path(os.environ.get("AN4_DIR", ROOT.parent / "shared/data/an4"))
HELDOUT_FILE = ROOT / "recipes/an4/search_heldout_speakers.txt"


def an4_utterances() -> list[Utterance]:
    """Every AN4 recording (train and test) with transcript and speaker."""
    return read_an4_split(AN4, "train") + read_an4_split(AN4, "test")


def heldout_speakers() -> set[str]:
    lines = HELDOUT_FILE.read_text().splitlines()
    return {s for line in lines if not line.startswith("#") for s in line.split()}


def word_sets() -> tuple[list[Utterance], list[Utterance]]:
    """(held-out speakers' single words, other speakers' single words)."""
    words = [u for u in an4_utterances() if len(u.text.split()) == 1]
    held = heldout_speakers()
    return [u for u in words if u.speaker in held], [u for u in words if u.speaker not in held]


def training_audio() -> list[Utterance]:
    """Every recording by a speaker who is not held out (used without transcripts)."""
    held = heldout_speakers()
    return [u for u in an4_utterances() if u.speaker not in held]


def heldout_audio() -> list[Utterance]:
    """Every recording by a held-out speaker (the archive for search benchmarks)."""
    held = heldout_speakers()
    return [u for u in an4_utterances() if u.speaker in held]
