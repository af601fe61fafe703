"""Word and character error rates.

Edit distances come from jiwer (a well-kept, C-accelerated implementation via
rapidfuzz) rather than our own dynamic programming.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jiwer


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
