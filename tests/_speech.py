"""Synthetic speech for the search tests: espeak-ng words in several voices, and
archives of concatenated words whose positions are known exactly."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from asrkit.audio import SAMPLE_RATE, load_audio, write_audio

VOICES = ("en-us+m3", "en-us+f2", "en+m1", "en-gb+f4", "en-us+m7", "en-gb-scotland+f1")
WORDS = ("umbrella", "computer", "elephant", "tomorrow", "basket", "window", "garden",
         "yellow", "pocket", "dinosaur")
NOISE_LEVEL = 0.003  # a little background noise, as in any real recording


@dataclass(frozen=True)
class Occurrence:
    file: Path
    word: str
    start: float  # seconds
    end: float


@functools.lru_cache(maxsize=None)
def _synth_cached(word: str, voice: str, rate: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(path), word],
                       check=True, capture_output=True)
        wave = load_audio(path, normalize=True)
    nz = np.flatnonzero(np.abs(wave) > 0.02)  # espeak pads with silence: cut it exactly
    return wave[nz[0]:nz[-1] + 1].copy()


def synth_word(word: str, voice: str = VOICES[0], rate: int = 150) -> np.ndarray:
    """``word`` spoken by espeak-ng ``voice`` at 16 kHz, silence cut off → ``(samples,)``.
    Skips the calling test when espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    return _synth_cached(word, voice, rate).copy()


def make_archive(folder: Path, files: list[list[str]], voice: str, gap: float = 0.4,
                 seed: int = 0) -> list[Occurrence]:
    """Write one WAV per word list (words separated by ``gap`` s of noise) into
    ``folder``; return where every word is."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for n, words in enumerate(files):
        path = folder / f"rec{n:02d}.wav"
        parts, t = [_silence(gap, rng)], gap
        for word in words:
            w = synth_word(word, voice)
            found.append(Occurrence(path, word, t, t + len(w) / SAMPLE_RATE))
            parts += [w, _silence(gap, rng)]
            t += len(w) / SAMPLE_RATE + gap
        wave = np.concatenate(parts)
        write_audio(path, wave + NOISE_LEVEL * rng.standard_normal(len(wave)).astype(np.float32))
    return found


def _silence(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
