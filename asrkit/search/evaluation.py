"""How well do embeddings tell words apart, compared with frame-level DTW?

Input: word-labelled segments (a manifest whose ``text`` is the word, each line a
single-word recording or a word's time span via ``offset``/``duration``). Reported
for the embeddings and for the DTW baseline on MFCCs:

- same-different average precision over all pairs (Carlin et al. 2011): rank every
  pair by distance; a pair is a hit when both segments hold the same word;
- query-by-example MAP and precision at 10: each segment in turn queries all others;
- mean time per query (embedding search: embed the query + score the collection;
  DTW: align the query with every other segment).

Under test conditions (:mod:`asrkit.conditions`: 8 kHz, noise, a room) every segment
is changed as recorded, before its silence is trimmed, seeded by its id: each run and
each method hears the same audio.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from ..audio import load_audio
from ..conditions import Condition, parse_conditions
from .dtw import DtwCollection, dtw_features
from .embedding import Embedder
from ..errors import ManifestError
from ..manifest import Utterance, read_manifest
from .segments import SegmentConfig, trim_silence

PRECISION_AT = 10


@dataclass(frozen=True)
class WordSegment:
    """One labelled word: its audio ``(samples,)`` with silence trimmed."""

    id: str
    label: str
    wave: np.ndarray
    speaker: str | None = None


@dataclass(frozen=True)
class EvalResult:
    method: str  # "embedding" or "dtw"
    segments: int
    queries: int  # segments whose word occurs at least twice
    average_precision: float  # same-different AP over all pairs
    mean_average_precision: float  # query-by-example MAP
    precision_at_10: float
    query_seconds: float  # mean wall time per query
    condition: str = "clean"  # the test condition the segments were heard in


def load_word_segments(utterances: Sequence[Utterance], trim: bool = True,
                       segment_config: SegmentConfig = SegmentConfig(),
                       progress: Callable[[int], None] | None = None,
                       condition: Condition | None = None) -> list[WordSegment]:
    """Read each labelled utterance's audio, under ``condition`` if given (seeded by the
    utterance's id); with ``trim`` cut leading/trailing silence."""
    labels = Counter(u.text.split()[0].upper() for u in utterances
                     if u.text and len(u.text.split()) == 1)
    if not any(n > 1 for n in labels.values()):  # else every score would be a hollow 0
        raise ManifestError(f"{len(utterances)} word recording(s) and no word among them "
                            "spoken twice: a query needs another recording of its word to "
                            "find; give at least two recordings of one word")
    out = []
    for utt in utterances:
        if not utt.text or len(utt.text.split()) != 1:
            raise ManifestError(f"{utt.id}: evaluation needs exactly one word in 'text', "
                                f"got {utt.text!r}")
        wave = load_audio(utt.audio, offset=utt.offset, duration=utt.duration)
        if condition is not None:
            wave = condition.apply(wave, utt.id)
        out.append(WordSegment(utt.id, utt.text.split()[0].upper(),
                               trim_silence(wave, segment_config) if trim else wave,
                               utt.speaker))
        if progress:
            progress(1)
    return out


def evaluate_embeddings(embedder: Embedder, words: Sequence[WordSegment]) -> EvalResult:
    """Cosine distances between embeddings; each query is embedded on its own and
    scored against the whole collection (exact search), as a user's search would be."""
    _check_enough(words)
    feats = [embedder.features(w.wave) for w in words]
    vectors = embedder.embed_frames(feats)  # (n, dim), unit length
    embedder.embed_frames(feats[:1])  # compile (or load the cached machine code) untimed
    seconds = 0.0
    for f in feats:
        start = time.perf_counter()
        q = embedder.embed_frames([f])
        np.argsort(-(vectors @ q[0]))
        seconds += time.perf_counter() - start
    distances = 1.0 - vectors @ vectors.T
    return _result("embedding", distances, [w.label for w in words], seconds)


def evaluate_dtw(words: Sequence[WordSegment]) -> EvalResult:
    """DTW on normalised MFCCs (cosine frame distance) between every pair."""
    _check_enough(words)
    feats = [dtw_features(w.wave) for w in words]
    collection = DtwCollection(feats)
    collection.distances(feats[0])  # compile (or load the cached machine code) untimed
    rows, seconds = [], 0.0
    for f in feats:
        start = time.perf_counter()
        rows.append(collection.distances(f))
        seconds += time.perf_counter() - start
    return _result("dtw", np.stack(rows), [w.label for w in words], seconds)


def same_different_ap(distances: np.ndarray, labels: Sequence[str]) -> float:
    """Average precision of all pairs i < j ranked by ``distances (n, n)``."""
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(labels), k=1)
    return average_precision(distances[i, j], labels[i] == labels[j])


def query_by_example(distances: np.ndarray, labels: Sequence[str]) -> tuple[float, float, int]:
    """Each segment queries the others → (MAP, precision at 10, number of queries).

    Segments whose word occurs only once have nothing to find; they are not queries
    but stay in the collection as distractors."""
    labels = np.asarray(labels)
    aps, p10 = [], []
    for q in range(len(labels)):
        others = np.arange(len(labels)) != q
        relevant = labels[others] == labels[q]
        if not relevant.any():
            continue
        d = distances[q, others]
        aps.append(average_precision(d, relevant))
        top = np.argsort(d, kind="stable")[:PRECISION_AT]
        p10.append(relevant[top].mean())
    return (float(np.mean(aps)) if aps else 0.0, float(np.mean(p10)) if p10 else 0.0, len(aps))


def average_precision(distances: np.ndarray, relevant: np.ndarray) -> float:
    """AP of a ranking by ascending ``distances (n,)``; ``relevant (n,)`` booleans."""
    order = np.argsort(distances, kind="stable")
    hits = np.asarray(relevant, bool)[order]
    if not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def evaluate_word_manifest(manifest: str | os.PathLike, embedder: Embedder,
                           dtw: bool = True, trim: bool = True,
                           progress: Callable[[int, int], None] | None = None,
                           conditions: str = "clean",
                           ) -> tuple[list[WordSegment], list[EvalResult]]:
    """Load the labelled words of ``manifest``; score ``embedder`` (and with ``dtw`` the
    DTW baseline) on them under each of ``conditions`` (comma-separated names, see
    :func:`asrkit.conditions.parse_conditions`) → the segments (as recorded) and one
    result per condition and method, in that order."""
    parsed = parse_conditions(conditions)
    utterances = read_manifest(manifest)
    if not utterances:
        raise ManifestError(f"{manifest}: holds no word recordings; nothing to evaluate")
    total = len(utterances) * len(parsed)
    done = itertools.count(1)  # load_word_segments reports each word as it is read
    step = (lambda _: progress(next(done), total)) if progress else None
    recorded, results = [], []
    for condition in parsed:
        segments = load_word_segments(utterances, trim=trim, progress=step,
                                      condition=None if condition.kind == "clean" else condition)
        recorded = recorded or segments
        scored = [evaluate_embeddings(embedder, segments)]
        if dtw:
            scored.append(evaluate_dtw(segments))
        results += [replace(r, condition=condition.name) for r in scored]
    return recorded, results


def _result(method: str, distances: np.ndarray, labels: list[str], seconds: float,
            ) -> EvalResult:
    mean_ap, p10, queries = query_by_example(distances, labels)
    return EvalResult(method, len(labels), queries, same_different_ap(distances, labels),
                      mean_ap, p10, seconds / max(len(labels), 1))


def _check_enough(words: Sequence[WordSegment]) -> None:
    if len(words) < 2:
        raise ManifestError(f"evaluation needs at least two word segments, and the manifest "
                            f"holds {len(words)}; give one line per spoken word")
