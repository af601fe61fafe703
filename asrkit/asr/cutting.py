"""Where to cut a long recording before recognition: at pauses, not every 30 s.

``fixed`` cutting (the default, :func:`asrkit.asr.transcription.compute_log_probs`)
runs chunks of ``CHUNK_SECONDS`` with ``CONTEXT_SECONDS`` of audio either side and
keeps their centres. ``vad`` cutting finds speech with a detector (energy or Silero,
:func:`asrkit.search.segments.detect_speech`) and cuts in the middle of pauses, into
pieces no longer than the chunk limit; each piece is then recognised alone, like a
short recording, and the pieces' frames are laid end to end.
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

    ``speech`` are sorted speech regions in samples. Each cut goes in the middle of the
    longest pause of the second half of the allowed stretch (else of the first half);
    with no pause in reach, a piece is cut at its full length.
    """
    longest = max(grid, longest // grid * grid)
    pauses, last = [], 0  # (start, end) of the gaps between speech regions
    for a, b in speech:
        if a > last:
            pauses.append((last, a))
        last = max(last, b)
    if last < total:
        pauses.append((last, total))
    pieces, start = [], 0
    while total - start > longest:
        limit = start + longest
        cut = None
        for lo in (start + longest // 2, start + grid):
            inside = [(min(b, limit) - max(a, lo), a, b) for a, b in pauses
                      if min(b, limit) > max(a, lo)]
            if inside:
                _, a, b = max(inside)
                middle = (max(a, lo) + min(b, limit)) // 2
                cut = min(limit, max(start + grid, middle // grid * grid))
                break
        cut = cut if cut is not None else limit
        pieces.append((start, cut))
        start = cut
    pieces.append((start, total))
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
