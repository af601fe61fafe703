"""Query time on archives of several hours: embedding search vs the DTW baseline, measured.

Both methods search the same number of hours of audio, and both are timed, per query,
with asrkit's own code; nothing is extrapolated.

- Embedding search: real AN4 audio (the held-out speakers' 413 recordings, 0.31 h; with
  ``--archive all`` all 1078, 0.81 h) is indexed once with the bundled embedder
  (`asrkit.search.index.build_index`: speech detection, candidate windows, embeddings, SQLite).
  The index is then grown to each archive size with copies of the recordings (same
  spans, each vector jittered as in bench/search_scale.py), and opened with
  `SearchIndex`, which builds the FAISS index asrkit picks for that many segments. A
  query is `asrkit.search.query.search(index, [Query(...)], top=10)`: trim, embed, FAISS,
  merge of overlapping hits, metadata from SQLite.
- DTW baseline: the MFCC + CMVN frames of the same recordings (`asrkit.search.dtw.dtw_features`)
  are computed once and tiled to the same number of hours; a query is its own
  `dtw_features` plus `asrkit.search.dtw.subsequence_dtw` over every recording. Tiling is fair
  for timing: the DTW cost depends only on the numbers of frames, not on what they hold.

Queries: real single words of the held-out AN4 speakers. One torch, FAISS and BLAS thread
(``--threads``).

Above about 4.5 h asrkit picks IVF4096, whose k-means training takes most of the run
(about 5 minutes on a busy 2-core machine); the whole default run takes about 10.

    python bench/search_query_time.py [--hours 1 4 8] [--queries 12] [--archive heldout|all]
                                      [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from _an4 import an4_utterances, heldout_audio, word_sets
from search_scale import JITTER
from asrkit.audio import load_audio
from asrkit.search.dtw import DTW_FEATURES, dtw_features, subsequence_dtw
from asrkit.search.index import SearchIndex, build_index
from asrkit.manifest import Utterance
from asrkit.search.query import CANDIDATES_PER_HIT, Query, search
from asrkit.search.evaluation import WordSegment, load_word_segments
from asrkit.search.segments import Span
from asrkit.search.store import IndexStore

TOP = 10


@dataclass(frozen=True)
class Recording:
    """One indexed AN4 recording: what a copy of it repeats."""

    name: str
    audio: str
    seconds: float
    spans: tuple[Span, ...]
    vectors: np.ndarray  # (segments, dim) unit vectors
    dtw_frames: np.ndarray  # (frames, 13) the DTW baseline's features


@dataclass(frozen=True)
class SizeResult:
    hours: float
    segments: int
    factory: str
    faiss_build_seconds: float
    embedding_ms: float  # median per query, end to end (asrkit.search.query.search)
    faiss_ms: float  # median per query, the FAISS lookup alone (part of the above)
    dtw_ms: float  # median per query (features + subsequence DTW over the archive)

    @property
    def ratio(self) -> float:
        return self.dtw_ms / self.embedding_ms


def index_real_audio(archive: list[Utterance], folder: Path) -> list[Recording]:
    """Index ``archive`` at ``folder``; return its recordings with spans, vectors and
    DTW frames (recordings the index skipped are left out of both sides)."""
    started = time.perf_counter()
    summary = build_index(archive, folder)
    print(f"indexed {len(archive)} AN4 recordings, {summary.audio_seconds / 3600:.2f} h, "
          f"{summary.total_segments:,} segments in {time.perf_counter() - started:.0f} s")
    audio = {u.id: u for u in archive}
    with IndexStore(folder / IndexStore.FILE) as store:
        ids, vectors = map(np.concatenate, zip(*store.iter_vectors()))
        spans = store.segment_spans(ids)  # (segments, 3): source id, start, end
        out = []
        for s in store.sources():
            if s.status != "indexed":
                continue
            rows = spans[:, 0] == s.id
            out.append(Recording(s.name, s.audio, s.duration,
                                 tuple(Span(a, b) for a, b in spans[rows, 1:]),
                                 vectors[rows], dtw_features(load_audio(audio[s.name].audio))))
    return out


class GrowingIndex:
    """Appends copies of the real recordings to the index store, in order, cycling."""

    def __init__(self, folder: Path, recordings: list[Recording], rng: np.random.Generator):
        self.store = IndexStore(folder / IndexStore.FILE)
        # A throw-away benchmark index: no fsync per recording (reads are unaffected).
        self.store.db.execute("PRAGMA synchronous = OFF")
        self.copies = ((k, r) for k in itertools.count(1) for r in recordings)
        self.seconds = sum(r.seconds for r in recordings)
        self.rng = rng

    def grow_to(self, seconds: float) -> None:
        while self.seconds < seconds:
            k, r = next(self.copies)
            noise = self.rng.standard_normal(r.vectors.shape).astype(np.float32)
            vectors = r.vectors + noise * np.float32(JITTER / np.sqrt(r.vectors.shape[1]))
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            self.store.add_source(Utterance(f"{r.name}#copy{k}", r.audio), r.seconds,
                                  r.spans, vectors)
            self.seconds += r.seconds

    def close(self) -> None:
        self.store.close()


def tiled_frames(recordings: list[Recording], seconds: float) -> list[np.ndarray]:
    """The recordings' DTW frames repeated (by reference) until they last ``seconds``,
    in the same order as :class:`GrowingIndex` copies them."""
    out, total = [], 0.0
    for r in itertools.cycle(recordings):
        if total >= seconds - 1e-6:
            return out
        out.append(r.dtw_frames)
        total += r.seconds


def time_embedding(folder: Path, words: list[WordSegment]) -> tuple[dict, list, list]:
    """Open the index (FAISS built for its size) and time end-to-end searches."""
    started = time.perf_counter()
    with SearchIndex(folder) as idx:
        info = {"factory": f"{idx.vectors.factory} {idx.vectors.params}".strip(),
                "build": time.perf_counter() - started, "segments": len(idx)}
        search(idx, [Query(words[0].id, words[0].wave)], top=TOP)  # warm caches, untimed
        total, lookup = [], []
        for w in words:
            start = time.perf_counter()
            search(idx, [Query(w.id, w.wave)], top=TOP)
            total.append(time.perf_counter() - start)
        for v in idx.embedder.embed_waves([w.wave for w in words]):
            start = time.perf_counter()
            idx.nearest(v[None, :], TOP * CANDIDATES_PER_HIT)  # search()'s first lookup
            lookup.append(time.perf_counter() - start)
    return info, total, lookup


def time_dtw(words: list[WordSegment], archive: list[np.ndarray]) -> list[float]:
    """Per query: its DTW features + subsequence DTW against every archive recording."""
    subsequence_dtw(dtw_features(words[0].wave), archive[0])  # compile, untimed
    times = []
    for w in words:
        start = time.perf_counter()
        query = dtw_features(w.wave)
        for frames in archive:
            if len(frames):
                subsequence_dtw(query, frames)
        times.append(time.perf_counter() - start)
    return times


def measure_size(grower: GrowingIndex, folder: Path, recordings: list[Recording],
                 words: list[WordSegment], hours: float) -> SizeResult:
    grower.grow_to(hours * 3600)
    info, total, lookup = time_embedding(folder, words)
    archive = tiled_frames(recordings, grower.seconds)
    dtw_hours = sum(len(f) for f in archive) / DTW_FEATURES.frames_per_second / 3600
    dtw = time_dtw(words, archive)
    r = SizeResult(grower.seconds / 3600, info["segments"], info["factory"], info["build"],
                   1000 * statistics.median(total), 1000 * statistics.median(lookup),
                   1000 * statistics.median(dtw))
    print(f"{r.hours:6.2f} {r.segments:>10,} {r.embedding_ms:9.2f} {r.faiss_ms:8.2f} "
          f"{r.dtw_ms:10.0f} {r.ratio:7.0f}x   {r.factory} (opened in "
          f"{r.faiss_build_seconds:.0f} s); DTW frames {dtw_hours:.2f} h", flush=True)
    return r


def pick_queries(count: int) -> list[WordSegment]:
    """``count`` held-out single words, evenly spread over the list (several words)."""
    held, _ = word_sets()
    held = sorted(held, key=lambda u: u.id)
    picks = np.unique(np.linspace(0, len(held) - 1, count).round().astype(int))
    return load_word_segments([held[i] for i in picks])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 4.0, 8.0])
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--archive", choices=["heldout", "all"], default="heldout",
                        help="real AN4 audio indexed before copying (heldout: 0.31 h, "
                        "all: 0.81 h, about two minutes longer to index)")
    parser.add_argument("--quick", action="store_true",
                        help="held-out archive, 0.5 and 1 h, 5 queries")
    parser.add_argument("--threads", type=int, default=1, help="torch, FAISS and BLAS threads")
    parser.add_argument("--work", type=Path, default=None, help="keep the index here")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.hours, args.queries, args.archive = [0.5, 1.0], 5, "heldout"
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    # numpy's OpenBLAS too: the query's GRU input projection and DTW's frame distances
    # are small matrix products, which two BLAS threads slow down several times on a
    # busy machine.
    threadpool_limits(args.threads)
    words = pick_queries(args.queries)
    print(f"{len(words)} queries: held-out AN4 single words "
          f"({', '.join(sorted({w.label for w in words}))})")
    archive = an4_utterances() if args.archive == "all" else heldout_audio()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.work or Path(tmp)) / "index"
        recordings = index_real_audio(archive, folder)
        print("archives beyond the real audio: embedding side = jittered copies of the "
              "indexed recordings; DTW side = their frames tiled (DTW time depends only on "
              "frame counts, so tiling is fair for timing)")
        print(f"{'hours':>6} {'segments':>10} {'embed ms':>9} {'faiss ms':>8} "
              f"{'DTW ms':>10} {'ratio':>8}   index")
        grower = GrowingIndex(folder, recordings, np.random.default_rng(0))
        try:
            for hours in sorted(args.hours):
                results.append(measure_size(grower, folder, recordings, words, hours))
        finally:
            grower.close()
    if args.out:
        rows = [dict(r.__dict__, ratio=r.ratio) for r in results]
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
