"""Query by example: find where a spoken word (given as audio) occurs in an index.

A query is trimmed to its speech, embedded with the index's own embedder and compared
with every segment (FAISS). Windows of several lengths overlap, so one occurrence
answers many times: hits that overlap in the same recording are merged, keeping the
best-scoring window. Optionally the best hits are re-ranked by subsequence DTW on
MFCC frames, which also tightens each hit's boundaries to the aligned stretch.

Several examples of one term can be fused (the mean of their unit embeddings) to
average out the speaker of any single example.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Literal, Sequence

import numpy as np

from ..audio import MIN_PEAK, SAMPLE_RATE, load_audio
from ..errors import AudioError, ConfigError
from .index import SearchIndex
from .segments import trim_silence

CANDIDATES_PER_HIT = 10  # neighbours fetched per wanted hit at first (windows overlap)
MAX_CANDIDATES = 20_000
RERANK_POOL = 3  # DTW re-ranks this many times `top` merged hits
RERANK_MARGIN = 0.5  # search this share of the query's length around a hit
_SPAN = re.compile(r"^(?P<file>.+):(?P<start>\d+(?:\.\d*)?)-(?P<end>\d+(?:\.\d*)?)$")


@dataclass(frozen=True)
class Query:
    """A spoken example: its name (for the output) and waveform ``(samples,)``."""

    name: str
    wave: np.ndarray


@dataclass(frozen=True)
class Hit:
    query: str
    source: str  # archive entry name (manifest id or path in the archive folder)
    audio: str  # audio file path
    start: float  # seconds in the audio file
    end: float
    score: float  # cosine similarity of embeddings (1 - DTW cost after re-ranking)
    segment: int  # id of the best segment in the index


def load_query(path: str | os.PathLike, start: float | None = None,
               end: float | None = None) -> Query:
    """A query from an audio file, or from a stretch of one (seconds)."""
    offset = start or 0.0
    duration = None if end is None else end - offset
    if duration is not None and duration <= 0:
        raise ConfigError(f"{path}: query span {offset}-{end} is empty; END must exceed START")
    name = str(path) if start is None and end is None else f"{path}:{offset:g}-{end:g}"
    return Query(name, load_audio(path, offset=offset, duration=duration))


def parse_span(text: str) -> Query:
    """``FILE:START-END`` (seconds) → the query for that stretch of FILE."""
    m = _SPAN.match(text)
    if not m:
        raise ConfigError(f"{text!r}: a span must look like FILE:START-END, e.g. "
                          "talk.wav:12.3-12.9 (seconds)")
    return load_query(m["file"], float(m["start"]), float(m["end"]))


def search(
    index: SearchIndex | str | os.PathLike,
    queries: Sequence[Query | str | os.PathLike],
    top: int = 10, threshold: float | None = None,
    rerank: Literal["dtw"] | None = None, fuse: bool = False,
) -> list[list[Hit]]:
    """Search ``index`` for each query; return one best-first hit list per query.

    ``threshold``: drop hits whose embedding similarity is below it. ``fuse``: treat all
    queries as examples of one term and return a single list. ``rerank="dtw"``:
    re-order by subsequence DTW on MFCCs (slower, often more precise).
    """
    if top < 1:
        raise ConfigError(f"top must be at least 1, not {top}")
    if rerank not in (None, "dtw"):
        raise ConfigError(f"unknown re-ranking {rerank!r}; expected 'dtw'")
    opened = not isinstance(index, SearchIndex)
    idx = SearchIndex(index) if opened else index
    try:
        qs = [q if isinstance(q, Query) else load_query(q) for q in queries]
        if not qs:
            raise ConfigError("no query given: pass at least one audio file or span")
        for q in qs:
            _check_audible(q, idx.segment_config.min_speech)
        waves = [trim_silence(q.wave, idx.segment_config) for q in qs]
        vectors = idx.embed_queries(waves)  # (queries, dim)
        if fuse:
            vectors = _normalise(vectors.mean(axis=0, keepdims=True))
            qs = [Query(" + ".join(q.name for q in qs), waves[0])]
            waves = waves[:1]
        pool = top * RERANK_POOL if rerank else top
        results = [_nearest_hits(idx, q.name, v, pool, threshold)
                   for q, v in zip(qs, vectors)]
        if rerank == "dtw":
            results = [_rerank_dtw(hits, w)[:top] for hits, w in zip(results, waves)]
        return [hits[:top] for hits in results]
    finally:
        if opened:
            idx.close()


def merge_overlapping(hits: Sequence[Hit]) -> list[Hit]:
    """Best-first ``hits`` with every hit that overlaps a better one in the same
    recording dropped (greedy non-maximum suppression)."""
    hits = sorted(hits, key=lambda h: -h.score)
    keep = _suppress_overlaps([h.source for h in hits], [h.start for h in hits],
                              [h.end for h in hits])
    return [hits[i] for i in keep]


def _suppress_overlaps(sources: Sequence, starts: Sequence[float], ends: Sequence[float],
                       ) -> list[int]:
    """Indices of the rows (best first) that overlap no earlier kept row of their source."""
    kept: dict = {}
    out = []
    for i, (src, a, b) in enumerate(zip(sources, starts, ends)):
        same = kept.setdefault(src, [])
        if any(a < e and s < b for s, e in same):
            continue
        same.append((a, b))
        out.append(i)
    return out


def _nearest_hits(idx: SearchIndex, name: str, vector: np.ndarray, want: int,
                  threshold: float | None) -> list[Hit]:
    """Fetch ever more neighbours until ``want`` merged hits (or everything) is found.

    Overlaps are resolved on bare (source, start, end) rows; full records are read
    only for the hits that survive."""
    k = min(want * CANDIDATES_PER_HIT, MAX_CANDIDATES)
    while True:
        scores, ids = idx.nearest(vector[None, :], k)
        got = len(ids[0])
        ok = ids[0] >= 0
        if threshold is not None:
            ok &= scores[0] >= threshold
        scores, ids = scores[0][ok], ids[0][ok]
        spans = idx.spans(ids)  # (n, 3): source id, start, end
        keep = _suppress_overlaps(spans[:, 0].tolist(), spans[:, 1], spans[:, 2])
        exhausted = k >= min(len(idx), MAX_CANDIDATES) or len(ids) < got
        if len(keep) >= want or exhausted:
            break
        k = min(k * 4, MAX_CANDIDATES)
    chosen = [(int(ids[i]), float(scores[i])) for i in keep[:want]]
    records = idx.segments(i for i, _ in chosen)
    return [Hit(name, r.source, r.audio, r.start, r.end, score, i)
            for i, score in chosen if (r := records.get(i)) is not None]


def _rerank_dtw(hits: list[Hit], query_wave: np.ndarray) -> list[Hit]:
    """Align the query inside each hit's neighbourhood; score = 1 - mean DTW cost."""
    from .dtw import DTW_FEATURES, dtw_features, subsequence_dtw  # numba: only when asked
    query = dtw_features(query_wave)
    margin = RERANK_MARGIN * len(query_wave) / SAMPLE_RATE
    out = []
    for h in hits:
        start = max(0.0, h.start - margin)
        try:
            wave = load_audio(h.audio, offset=start, duration=h.end + margin - start)
        except AudioError:
            continue  # the recording changed or vanished since indexing
        target = dtw_features(wave)
        if len(target) < 2:
            continue
        match = subsequence_dtw(query, target)
        fps = DTW_FEATURES.frames_per_second
        out.append(replace(h, score=1.0 - match.cost,
                           start=round(start + match.start / fps, 3),
                           end=round(start + match.end / fps, 3)))
    return sorted(out, key=lambda h: -h.score)


def _check_audible(query: Query, min_seconds: float) -> None:
    """Refuse a silent or near-empty query: its embedding says nothing about speech,
    yet it would still return confident-looking hits."""
    wave = query.wave
    if len(wave) < min_seconds * SAMPLE_RATE or float(np.abs(wave).max()) < MIN_PEAK:
        raise AudioError(f"{query.name}: the query is silent or shorter than {min_seconds:g} "
                         "s; give a recording of the spoken term")


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
