"""Shared fixtures: speech made on the spot, so no test needs recorded data.

- ``say(text, voice=..., rate=1.0)`` → 16 kHz float32 speech ``(samples,)`` from espeak-ng.
- ``synth_corpus`` → a tiny labelled corpus (:class:`asrkit.synth.SynthCorpus`):
  command words by six espeak-ng voices, split by voice, made once per session.
- ``synth_archive_spans`` → a small search archive: list of
  :class:`asrkit.synth.WordSpan` (the folder is ``Path(spans[0].file).parents[1]``).
- ``write_wav(path, wave, sample_rate=16000)`` → writes 16-bit PCM, returns the path.

Anything needing a synthesiser is skipped, naming the Debian package, when espeak-ng
is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

# Six espeak-ng voices of six different speakers: enough to hold one out for valid
# and one for test. espeak-ng is the fastest engine (~10 ms an utterance).
TINY_VOICES = ("espeak-ng:en-us", "espeak-ng:en-us+f3", "espeak-ng:en-gb+m3",
               "espeak-ng:en-gb-scotland+f5", "espeak-ng:en-029+klatt", "espeak-ng:en-us-nyc+m7")


def require_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")


def tiny_config(**changes):
    """Settings of the ``synth_corpus`` fixture, with ``changes`` applied."""
    from asrkit.synth import SynthConfig
    settings = dict(n_utterances=24, texts="commands", max_words=2, voices=TINY_VOICES,
                    valid_fraction=0.2, test_fraction=0.2, seed=7)
    return SynthConfig(**{**settings, **changes})


@pytest.fixture(scope="session")
def say():
    """``say(text, voice="espeak-ng:en-us", rate=1.0)`` → float32 ``(samples,)`` at 16 kHz."""
    require_espeak()
    from asrkit.synth import Prosody, select_voices, synthesize
    from asrkit.audio import SAMPLE_RATE, resample

    def _say(text: str, voice: str = "espeak-ng:en-us", rate: float = 1.0) -> np.ndarray:
        wave, sample_rate = synthesize(select_voices([voice])[0], text, Prosody(rate=rate))
        return resample(wave, sample_rate, SAMPLE_RATE)

    return _say


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory):
    """A 24-utterance corpus (train 14 / valid 5 / test 5) of 1-2 command words."""
    require_espeak()
    from asrkit.synth import synth_corpus as make_corpus
    return make_corpus(tmp_path_factory.mktemp("synth_corpus"), tiny_config())


@pytest.fixture(scope="session")
def synth_archive_spans(tmp_path_factory):
    """Two recordings of eight command words each, digital silence between words."""
    require_espeak()
    from asrkit.synth import builtin_words, synth_archive
    return synth_archive(builtin_words("commands"), 2, tmp_path_factory.mktemp("archive"),
                         words_per_file=8, voices=TINY_VOICES, gap_range=(0.2, 0.6), seed=3)


@pytest.fixture(scope="session")
def write_wav():
    """``write_wav(path, wave, sample_rate=16000)``: 16-bit PCM WAV; returns the path."""
    import soundfile as sf

    def _write(path, wave, sample_rate: int = 16000) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.asarray(wave, np.float32), sample_rate, subtype="PCM_16")
        return path

    return _write


@pytest.fixture(scope="module")
def one_thread():
    """Tensors in some test modules are tiny: one torch thread avoids hand-off costs
    that dominate on a busy machine (seconds instead of milliseconds per call)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
