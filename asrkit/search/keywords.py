"""Keyword spotting on CTC posteriors: where a typed word's labels fit the recogniser's output.

A typed word (or phrase) becomes its CTC labels ``l1 .. lL`` (as forced alignment
encodes text, :func:`asrkit.asr.alignment.text_labels`). Its blank-augmented sequence
without the outer blanks, ``l1, blank, l2, ..., blank, lL``, is matched against every
stretch of a recording's log-posteriors ``(frames, vocab)`` at once: a Viterbi pass whose
first state may be entered at any frame (a sub-sequence match) gives, for each frame
``t``, the best path of the whole word that ends on ``lL`` at ``t`` and where it started.

Score: the path's log-probability divided by the number of labels, so words of any
length compare; reported as ``exp`` of that (a geometric-mean posterior per label,
1 = certain). Each local best end frame is a candidate; overlapping candidates keep
the best (non-maximum suppression), as spoken-example search merges its windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..asr.alignment import Labels
from ..errors import ConfigError

MIN_SCORE = -6.0  # mean log-posterior per label below which a stretch is no candidate
MAX_SECONDS_PER_LABEL = 1.0  # a match longer than this per label is no candidate


@dataclass(frozen=True)
class KeywordMatch:
    start: int  # first frame of the word's first label
    end: int  # one past the word's last frame
    score: float  # mean log-posterior per label (0 = certain)


def augmented_states(ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Labels → the blank-augmented sequence without outer blanks ``(2L - 1,)`` and
    whether each state may be entered from two states back (skipping a blank between
    two different labels) ``(2L - 1,)``."""
    if not ids:
        raise ConfigError("a keyword needs at least one label")
    ext = np.zeros(2 * len(ids) - 1, np.int64)
    ext[0::2] = ids
    jump = np.zeros(len(ext), np.bool_)
    jump[2::2] = ext[2::2] != ext[:-2:2]
    return ext, jump


@numba.njit(cache=True)
def _end_scores(lp, ext, jump):  # pragma: no cover (compiled)
    """``lp (frames, vocab)`` → best path score ending on the last state at each frame
    ``(frames,)`` and that path's first frame ``(frames,)``."""
    frames, states = lp.shape[0], ext.shape[0]
    alpha = np.full(states, -np.inf)
    first = np.zeros(states, np.int64)
    new = np.empty(states)
    new_first = np.empty(states, np.int64)
    best_end = np.full(frames, -np.inf)
    best_first = np.zeros(frames, np.int64)
    for t in range(frames):
        for s in range(states):
            best, origin = alpha[s], first[s]
            if s >= 1 and alpha[s - 1] > best:
                best, origin = alpha[s - 1], first[s - 1]
            if s >= 2 and jump[s] and alpha[s - 2] > best:
                best, origin = alpha[s - 2], first[s - 2]
            if s == 0 and best < 0.0:  # start afresh here (ties keep the older start)
                best, origin = 0.0, t
            new[s] = best + lp[t, ext[s]]
            new_first[s] = origin
        alpha[:] = new
        first[:] = new_first
        best_end[t] = alpha[states - 1]
        best_first[t] = first[states - 1]
    return best_end, best_first


def spot(log_probs: np.ndarray, labels: Labels, frame_seconds: float,
         min_score: float = MIN_SCORE, separator: int | None = None) -> list[KeywordMatch]:
    """Where ``labels`` fit ``log_probs (frames, vocab)`` (CTC log-posteriors, blank 0):
    non-overlapping matches, best first, each scoring at least ``min_score``.

    ``separator``: the word separator's label. When given, a match must stand as a whole
    word: where the model hears another letter right before or after it (``SIX`` in
    ``SIXTY``) rather than the separator, the match is charged the separator's best
    log-posterior in between (:func:`_boundary_cost`)."""
    lp = np.ascontiguousarray(log_probs, dtype=np.float32)
    ext, jump = augmented_states(labels.ids)
    if lp.shape[0] < len(ext) // 2 + 1:
        return []
    totals, firsts = _end_scores(lp, ext, jump)
    scores = totals / len(labels.ids)  # (frames,)
    ends = np.arange(len(scores))
    longest = MAX_SECONDS_PER_LABEL * len(labels.ids) / frame_seconds
    ok = (scores >= min_score) & (ends - firsts + 1 <= longest)
    # A local best end: no better score one frame either side.
    padded = np.concatenate([[-np.inf], scores, [-np.inf]])
    ok &= (scores >= padded[:-2]) & (scores >= padded[2:])
    heard = lp.argmax(-1)  # (frames,)
    found = []
    for t in np.flatnonzero(ok).tolist():
        a, b = _held(heard, int(firsts[t]), t + 1, labels.ids[0], labels.ids[-1])
        score = float(scores[t])
        if separator is not None:
            score += _boundary_cost(lp, heard, a, b, separator) / len(labels.ids)
        if score >= min_score:
            found.append(KeywordMatch(a, b, score))
    found.sort(key=lambda m: -m.score)
    taken: list[tuple[int, int]] = []
    out = []
    for m in found:
        if any(m.start < e and s < m.end for s, e in taken):
            continue
        taken.append((m.start, m.end))
        out.append(m)
    return out


def _boundary_cost(lp: np.ndarray, heard: np.ndarray, a: int, b: int, separator: int,
                   ) -> float:
    """Log-probability (<= 0) that frames ``[a, b)`` are a whole word: on each side, 0
    when the nearest symbol heard (blanks skipped) is the separator or there is none
    (the recording's edge); else the separator's best log-posterior between the match
    and that symbol, its first frame included."""
    cost = 0.0
    j = a - 1
    while j >= 0 and heard[j] == 0:
        j -= 1
    if j >= 0 and heard[j] != separator:
        cost += float(lp[j:a, separator].max())
    j = b
    while j < len(heard) and heard[j] == 0:
        j += 1
    if j < len(heard) and heard[j] != separator:
        cost += float(lp[b:j + 1, separator].max())
    return cost


def _held(heard: np.ndarray, a: int, b: int, first: int, last: int) -> tuple[int, int]:
    """Frames ``[a, b)`` widened over the frames where the model hears the first label
    just before and the last label just after. The scores alone would cut a label held
    for several frames to one (each further frame only adds a log-probability below 0)."""
    while a > 0 and heard[a - 1] == first:
        a -= 1
    while b < len(heard) and heard[b] == last:
        b += 1
    return a, b
