"""Word and character error rates, and word-time errors.

Edit distances come from jiwer (a well-kept, C-accelerated implementation via
rapidfuzz) rather than our own dynamic programming. Word times are scored on the words
that alignment finds right: how far each one's start and end are from the truth.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import jiwer
import numpy as np


@dataclass(frozen=True)
class ErrorCounts:
    substitutions: int
    deletions: int
    insertions: int
    reference_length: int  # words (or characters) in the references

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference unit (can exceed 1 with many insertions)."""
        return self.errors / self.reference_length if self.reference_length else \
            float(self.errors > 0)

    def as_dict(self) -> dict:
        return {"rate": round(self.rate, 6), "substitutions": self.substitutions,
                "deletions": self.deletions, "insertions": self.insertions,
                "reference_length": self.reference_length}


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorCounts:
    """Word-level S/D/I counts over a corpus (words split on white space)."""
    # jiwer splits on single spaces only: fold tabs and newlines first, or "A\tB"
    # counts as one word to jiwer but two in the reference length.
    refs = [" ".join(r.split()) for r in references]
    hyps = [" ".join(h.split()) for h in hypotheses]
    return _counts(refs, hyps, jiwer.process_words, lambda s: len(s.split()))


def char_errors(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorCounts:
    """Character-level S/D/I counts; spaces count as characters, runs folded."""
    refs = [" ".join(r.split()) for r in references]
    hyps = [" ".join(h.split()) for h in hypotheses]
    return _counts(refs, hyps, jiwer.process_characters, len)


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    return word_errors(references, hypotheses).rate


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    return char_errors(references, hypotheses).rate


def _counts(refs, hyps, process, size) -> ErrorCounts:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    # jiwer rejects empty references: every unit hypothesised for one is an insertion.
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    extra = sum(size(h) for r, h in zip(refs, hyps) if not r.strip())
    if not pairs:
        return ErrorCounts(0, 0, extra, 0)
    out = process([r for r, _ in pairs], [h for _, h in pairs])
    n = sum(size(r) for r, _ in pairs)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions + extra, n)


# -- word times ----------------------------------------------------------------------


@dataclass(frozen=True)
class TimedWord:
    """A word and its span, seconds from the start of the recording."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class TimeError:
    """One word heard as said: its timed-minus-true start and end, seconds (negative:
    too early)."""

    word: str
    start: float
    end: float


def pair_words(reference: Sequence[TimedWord], hypothesis: Sequence[TimedWord],
               ) -> list[tuple[int, int]]:
    """``(reference index, hypothesis index)`` of each word the hypothesis got right:
    the matches ("equal" runs) of the same minimum-edit word alignment that
    :func:`word_errors` counts. Misrecognised, missed and inserted words have no
    partner, so their times are not scored (they are in the error rate instead)."""
    if not reference or not hypothesis:
        return []
    ref = " ".join(w.word for w in reference)
    hyp = " ".join(w.word for w in hypothesis)
    for w in (*reference, *hypothesis):
        if not w.word or len(w.word.split()) != 1:
            raise ValueError(f"a timed word must be one word without spaces, got {w.word!r}")
    pairs = []
    for chunk in jiwer.process_words(ref, hyp).alignments[0]:
        if chunk.type == "equal":
            pairs += zip(range(chunk.ref_start_idx, chunk.ref_end_idx),
                         range(chunk.hyp_start_idx, chunk.hyp_end_idx))
    return pairs


def word_time_errors(reference: Sequence[TimedWord], hypothesis: Sequence[TimedWord],
                     ) -> list[TimeError]:
    """Start and end error of every hypothesis word paired with a reference word
    (:func:`pair_words`), in reference order."""
    return [TimeError(reference[r].word, hypothesis[h].start - reference[r].start,
                      hypothesis[h].end - reference[r].end)
            for r, h in pair_words(reference, hypothesis)]


@dataclass(frozen=True)
class TimeErrorSummary:
    """Word-time accuracy over a set of words, in milliseconds.

    ``*_median`` and ``*_p95`` are of the absolute error (how far off); ``*_bias`` is
    the median signed error (a systematic shift: negative = too early);
    ``boundary_median`` is the median absolute error over starts and ends together.
    """

    words: int  # words scored
    start_median: float
    start_p95: float
    start_bias: float
    end_median: float
    end_p95: float
    end_bias: float
    boundary_median: float

    def as_dict(self) -> dict:
        return {"words": self.words, **{f"{k}_ms": round(v, 1) for k, v in
                                        asdict(self).items() if k != "words"}}


def summarize_time_errors(errors: Sequence[TimeError]) -> TimeErrorSummary:
    """Median / 95th-percentile absolute and median signed errors, milliseconds
    (NaN when no word was scored)."""
    if not errors:
        return TimeErrorSummary(0, *[math.nan] * 7)
    starts = np.array([e.start for e in errors], dtype=np.float64) * 1000
    ends = np.array([e.end for e in errors], dtype=np.float64) * 1000
    both = np.abs(np.concatenate([starts, ends]))
    return TimeErrorSummary(
        len(errors), float(np.median(np.abs(starts))), float(np.percentile(np.abs(starts), 95)),
        float(np.median(starts)), float(np.median(np.abs(ends))),
        float(np.percentile(np.abs(ends), 95)), float(np.median(ends)), float(np.median(both)))
