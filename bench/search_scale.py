"""Search at scale: build throughput, and ANN latency / recall at a million segments.

1. Build an index of all AN4 audio with the shipped embedder (every candidate window)
   and report throughput in audio-hours per hour of wall time.
2. Grow the real embeddings to ``--segments`` vectors with jittered copies (each a
   stored vector plus Gaussian noise, renormalised, so neighbourhoods look like real
   data rather than uniform noise), build the FAISS index asrkit would choose for that
   size (or ``--factory``), and measure single-query latency (median, p90) and
   recall@10 against exact search, for real spoken queries and for stored vectors.
3. The DTW baseline at the same size: subsequence DTW of a few queries over all of
   AN4 (measured), scaled linearly (DTW cost is linear in archive length) to the
   audio that many segments come from; compared with the end-to-end embedding query.

    python bench/search_scale.py [--segments 1000000] [--factory IVF4096,Flat] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from _an4 import an4_utterances, word_sets
from asrkit.audio import load_audio
from asrkit.search.dtw import dtw_features, subsequence_dtw
from asrkit.search.index import SearchIndex, build_index
from asrkit.search.query import Query, search
from asrkit.search.evaluation import load_word_segments
from asrkit.search.store import IndexStore
from asrkit.search.vector_index import (IVF_TRAIN_PER_LIST, TUNE_QUERIES, VectorIndex,
                                        choose_factory, make_index, tune_search_params)

JITTER = 0.35  # noise norm relative to the unit vector (cosine to the source ≈ 0.94)
QUERIES = 200
DTW_QUERIES = 5
DTW_FRAMES_PER_HOUR = 360_000  # 100 frames per second


def build_throughput(work: Path, embedder) -> tuple[Path, float]:
    archive = an4_utterances()
    started = time.perf_counter()
    summary = build_index(archive, work / "an4", embedder)
    hours = summary.audio_seconds / 3600
    wall = time.perf_counter() - started
    print(f"build: {len(archive)} recordings, {hours:.2f} h audio, {summary.total_segments} "
          f"segments in {wall:.0f} s → {hours / (wall / 3600):.1f} audio-hours per hour "
          f"({summary.total_segments / wall:.0f} segments/s)")
    return work / "an4", hours / (wall / 3600)


def dtw_seconds_per_audio_hour(words, archive) -> float:
    """Time of a subsequence-DTW scan per query, per hour of archive audio."""
    feats = [dtw_features(load_audio(u.audio)) for u in archive]
    hours = sum(len(f) for f in feats) / DTW_FRAMES_PER_HOUR
    subsequence_dtw(dtw_features(words[0].wave), feats[0])  # compile untimed
    times = []
    for w in words[:DTW_QUERIES]:
        start = time.perf_counter()
        query = dtw_features(w.wave)
        for f in feats:
            subsequence_dtw(query, f)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / hours


def grow(real: np.ndarray, total: int, rng: np.random.Generator, jitter: float = JITTER,
         ) -> np.ndarray:
    """``real (n, dim)`` plus jittered copies up to ``(total, dim)`` unit vectors."""
    out = np.empty((total, real.shape[1]), np.float32)
    out[:len(real)] = real
    for start in range(len(real), total, 100_000):
        stop = min(start + 100_000, total)
        base = real[rng.integers(0, len(real), stop - start)]
        noise = rng.standard_normal(base.shape).astype(np.float32)
        noise *= jitter / np.sqrt(real.shape[1])
        out[start:stop] = base + noise
    faiss.normalize_L2(out)
    return out


def latency_and_recall(vectors: np.ndarray, queries: np.ndarray, factory: str) -> dict:
    dim = vectors.shape[1]
    ids = np.arange(len(vectors), dtype=np.int64)
    exact = make_index("Flat", dim)
    exact.add_with_ids(vectors, ids)
    _, truth = exact.search(queries, 10)
    del exact
    started = time.perf_counter()
    index = make_index(factory, dim)
    if not index.is_trained:
        nlist = faiss.extract_index_ivf(index).nlist
        step = max(1, len(vectors) // (nlist * IVF_TRAIN_PER_LIST))
        index.train(vectors[::step])
    index.add_with_ids(vectors, ids)
    sample = np.linspace(0, len(vectors) - 1, TUNE_QUERIES).astype(np.int64)
    params = tune_search_params(index, vectors[sample], sample)  # as a built index does
    build = time.perf_counter() - started
    ann = VectorIndex(index, factory, params)
    times = []
    found = np.empty_like(truth)
    for i, q in enumerate(queries):
        start = time.perf_counter()
        _, found[i:i + 1] = ann.search(q[None, :], 10)
        times.append(time.perf_counter() - start)
    recall = np.array([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    return {"factory": factory, "params": ann.params, "build_seconds": build,
            "median_ms": 1000 * statistics.median(times),
            "p90_ms": 1000 * float(np.percentile(times, 90)), "recall": recall,
            "bytes": faiss.serialize_index(index).nbytes}


def measure_real(args, work: Path) -> dict:
    """Build the AN4 index; time end-to-end searches and the DTW scan on it."""
    index_dir, _ = build_throughput(work, args.embedder)
    with IndexStore(index_dir / IndexStore.FILE) as store:
        real = np.concatenate([v for _, v in store.iter_vectors()])
    held, _ = word_sets()
    words = load_word_segments(held)
    with SearchIndex(index_dir) as idx:
        hours = sum(s.duration or 0 for s in idx.sources()) / 3600
        spoken = idx.embedder.embed_waves([w.wave for w in words])
        times = []
        for w in words:
            start = time.perf_counter()
            search(idx, [Query(w.id, w.wave)], top=10)
            times.append(time.perf_counter() - start)
        print(f"end-to-end search of {len(idx)} segments (embed query + FAISS + merge): "
              f"median {1000 * statistics.median(times):.1f} ms")
        segments_per_hour = len(idx) / hours
    return {"real": real, "spoken": spoken, "end_to_end": statistics.median(times),
            "segments_per_hour": segments_per_hour,
            "dtw_rate": dtw_seconds_per_audio_hour(words, an4_utterances())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--factory", default=None, help="default: asrkit's choice for the size")
    parser.add_argument("--embedder", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jitter", type=float, default=JITTER,
                        help="noise norm of the copies; larger = harder for the ANN index")
    parser.add_argument("--work", type=Path, default=None, help="keep the AN4 index here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        m = measure_real(args, args.work or Path(tmp))
    vectors = grow(m["real"], args.segments, rng, args.jitter)
    stored = vectors[rng.integers(0, len(vectors), QUERIES - len(m["spoken"]))]
    queries = np.ascontiguousarray(np.concatenate([m["spoken"], stored]), dtype=np.float32)
    factory = args.factory or choose_factory(len(vectors))
    print(f"{len(vectors):,} vectors ({len(m['real']):,} real), "
          f"{vectors.nbytes / 2**20:.0f} MiB raw; index {factory}")
    r = latency_and_recall(vectors, queries, factory)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"  {r['factory']} ({r['params']}): built in {r['build_seconds']:.0f} s, "
          f"{r['bytes'] / 2**20:.0f} MiB; query median {r['median_ms']:.2f} ms, "
          f"p90 {r['p90_ms']:.2f} ms; recall@10 {r['recall'].mean():.3f} (spoken queries "
          f"{r['recall'][:len(m['spoken'])].mean():.3f}, stored vectors "
          f"{r['recall'][len(m['spoken']):].mean():.3f}); peak RSS {peak:.1f} GiB")
    hours = len(vectors) / m["segments_per_hour"]
    dtw = m["dtw_rate"] * hours
    query = m["end_to_end"] + r["median_ms"] / 1000  # upper bound: AN4 search counted too
    print(f"DTW baseline: {m['dtw_rate']:.2f} s per query per audio-hour (measured on AN4); "
          f"{len(vectors):,} segments ≈ {hours:.1f} h of audio → ≈ {dtw:.1f} s per query "
          f"(extrapolated) vs ≈ {1000 * query:.1f} ms embedding search: ≈ {dtw / query:.0f}x")


if __name__ == "__main__":
    main()
