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

from .audio import SAMPLE_RATE, load_audio
from .dtw import DTW_FEATURES, dtw_features, subsequence_dtw
from .errors import AudioError, ConfigError
from .index import SearchIndex
from .segments import trim_silence

CANDIDATES_PER_HIT = 30  # raw neighbours fetched per wanted hit (overlapping windows)
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
        waves = [trim_silence(q.wave, idx.segment_config) for q in qs]
        vectors = idx.embedder.embed_waves(waves)  # (queries, dim)
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
    kept: dict[str, list[Hit]] = {}
    out = []
    for h in sorted(hits, key=lambda h: -h.score):
        same = kept.setdefault(h.source, [])
        if any(h.start < k.end and k.start < h.end for k in same):
            continue
        same.append(h)
        out.append(h)
    return out


def _nearest_hits(idx: SearchIndex, name: str, vector: np.ndarray, want: int,
                  threshold: float | None) -> list[Hit]:
    """Fetch ever more neighbours until ``want`` merged hits (or everything) is found."""
    k = min(want * CANDIDATES_PER_HIT, MAX_CANDIDATES)
    while True:
        scores, ids = idx.nearest(vector[None, :], k)
        records = idx.segments(ids[0])
        hits = [Hit(name, r.source, r.audio, r.start, r.end, float(s), int(i))
                for s, i in zip(scores[0], ids[0])
                if i >= 0 and (r := records.get(int(i))) is not None
                and (threshold is None or s >= threshold)]
        merged = merge_overlapping(hits)
        exhausted = k >= min(len(idx), MAX_CANDIDATES) or len(hits) < len(ids[0])
        if len(merged) >= want or exhausted:
            return merged[:want]
        k = min(k * 4, MAX_CANDIDATES)


def _rerank_dtw(hits: list[Hit], query_wave: np.ndarray) -> list[Hit]:
    """Align the query inside each hit's neighbourhood; score = 1 - mean DTW cost."""
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


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
