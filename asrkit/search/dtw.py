"""Dynamic time warping on frame features: the classic query-by-example baseline.

Frame distances are cosine distances ``1 - cos(a_i, b_j)`` computed as one matrix
product; only the dynamic programme runs frame by frame, compiled with numba. Costs are
normalised by the length of the warping path, so words of different lengths compare.

- :func:`dtw_distance`: whole sequence against whole sequence (isolated words).
- :func:`subsequence_dtw`: a query against the best-matching stretch of a long
  sequence (searching an archive without segmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ..jit import njit

from ..features import FeatureConfig, compute_features


DTW_FEATURES = FeatureConfig(kind="mfcc", n_mels=40, n_mfcc=13)  # the baseline's frames


@dataclass(frozen=True)
class DtwMatch:
    """Best subsequence alignment of a query inside a longer sequence."""

    cost: float  # mean cosine distance along the path, 0 (same) .. 2 (opposite)
    start: int  # first matched frame of the long sequence
    end: int  # one past the last matched frame


def dtw_features(wave: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """The baseline's frames: MFCCs of ``wave (samples,)`` with per-sequence mean and
    variance normalisation (removes channel and most speaker offset) → ``(frames, feats)``."""
    feats = compute_features(wave, config or DTW_FEATURES).numpy().astype(np.float32)
    return normalize_sequence(feats)


def normalize_sequence(feats: np.ndarray) -> np.ndarray:
    """Per-dimension mean/variance normalisation of one ``(frames, feats)`` sequence."""
    std = feats.std(axis=0) if len(feats) > 1 else np.ones(feats.shape[1], np.float32)
    return (feats - feats.mean(axis=0)) / np.maximum(std, 1e-3)


def cosine_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a (n, feats)``, ``b (m, feats)`` → cosine distances ``(n, m)`` (float32)."""
    return (1.0 - _unit_rows(a) @ _unit_rows(b).T).astype(np.float32)


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Path-length-normalised DTW cost between ``a (n, feats)`` and ``b (m, feats)``."""
    return float(_dtw(cosine_cost(a, b)))


def subsequence_dtw(query: np.ndarray, target: np.ndarray) -> DtwMatch:
    """Best match of ``query (n, feats)`` anywhere inside ``target (m, feats)``."""
    cost, start, end = _subsequence_dtw(cosine_cost(query, target))
    return DtwMatch(float(cost), int(start), int(end))


class DtwCollection:
    """Many sequences prepared once, so one query can be compared with all of them."""

    def __init__(self, seqs: Sequence[np.ndarray]):
        units = [_unit_rows(s) for s in seqs]
        self.offsets = np.cumsum([0] + [len(s) for s in units]).astype(np.int64)
        self.frames = np.ascontiguousarray(np.concatenate(units))  # (total_frames, feats)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def distances(self, query: np.ndarray) -> np.ndarray:
        """:func:`dtw_distance` from ``query (n, feats)`` to every sequence → ``(len,)``."""
        return _dtw_to_all(_unit_rows(query), self.frames, self.offsets)


def pairwise_dtw(seqs: Sequence[np.ndarray]) -> np.ndarray:
    """Matrix ``(n, n)`` of :func:`dtw_distance` between all sequences."""
    collection = DtwCollection(seqs)
    return np.stack([collection.distances(s) for s in seqs])


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


@njit(cache=True)
def _dtw(cost):
    """Accumulated cost (steps right, down, diagonal) divided by the path length."""
    n, m = cost.shape
    acc = np.empty(m)
    steps = np.empty(m)
    acc[0], steps[0] = cost[0, 0], 1.0
    for j in range(1, m):
        acc[j], steps[j] = acc[j - 1] + cost[0, j], steps[j - 1] + 1.0
    for i in range(1, n):
        diag, diag_steps = acc[0], steps[0]
        acc[0], steps[0] = acc[0] + cost[i, 0], steps[0] + 1.0
        for j in range(1, m):
            up, up_steps = acc[j], steps[j]
            best, best_steps = diag, diag_steps
            if up < best:
                best, best_steps = up, up_steps
            if acc[j - 1] < best:
                best, best_steps = acc[j - 1], steps[j - 1]
            diag, diag_steps = up, up_steps
            acc[j], steps[j] = best + cost[i, j], best_steps + 1.0
    return acc[m - 1] / steps[m - 1]


@njit(cache=True)
def _subsequence_dtw(cost):
    """Like :func:`_dtw` but the path may start and end at any column of ``cost``
    (query frames × target frames); returns (normalised cost, start, end)."""
    n, m = cost.shape
    acc, steps, start = cost[0].astype(np.float64), np.ones(m), np.arange(m)
    new_acc, new_steps, new_start = np.empty(m), np.empty(m), np.empty(m, np.int64)
    for i in range(1, n):
        for j in range(m):
            best, best_steps, best_start = acc[j], steps[j], start[j]  # vertical step
            if j > 0:
                if acc[j - 1] < best:  # diagonal step
                    best, best_steps, best_start = acc[j - 1], steps[j - 1], start[j - 1]
                if new_acc[j - 1] < best:  # horizontal step
                    best = new_acc[j - 1]
                    best_steps, best_start = new_steps[j - 1], new_start[j - 1]
            new_acc[j], new_steps[j], new_start[j] = best + cost[i, j], best_steps + 1.0, best_start
        acc, new_acc = new_acc, acc
        steps, new_steps = new_steps, steps
        start, new_start = new_start, start
    norm = acc / steps
    end = int(np.argmin(norm))
    return norm[end], start[end], end + 1


@njit(cache=True)
def _dtw_to_all(query, frames, offsets):
    out = np.empty(len(offsets) - 1)
    for k in range(len(offsets) - 1):
        out[k] = _dtw(1.0 - query @ frames[offsets[k]:offsets[k + 1]].T)
    return out
