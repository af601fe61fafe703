"""A synthetic archive for audio search: long recordings with words at known times.

Words said by several voices are laid end to end with silence (optionally noise)
between them. Because the positions are chosen, not detected, the word spans are
exact to the sample: a search that finds a word can be checked against them.

Output folder::

    audio/archive-000.wav ...   16 kHz mono 16-bit PCM
    recordings.jsonl            one manifest line per recording (text = its words)
    words.jsonl                 one line per word: offset/duration = its span
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio import SAMPLE_RATE, resample
from ..errors import ConfigError
from ..manifest import Utterance, write_manifest
from . import effects
from .corpus import Progress, write_wav
from .texts import clean_label
from .voices import Prosody, SynthesisError, Voice, select_voices, synthesize_many

WORD_PEAK = 0.6  # level of each word before noise; leaves headroom for the mix


@dataclass(frozen=True)
class WordSpan:
    """Where one word was put."""

    word: str
    file: str  # absolute path of the recording
    start: float  # seconds from the start of the file; start * 16000 is a whole sample
    end: float  # seconds; the span holds exactly the word's samples
    voice: str  # voice id


@dataclass(frozen=True)
class _Slot:
    file: int
    word: str
    voice: Voice
    prosody: Prosody
    gap: int  # samples of silence before the word


def synth_archive(
    words: Sequence[str], n_files: int, out_dir: str | os.PathLike, *,
    words_per_file: int = 12, voices: Sequence[str] | None = None,
    gap_range: tuple[float, float] = (0.3, 1.0), snr: float | None = None,
    rate_range: tuple[float, float] = (1.0, 1.0), pitch_range: tuple[float, float] = (0.0, 0.0),
    seed: int = 0, workers: int | None = None, progress: Progress | None = None,
) -> list[WordSpan]:
    """Write ``n_files`` recordings of ``words_per_file`` words each; return every span.

    Words are used in turn (reshuffled each round), so each occurs about equally often;
    each occurrence gets a random voice among ``voices`` (id globs; default all).
    ``snr`` (dB) adds white noise over whole files, gaps included; ``None`` leaves
    the gaps digitally silent. Spans are sorted by file, then time.
    """
    labels = [w for w in (clean_label(w) for w in words) if w]
    if not labels or n_files < 1 or words_per_file < 1:
        raise ConfigError("synth_archive needs at least one word, one file and one word per file")
    if not 0 <= gap_range[0] <= gap_range[1]:
        raise ConfigError(f"gap_range must be (low, high) with 0 <= low <= high, got {gap_range}")
    out = Path(out_dir)
    slots = _plan(labels, n_files, words_per_file, select_voices(voices), gap_range,
                  rate_range, pitch_range, np.random.default_rng(seed))
    waves = _synthesize_words(slots, workers or os.cpu_count() or 1, progress)
    noise_rng = np.random.default_rng([seed, 1])
    spans, recordings, segments = [], [], []
    for f in range(n_files):
        path = out / "audio" / f"archive-{f:03d}.wav"
        mine = [i for i, s in enumerate(slots) if s.file == f]
        wave, starts = _assemble([slots[i] for i in mine], [waves[i] for i in mine], gap_range,
                                 snr, noise_rng)
        write_wav(path, wave)
        for k, (i, start) in enumerate(zip(mine, starts)):
            span = WordSpan(slots[i].word, str(path.resolve()), start / SAMPLE_RATE,
                            (start + len(waves[i])) / SAMPLE_RATE, slots[i].voice.id)
            spans.append(span)
            segments.append(Utterance(f"{path.stem}-{k:03d}", span.file, span.word,
                                      span.start, span.end - span.start, span.voice))
        recordings.append(Utterance(path.stem, str(path.resolve()),
                                    " ".join(slots[i].word for i in mine),
                                    duration=len(wave) / SAMPLE_RATE))
    write_manifest(out / "recordings.jsonl", recordings)
    write_manifest(out / "words.jsonl", segments)
    return spans


def _plan(labels, n_files, words_per_file, voices, gap_range, rate_range, pitch_range, rng,
          ) -> list[_Slot]:
    total = n_files * words_per_file
    rounds = -(-total // len(labels))
    order = np.concatenate([rng.permutation(len(labels)) for _ in range(rounds)])[:total]
    slots = []
    for n, w in enumerate(order):
        voice = voices[rng.integers(len(voices))]
        prosody = Prosody(round(float(rng.uniform(*rate_range)), 4),
                          round(float(rng.uniform(*pitch_range)), 3))
        gap = round(float(rng.uniform(*gap_range)) * SAMPLE_RATE)
        slots.append(_Slot(n // words_per_file, labels[w], voice, prosody, gap))
    return slots


def _synthesize_words(slots: list[_Slot], workers: int, progress: Progress | None,
                      ) -> list[np.ndarray]:
    """Each slot's word at 16 kHz, trimmed to where the speech is, peak WORD_PEAK."""
    by_voice = defaultdict(list)
    for i, s in enumerate(slots):
        by_voice[s.voice].append(i)
    waves: list[np.ndarray] = [np.zeros(0, np.float32)] * len(slots)

    def job(indices: list[int]) -> int:
        said = synthesize_many(slots[indices[0]].voice,
                               [(slots[i].word, slots[i].prosody) for i in indices])
        for i, (wave, rate) in zip(indices, said):
            waves[i] = word_samples(wave, rate)
            if waves[i].size == 0:
                raise SynthesisError(f"{slots[i].voice.id}: produced no sound for "
                                     f"{slots[i].word!r}")
        return len(indices)

    done = 0
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in cf.as_completed([pool.submit(job, ix) for ix in by_voice.values()]):
            done += future.result()
            if progress:
                progress(done, len(slots))
    return waves


def word_samples(wave: np.ndarray, rate: int) -> np.ndarray:
    """Synthesiser output ``(samples,)`` at ``rate`` → the samples an archive holds for
    that word ``(samples',)``: 16 kHz, silence trimmed, peak :data:`WORD_PEAK`."""
    return effects.set_peak(effects.trim_silence(resample(wave, rate, SAMPLE_RATE)), WORD_PEAK)


def _assemble(slots: list[_Slot], waves: list[np.ndarray], gap_range, snr, rng,
              ) -> tuple[np.ndarray, list[int]]:
    """Lay the words out with their gaps; return the recording and each word's start
    sample. Noise, if any, is scaled against the words' own mean power."""
    pieces, starts, pos = [], [], 0
    for slot, wave in zip(slots, waves):
        pieces += [np.zeros(slot.gap, np.float32), wave]
        starts.append(pos + slot.gap)
        pos += slot.gap + len(wave)
    tail = round(gap_range[1] * SAMPLE_RATE)
    recording = np.concatenate(pieces + [np.zeros(tail, np.float32)])
    if snr is not None:
        speech = np.concatenate(waves).astype(np.float64)
        noise = effects.colored_noise(len(recording), 0.0, rng)
        recording = effects.add_noise(recording, noise, snr, float(np.mean(speech ** 2)))
        top = float(np.max(np.abs(recording)))
        recording = recording if top < 1.0 else effects.set_peak(recording, 0.99)
    return recording, starts
