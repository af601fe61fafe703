"""Search quality and speed: embeddings vs the DTW baseline on held-out AN4 voices.

1. Isolated words: the held-out speakers' single-word recordings. Same-different AP,
   query-by-example MAP / P@10, and time per query, for the embedder and for DTW on
   MFCCs (each query against every other word).
2. Archive search: every recording of the held-out speakers forms the archive; each
   single word queries it. A recording is relevant when its transcript contains the
   word (the query's own recording excluded). Recordings are ranked by their best
   segment (embeddings: cosine over the index; DTW: subsequence DTW over the whole
   recording). Time per query: `asrkit.search.query.search` (embed + FAISS + merge) vs a
   full subsequence-DTW scan of the archive.

With ``--archive all`` every AN4 recording is searched (about 2.7 times longer; the
training speakers' recordings were seen, without transcripts, by the embedder), which
shows how the two query times grow with the archive.

    python bench/search_quality.py [--embedder E] [--archive heldout|all] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _an4 import an4_utterances, heldout_audio, word_sets
from asrkit.audio import load_audio
from asrkit.search.dtw import dtw_features, subsequence_dtw
from asrkit.search.embedding import load_embedder
from asrkit.search.index import SearchIndex, build_index
from asrkit.search.query import Query, search
from asrkit.search.evaluation import (average_precision, evaluate_dtw, evaluate_embeddings,
                                load_word_segments)


def isolated_words(embedder, words) -> dict:
    emb = evaluate_embeddings(embedder, words)
    dtw = evaluate_dtw(words)
    for r in (emb, dtw):
        print(f"  {r.method:9s} AP {r.average_precision:.3f}  MAP {r.mean_average_precision:.3f}"
              f"  P@10 {r.precision_at_10:.3f}  {1000 * r.query_seconds:7.2f} ms/query")
    print(f"  embedding/DTW: AP x{emb.average_precision / dtw.average_precision:.2f}, "
          f"MAP x{emb.mean_average_precision / dtw.mean_average_precision:.2f}, "
          f"query time x{emb.query_seconds / dtw.query_seconds:.2f}")
    return {"embedding": emb.__dict__, "dtw": dtw.__dict__}


def archive_search(embedder_path, words, archive, work: Path) -> dict:
    started = time.perf_counter()
    summary = build_index(archive, work / "index", embedder_path)
    print(f"  indexed {summary.audio_seconds / 60:.1f} min of audio, {summary.total_segments} "
          f"segments in {time.perf_counter() - started:.0f} s "
          f"({summary.audio_seconds / max(summary.seconds, 1e-9):.0f}x real time)")
    texts = {u.id: set(u.text.upper().split()) for u in archive}
    names = [u.id for u in archive]
    with SearchIndex(work / "index") as idx:
        emb_ranks, emb_times = _embedding_rankings(idx, words, names)
    dtw_ranks, dtw_times = _dtw_rankings(words, archive)
    out = {"segments": summary.total_segments, "audio_minutes": summary.audio_seconds / 60,
           "build_seconds": summary.seconds}
    for method, ranks, times in (("embedding", emb_ranks, emb_times),
                                 ("dtw", dtw_ranks, dtw_times)):
        aps = archive_average_precisions(words, ranks, names, texts)
        out[method] = {"map": float(np.mean(aps)), "queries": len(aps),
                       "median_query_seconds": statistics.median(times)}
        print(f"  {method:9s} archive MAP {out[method]['map']:.3f} over {len(aps)} queries, "
              f"median {1000 * out[method]['median_query_seconds']:8.2f} ms/query")
    ratio = out["dtw"]["median_query_seconds"] / out["embedding"]["median_query_seconds"]
    print(f"  embedding/DTW: MAP x{out['embedding']['map'] / out['dtw']['map']:.2f}; "
          f"queries {ratio:.0f}x faster")
    out["speedup"] = ratio
    return out


def archive_average_precisions(words, ranks, names, texts) -> list[float]:
    """Per query word: average precision of ranking the recordings (``ranks``, one score
    per name, higher first) by whether their transcript ``texts`` holds the word. The
    query's own recording is left out; words nowhere else are skipped."""
    aps = []
    for w, scores in zip(words, ranks):
        keep = [n != w.id for n in names]
        relevant = np.array([w.label in texts[n] for n in names])[keep]
        if relevant.any():
            aps.append(average_precision(-np.asarray(scores)[keep], relevant))
    return aps


def _embedding_rankings(idx: SearchIndex, words, names):
    """Per query: best cosine per recording (exact, all segments) + `search` latency."""
    order = {n: i for i, n in enumerate(names)}
    vectors = idx.embedder.embed_waves([w.wave for w in words])
    scores, ids = idx.nearest(vectors, len(idx))
    records = idx.segments(np.unique(ids[ids >= 0]))
    rankings, times = [], []
    for w, row_scores, row_ids in zip(words, scores, ids):
        best = np.full(len(names), -1.0)
        for s, i in zip(row_scores, row_ids):
            r = records.get(int(i))
            if r is not None:
                best[order[r.source]] = max(best[order[r.source]], s)
        rankings.append(best)
        start = time.perf_counter()
        search(idx, [Query(w.id, w.wave)], top=10)
        times.append(time.perf_counter() - start)
    return rankings, times


def _dtw_rankings(words, archive):
    feats = [dtw_features(load_audio(u.audio)) for u in archive]
    rankings, times = [], []
    subsequence_dtw(dtw_features(words[0].wave), feats[0])  # compile untimed
    for w in words:
        start = time.perf_counter()
        query = dtw_features(w.wave)
        costs = [subsequence_dtw(query, f).cost if len(f) else 2.0 for f in feats]
        times.append(time.perf_counter() - start)
        rankings.append(-np.array(costs))
    return rankings, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", type=Path, default=None)
    parser.add_argument("--archive", choices=["heldout", "all"], default="heldout")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (DTW uses one)")
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    embedder = load_embedder(args.embedder)
    held, _ = word_sets()
    words = load_word_segments(held)
    print(f"held-out speakers: {len(words)} single words, {len({w.label for w in words})} "
          f"distinct; embedder {embedder.fingerprint()[:12]}")
    print("isolated words (each word queries the others):")
    results = {"isolated": isolated_words(embedder, words)}
    archive = heldout_audio() if args.archive == "heldout" else an4_utterances()
    print(f"archive search (each word queries {len(archive)} {args.archive} recordings):")
    with tempfile.TemporaryDirectory() as tmp:
        results["archive"] = archive_search(args.embedder, words, archive, Path(tmp))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "search_quality.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
