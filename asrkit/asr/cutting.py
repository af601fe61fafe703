"""Where to cut a long recording before recognition: at pauses, not every 30 s.

``fixed`` cutting (the default, :func:`asrkit.asr.transcription.compute_log_probs`)
runs chunks of ``CHUNK_SECONDS`` with ``CONTEXT_SECONDS`` of audio either side and
keeps their centres. ``vad`` cutting finds speech with a detector (energy or Silero,
:func:`asrkit.search.segments.detect_speech`) and cuts in the middle of every pause
(pieces longer than the chunk limit are cut again at the limit); each piece is then
recognised and decoded alone, like a short recording, so a pause is always a word
boundary (CTC models mark the space between words, not the silence between phrases).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..audio import SAMPLE_RATE, load_audio
from ..errors import ConfigError

CUTS = ("fixed", "vad")
DETECT_BLOCK_SECONDS = 600.0  # audio searched for speech at a time (memory bound)


def check_cut(cut: str, detector: str = "energy") -> None:
    """Raise :class:`ConfigError` for an unknown way of cutting or speech detector."""
    from ..search.segments import DETECTORS
    if cut not in CUTS:
        raise ConfigError(f"cut {cut!r} is not one of {', '.join(CUTS)}")
    if detector not in DETECTORS:
        raise ConfigError(f"detector {detector!r} is not one of {', '.join(DETECTORS)}")


def pause_cuts(speech: Sequence[tuple[int, int]], total: int, longest: int,
               grid: int = 1) -> list[tuple[int, int]]:
    """Pieces ``[(start, end), ...]`` in samples that tile ``[0, total)``, each at most
    ``longest`` samples (rounded down to ``grid``), cut at sample multiples of ``grid``.

    ``speech`` are sorted speech regions in samples (short pauses already bridged by the
    detector). Every pause between two regions is cut in its middle, so each stretch of
    speech is recognised on its own; a stretch longer than ``longest`` is then cut where
    it reaches that length.
    """
    longest = max(grid, longest // grid * grid)
    cuts = sorted({(a + b) // 2 // grid * grid
                   for (_, a), (b, _) in zip(speech, speech[1:]) if b > a} - {0})
    pieces, start = [], 0
    for end in [c for c in cuts if c < total] + [total]:
        while end - start > longest:
            pieces.append((start, start + longest))
            start += longest
        if end > start:
            pieces.append((start, end))
            start = end
    return pieces


def speech_regions(audio: str, offset: float, seconds: float, detector: str,
                   sample_rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """Speech regions (samples from ``offset``) of ``seconds`` of ``audio``, searched
    :data:`DETECT_BLOCK_SECONDS` at a time so memory stays bounded."""
    from ..search.segments import SegmentConfig, detect_speech  # numpy; silero if asked
    config = SegmentConfig(detector=detector)
    regions, start = [], 0.0
    while start < seconds:
        wave = load_audio(audio, offset=offset + start,
                          duration=min(DETECT_BLOCK_SECONDS, seconds - start))
        base = round(start * sample_rate)
        regions += [(base + round(s.start * sample_rate), base + round(s.end * sample_rate))
                    for s in detect_speech(np.asarray(wave, np.float32), config)]
        start += DETECT_BLOCK_SECONDS
    return regions
