"""Spoken term detection as a yes/no decision: term-weighted value and score thresholds.

A ranked hit list answers "where is this most likely said?"; a detector must also say
"and here it is not": every hit whose score reaches a threshold θ is a *yes*. Two
measures of that decision, as in the NIST spoken-term-detection evaluations:

- term-weighted value, ``TWV(θ) = 1 - mean over terms of (P_miss(t, θ) + β P_FA(t, θ))``
  with ``P_miss = 1 - correct / true``, ``P_FA = false alarms / (trials - true)`` and
  one non-target trial per second of audio searched; ``β = 999.9`` (a false alarm is
  far cheaper than a miss per trial, but there are a great many trials). Terms that are
  never said are left out of the mean. A detector that says nothing scores 0, a perfect
  one 1; false alarms can take it far below 0. *ATWV* is the value at the threshold the
  system actually uses; *MTWV* the best value over all thresholds;
- false alarms per term per hour of audio searched, which is what
  :func:`threshold_for_false_alarms` turns into a threshold for ``search --threshold auto``.

A detection is correct when its midpoint lies within :data:`TOLERANCE` seconds of a true
occurrence of its term in the same recording that no better-scoring detection claimed;
every other detection is a false alarm (a second hit on one occurrence included).
Scores are similarities: higher is more confident, and a threshold keeps ``score >= θ``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ConfigError

BETA = 999.9  # NIST STD 2006: (cost/value ratio 0.1) × (1/P(term) - 1), P(term) = 1e-4
TOLERANCE = 0.5  # seconds a detection's midpoint may lie outside the true span
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Occurrence:
    """Where a term is truly said: ``recording`` is any key shared with the detections
    (e.g. the resolved audio path); times are seconds in that recording."""

    term: str
    recording: str
    start: float
    end: float


@dataclass(frozen=True)
class Detection:
    """A system's claim that ``term`` is said at ``start``..``end`` of ``recording``."""

    term: str
    recording: str
    start: float
    end: float
    score: float  # higher = more confident


@dataclass(frozen=True)
class ScoredDetections:
    """Detections judged against the truth, everything a threshold sweep needs.

    ``terms`` holds only terms said at least once; detections of other terms are
    dropped (NIST leaves such terms out of the average)."""

    terms: tuple[str, ...]
    true_counts: np.ndarray  # (terms,) occurrences of each term
    term: np.ndarray  # (detections,) index into ``terms``
    score: np.ndarray  # (detections,) float
    correct: np.ndarray  # (detections,) bool
    seconds: float  # audio searched: one non-target trial per second

    def __post_init__(self):
        if self.seconds <= 0 or not math.isfinite(self.seconds):
            raise ConfigError(f"detection scoring needs the seconds of audio searched, "
                              f"got {self.seconds}")
        if np.any(self.true_counts >= self.seconds):
            raise ConfigError("a term occurs more often than there are seconds of audio; "
                              "give the length of the whole archive searched")

    @property
    def hours(self) -> float:
        return self.seconds / SECONDS_PER_HOUR

    def select(self, terms: Sequence[str]) -> "ScoredDetections":
        """Only the detections and occurrences of ``terms`` (e.g. a calibration half)."""
        keep = [self.terms.index(t) for t in sorted(set(terms))]
        new = np.full(len(self.terms), -1)
        new[keep] = np.arange(len(keep))
        mine = new[self.term] >= 0
        return ScoredDetections(tuple(self.terms[i] for i in keep), self.true_counts[keep],
                                new[self.term][mine], self.score[mine], self.correct[mine],
                                self.seconds)


def score_detections(detections: Sequence[Detection], occurrences: Sequence[Occurrence],
                     seconds: float, tolerance: float = TOLERANCE) -> ScoredDetections:
    """Judge each detection correct or false alarm (module docstring), best score first."""
    truth: dict[tuple[str, str], list[Occurrence]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for o in occurrences:
        truth[o.term, o.recording].append(o)
        counts[o.term] += 1
    terms = tuple(sorted(counts))
    index = {t: i for i, t in enumerate(terms)}
    kept = sorted((d for d in detections if d.term in index), key=lambda d: -d.score)
    claimed: set[Occurrence] = set()
    correct = []
    for d in kept:
        middle = (d.start + d.end) / 2
        free = [o for o in truth.get((d.term, d.recording), ())
                if o not in claimed and o.start - tolerance <= middle <= o.end + tolerance]
        if free:  # the nearest unclaimed occurrence
            claimed.add(min(free, key=lambda o: abs((o.start + o.end) / 2 - middle)))
        correct.append(bool(free))
    return ScoredDetections(terms, np.array([counts[t] for t in terms], np.int64),
                            np.array([index[d.term] for d in kept], np.int64),
                            np.array([d.score for d in kept], np.float64),
                            np.array(correct, bool), float(seconds))


def term_weighted_value(s: ScoredDetections, threshold: float | None) -> float:
    """TWV when every detection scoring at least ``threshold`` is a yes (None: none is)."""
    if not s.terms:
        raise ConfigError("no term is said in the reference; term-weighted value needs "
                          "at least one true occurrence")
    keep = np.zeros(len(s.score), bool) if threshold is None else s.score >= threshold
    return float(_contributions(s)[keep].sum())


def twv_curve(s: ScoredDetections) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds (k,), values (k,))``: TWV at each distinct detection score, highest
    threshold first (the value with no detection at all is 0)."""
    if not s.terms:
        raise ConfigError("no term is said in the reference; term-weighted value needs "
                          "at least one true occurrence")
    order = np.argsort(-s.score, kind="stable")
    scores, total = s.score[order], np.cumsum(_contributions(s)[order])
    last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
    return scores[last], total[last]  # the value once every tie at a score is in


def maximum_twv(s: ScoredDetections) -> tuple[float, float | None]:
    """``(MTWV, threshold)``: the best TWV over thresholds and the highest threshold that
    reaches it; threshold None when saying nothing is best (MTWV 0)."""
    thresholds, values = twv_curve(s)
    if not len(values) or values.max() <= 0:
        return 0.0, None
    best = int(np.argmax(values))  # first maximum = highest threshold
    return float(values[best]), float(thresholds[best])


def false_alarms_per_hour(s: ScoredDetections, threshold: float | None) -> float:
    """False alarms per term per hour of audio at ``threshold`` (None: no detection)."""
    if threshold is None or not s.terms:
        return 0.0
    wrong = int(np.count_nonzero(~s.correct & (s.score >= threshold)))
    return wrong / (len(s.terms) * s.hours)


def recall(s: ScoredDetections, threshold: float | None) -> float:
    """Share of all true occurrences found at ``threshold`` (None: no detection)."""
    total = int(s.true_counts.sum())
    if threshold is None or total == 0:
        return 0.0
    return int(np.count_nonzero(s.correct & (s.score >= threshold))) / total


def threshold_for_false_alarms(s: ScoredDetections, per_hour: float) -> float:
    """The lowest threshold whose false alarms per term per hour (on ``s``) stay within
    ``per_hour``: everything that can be said yes within that budget is.

    The threshold lies half-way between the first false alarm that would break the
    budget and the next higher score, so a slightly different score on new data falls
    on the same side. Below every detection when all false alarms fit the budget."""
    if not math.isfinite(per_hour) or per_hour < 0:
        raise ConfigError(f"the false-alarm target must be a non-negative number per hour, "
                          f"not {per_hour}")
    if not s.terms or not len(s.score):
        raise ConfigError("no scored detections to choose a threshold from; calibrate on "
                          "recordings where the terms are said")
    allowed = math.floor(per_hour * len(s.terms) * s.hours + 1e-9)
    alarms = np.sort(s.score[~s.correct])[::-1]  # (false alarms,) best first
    if allowed >= len(alarms):
        return float(np.nextafter(s.score.min(), -np.inf))
    breaking = alarms[allowed]  # first false alarm over the budget: must be refused
    above = s.score[s.score > breaking]
    if not len(above):
        return float(np.nextafter(breaking, np.inf))
    return float((breaking + above.min()) / 2)


def average_precision_of_hits(s: ScoredDetections) -> np.ndarray:
    """Per term: average precision of its detections ranked by score, over all its true
    occurrences (those never detected add precision 0). ``(terms,)``."""
    out = np.zeros(len(s.terms))
    for t in range(len(s.terms)):
        mine = np.flatnonzero(s.term == t)
        hits = s.correct[mine[np.argsort(-s.score[mine], kind="stable")]]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        out[t] = precision[hits].sum() / s.true_counts[t]
    return out


def _contributions(s: ScoredDetections) -> np.ndarray:
    """What each detection adds to TWV when it is a yes ``(detections,)``: a correct one
    1 / (terms · true), a false alarm -β / (terms · (trials - true))."""
    true = s.true_counts[s.term].astype(np.float64)
    gain = 1.0 / true
    loss = -BETA / (s.seconds - true)
    return np.where(s.correct, gain, loss) / len(s.terms)
