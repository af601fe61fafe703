"""Word confidences you can read as probabilities: measuring and fitting calibration.

A decoder's word confidence is the geometric mean of its tokens' frame posteriors
(:mod:`asrkit.decoding.base`); nothing makes 0.9 mean "right 90 % of the time". Here:

- :func:`label_words` aligns hypothesis words to reference words (jiwer's edit-distance
  alignment) and marks each hypothesis word right (an ``equal`` chunk) or wrong
  (substituted or inserted);
- :func:`reliability` bins confidences (equal width) into a reliability curve and its
  expected calibration error, ECE = Σ_bins (count / words) · |accuracy − confidence|;
- :func:`fit_calibration` fits a monotone map on labelled words: temperature scaling of
  the log-confidence (``c ↦ exp(log c / T)``, one parameter, least negative
  log-likelihood) or isotonic regression (pool-adjacent-violators), the one whose
  held-out ECE is lower.

A :class:`Calibration` is stored in the model file (see
:func:`asrkit.asr.checkpoint.calibrated_record`) and applied to every word confidence
the model's transcripts carry. After calibration a confidence ``c`` means: of the words
given about ``c``, about a fraction ``c`` are right — on data like the calibration set.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import jiwer
import numpy as np
from scipy.optimize import minimize_scalar

from ..decoding.base import Hypothesis
from ..errors import ConfigError

Method = Literal["temperature", "isotonic"]
METHODS = ("temperature", "isotonic")
BINS = 10  # equal-width confidence bins of the reliability curve
_EPS = 1e-6  # confidences are kept in [_EPS, 1 - _EPS] before taking logs


@dataclass(frozen=True)
class ReliabilityBin:
    low: float  # confidence range of the bin, [low, high)
    high: float
    confidence: float  # mean confidence of its words (0 when empty)
    accuracy: float  # fraction of its words that are right (0 when empty)
    count: int  # words


@dataclass(frozen=True)
class Reliability:
    """A reliability curve: per bin, the mean confidence against the accuracy."""

    bins: tuple[ReliabilityBin, ...]

    @property
    def words(self) -> int:
        return sum(b.count for b in self.bins)

    @property
    def ece(self) -> float:
        """Expected calibration error: the words' mean |accuracy − confidence| gap, bin
        by bin (0 = calibrated; 0 too when there are no words)."""
        n = self.words
        return sum(b.count * abs(b.accuracy - b.confidence) for b in self.bins) / n if n else 0.0

    @property
    def accuracy(self) -> float:
        n = self.words
        return sum(b.count * b.accuracy for b in self.bins) / n if n else 0.0

    @property
    def confidence(self) -> float:
        n = self.words
        return sum(b.count * b.confidence for b in self.bins) / n if n else 0.0

    def as_dict(self) -> dict:
        return {"ece": round(self.ece, 6), "words": self.words,
                "accuracy": round(self.accuracy, 6), "confidence": round(self.confidence, 6),
                "bins": [{"low": round(b.low, 4), "high": round(b.high, 4),
                          "confidence": round(b.confidence, 6),
                          "accuracy": round(b.accuracy, 6), "count": b.count}
                         for b in self.bins]}


@dataclass(frozen=True)
class Calibration:
    """A monotone map from raw to calibrated word confidence, stored in a model file.

    ``temperature``: ``c ↦ exp(log c / temperature)``. ``isotonic``: piecewise-linear
    through the points ``(xs[i], ys[i])`` (xs increasing, ys non-decreasing), flat
    beyond the ends.
    """

    method: Method
    temperature: float = 1.0
    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    words: int = 0  # labelled words it was fitted on
    ece_before: float = 0.0  # ECE on those words, raw
    ece_after: float = 0.0  # ... and calibrated (held-out folds, see fit_calibration)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"calibration method must be one of {', '.join(METHODS)}, "
                              f"not {self.method!r}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"calibration temperature must be positive, not "
                              f"{self.temperature}")
        if self.method == "isotonic" and (len(self.xs) != len(self.ys) or not self.xs
                                          or np.any(np.diff(self.xs) < 0)
                                          or np.any(np.diff(self.ys) < 0)):
            raise ConfigError("isotonic calibration needs as many xs as ys, both "
                              "non-decreasing; the model file is damaged")

    def apply(self, confidence: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """Calibrated confidences, same shape as ``confidence``."""
        c = np.clip(np.asarray(confidence, dtype=np.float64), _EPS, 1 - _EPS)
        if self.method == "temperature":
            return np.exp(np.log(c) / self.temperature)
        return np.interp(c, self.xs, self.ys)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        d = dict(d)
        for k in ("xs", "ys"):
            d[k] = tuple(float(v) for v in d.get(k, ()))
        return cls(**d)


def calibrate_hypothesis(hyp: Hypothesis, calibration: Calibration | None) -> Hypothesis:
    """``hyp`` with each word's confidence mapped by ``calibration`` (None: unchanged)."""
    if calibration is None or not hyp.words:
        return hyp
    new = calibration.apply([w.confidence for w in hyp.words])
    words = tuple(dataclasses.replace(w, confidence=round(float(c), 4))
                  for w, c in zip(hyp.words, new))
    return dataclasses.replace(hyp, words=words)


def label_words(reference: str, hypothesis: str) -> list[bool]:
    """Whether each word of ``hypothesis`` (split on white space) is right: aligned to
    an equal reference word by minimum edit distance. Substituted and inserted words are
    wrong; deleted reference words have no hypothesis word to mark."""
    ref, hyp = reference.split(), hypothesis.split()
    if not hyp:
        return []
    if not ref:  # jiwer refuses empty references; every word is then an insertion
        return [False] * len(hyp)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    right = [False] * len(hyp)
    for chunk in out.alignments[0]:
        if chunk.type == "equal":
            right[chunk.hyp_start_idx:chunk.hyp_end_idx] = \
                [True] * (chunk.hyp_end_idx - chunk.hyp_start_idx)
    return right


def labelled_confidences(pairs: Iterable[tuple[str, Hypothesis]]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence (words,), right (words,) bool)`` over ``(reference, hypothesis)``
    pairs; references should be normalised as the model's output is."""
    conf, right = [], []
    for reference, hyp in pairs:
        conf += [w.confidence for w in hyp.words]
        right += label_words(reference, " ".join(w.word for w in hyp.words))
    return np.asarray(conf, dtype=np.float64), np.asarray(right, dtype=bool)


def reliability(confidence: Sequence[float], right: Sequence[bool],
                bins: int = BINS) -> Reliability:
    """The reliability curve of ``bins`` equal-width bins over 0..1 (a confidence of
    exactly 1 falls in the last)."""
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(right, dtype=np.float64)
    if c.shape != y.shape:
        raise ConfigError(f"{len(c)} confidences but {len(y)} right/wrong labels")
    index = np.minimum((c * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = index == b
        n = int(m.sum())
        out.append(ReliabilityBin(b / bins, (b + 1) / bins, float(c[m].mean()) if n else 0.0,
                                  float(y[m].mean()) if n else 0.0, n))
    return Reliability(tuple(out))


def fit_temperature(confidence: Sequence[float], right: Sequence[bool]) -> float:
    """The ``T`` whose ``exp(log c / T)`` gives the labels the least negative
    log-likelihood (searched over 0.01..100)."""
    log_c = np.log(np.clip(np.asarray(confidence, np.float64), _EPS, 1 - _EPS))
    y = np.asarray(right, dtype=np.float64)

    def nll(log_t: float) -> float:
        log_p = log_c / math.exp(log_t)  # log p, p the calibrated confidence
        p = np.clip(np.exp(log_p), _EPS, 1 - _EPS)
        return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).sum())

    result = minimize_scalar(nll, bounds=(math.log(0.01), math.log(100)), method="bounded",
                             options={"xatol": 1e-5})
    return float(math.exp(result.x))


def fit_isotonic(confidence: Sequence[float], right: Sequence[bool],
                 ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pool-adjacent-violators: the non-decreasing step function of confidence closest
    (least squares) to the labels. Returns ``(xs, ys)``: each pooled block's mean
    confidence and accuracy, for :class:`Calibration` to interpolate between."""
    order = np.argsort(confidence, kind="stable")
    c = np.asarray(confidence, dtype=np.float64)[order]
    y = np.asarray(right, dtype=np.float64)[order]
    sums_c, sums_y, counts = [], [], []  # one entry per block, merged while they violate
    for ci, yi in zip(c, y):
        sums_c.append(ci)
        sums_y.append(yi)
        counts.append(1)
        while len(counts) > 1 and sums_y[-2] * counts[-1] >= sums_y[-1] * counts[-2]:
            # the last block's mean is not above the one before: pool them (ties too,
            # so equal levels make one knot)
            sc, sy, n = sums_c.pop(), sums_y.pop(), counts.pop()
            sums_c[-1] += sc
            sums_y[-1] += sy
            counts[-1] += n
    n = np.asarray(counts, dtype=np.float64)
    return (tuple(float(v) for v in np.asarray(sums_c) / n),
            tuple(float(v) for v in np.asarray(sums_y) / n))


def fit_calibration(confidence: Sequence[float], right: Sequence[bool],
                    method: Method | Literal["auto"] = "auto", bins: int = BINS,
                    ) -> Calibration:
    """Fit a :class:`Calibration` on labelled words.

    With ``auto``, each method is fitted on half the words and scored on the other half
    (alternate words, both ways round); the one with the lower held-out ECE is then
    fitted on all of them. ``ece_after`` is that held-out ECE (an honest estimate; the
    ECE on the fitting words themselves would flatter isotonic regression).
    """
    if method != "auto" and method not in METHODS:
        raise ConfigError(f"calibration method must be auto or one of {', '.join(METHODS)}, "
                          f"not {method!r}")
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(right, dtype=bool)
    if len(c) < 2 or y.all() or not y.any():
        raise ConfigError(f"calibration needs right and wrong words to learn from; got "
                          f"{len(c)} word(s), {int(y.sum())} right: give more or harder data")
    methods = METHODS if method == "auto" else (method,)
    held_out = {m: _held_out_ece(m, c, y, bins) for m in methods}
    best = min(methods, key=held_out.__getitem__)
    fitted = _fit(best, c, y)
    return dataclasses.replace(fitted, words=len(c), ece_before=reliability(c, y, bins).ece,
                               ece_after=held_out[best])


def _fit(method: Method, c: np.ndarray, y: np.ndarray) -> Calibration:
    if method == "temperature":
        return Calibration("temperature", temperature=fit_temperature(c, y))
    xs, ys = fit_isotonic(c, y)
    return Calibration("isotonic", xs=xs, ys=ys)


def _held_out_ece(method: Method, c: np.ndarray, y: np.ndarray, bins: int) -> float:
    """ECE of ``method`` fitted on one half of the words, over the other half (two-fold,
    the calibrated confidences of both halves pooled)."""
    folds = np.arange(len(c)) % 2 == 0
    calibrated = np.empty_like(c)
    for test in (folds, ~folds):
        calibrated[test] = _fit(method, c[~test], y[~test]).apply(c[test])
    return reliability(calibrated, y, bins).ece
