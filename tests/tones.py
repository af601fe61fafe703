"""A tiny "tone language" for tests: each letter is a tone of its own pitch.

A model learns it in seconds on a CPU, which makes training tests real (the model has
to learn the mapping) yet fast. Words are separated by short pauses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from asrkit.manifest import Utterance, write_manifest

RATE = 16_000
ALPHABET = "ABCD"
LETTER_SECONDS = 0.12
PAUSE_SECONDS = 0.10


def letter_wave(letter: str, rng: np.random.Generator) -> np.ndarray:
    f0 = 300.0 * 1.6 ** ALPHABET.index(letter)
    n = int(LETTER_SECONDS * RATE * rng.uniform(0.85, 1.15))
    t = np.arange(n) / RATE
    wave = np.sin(2 * np.pi * f0 * t) + 0.4 * np.sin(4 * np.pi * f0 * t)
    return (wave * np.hanning(n)).astype(np.float32)


def utterance_wave(text: str, rng: np.random.Generator) -> np.ndarray:
    pause = np.zeros(int(PAUSE_SECONDS * RATE), np.float32)
    parts = [pause]
    for word in text.split():
        for letter in word:
            parts.append(letter_wave(letter, rng))
        parts.append(pause)
    wave = np.concatenate(parts)
    return 0.3 * wave + 0.01 * rng.standard_normal(len(wave)).astype(np.float32)


def random_text(rng: np.random.Generator, max_words: int = 2, max_letters: int = 3) -> str:
    words = []
    for _ in range(rng.integers(1, max_words + 1)):
        n = rng.integers(1, max_letters + 1)
        words.append("".join(rng.choice(list(ALPHABET), n)))
    return " ".join(words)


def make_tone_corpus(folder: Path, n: int, seed: int = 0, prefix: str = "utt") -> Path:
    """Write ``n`` utterances and ``folder/manifest.jsonl``; return the manifest path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    utts = []
    for i in range(n):
        text = random_text(rng)
        path = folder / f"{prefix}{i:04d}.wav"
        sf.write(path, utterance_wave(text, rng), RATE, subtype="PCM_16")
        utts.append(Utterance(f"{prefix}{i:04d}", str(path), text))
    manifest = folder / "manifest.jsonl"
    write_manifest(manifest, utts)
    return manifest
