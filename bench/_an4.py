"""AN4 as search benchmark material (development data; tests never use it).

The single-word recordings of AN4 (YES, NO, REPEAT, STOP, HELP, GO, START...) are the
labelled words. Their speakers are split in two by name: *held-out* speakers' words
are only ever evaluated on; every recording by the other speakers may be used (without
labels) to train an embedder. So benchmark numbers are on voices the embedder never heard.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from asrkit.manifest import Utterance

AN4 = Path(os.environ.get("AN4_DIR", Path(__file__).resolve().parents[2] / "shared/data/an4"))
_LINE = re.compile(r"^(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\(([^)]+)\)\s*$")


def an4_utterances() -> list[Utterance]:
    """Every AN4 recording (train and test) with transcript and speaker."""
    out = []
    for split, folder in (("train", "an4_clstk"), ("test", "an4test_clstk")):
        for line in (AN4 / f"etc/an4_{split}.transcription").read_text().splitlines():
            m = _LINE.match(line.strip())
            if not m:
                continue
            text, uid = m.group(1).strip(), m.group(2)
            speaker = uid.split("-")[1]
            out.append(Utterance(uid, str(AN4 / "wav" / folder / speaker / f"{uid}.wav"),
                                 text, speaker=speaker))
    return out


def is_heldout(speaker: str) -> bool:
    """Every second word speaker in name order is held out (fixed, reproducible)."""
    return speaker in _heldout_speakers()


def _heldout_speakers() -> set[str]:
    speakers = sorted({u.speaker for u in an4_utterances() if len(u.text.split()) == 1})
    return set(speakers[1::2])


def word_sets() -> tuple[list[Utterance], list[Utterance]]:
    """(held-out speakers' single words, other speakers' single words)."""
    words = [u for u in an4_utterances() if len(u.text.split()) == 1]
    held = _heldout_speakers()
    return [u for u in words if u.speaker in held], [u for u in words if u.speaker not in held]


def training_audio() -> list[Utterance]:
    """Every recording by a speaker who is not held out (used without transcripts)."""
    held = _heldout_speakers()
    return [u for u in an4_utterances() if u.speaker not in held]


def heldout_audio() -> list[Utterance]:
    """Every recording by a held-out speaker (the archive for search benchmarks)."""
    held = _heldout_speakers()
    return [u for u in an4_utterances() if u.speaker in held]
