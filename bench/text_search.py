"""Search by typed word: keyword spotting on CTC posteriors vs synthesised spoken examples.

Two archives, each indexed with the default embedder (windows, no acoustic model):

1. synthetic: `asrkit.synth.synth_archive` of the AN4 command and digit words, said by
   synthesiser voices whose speakers are *not* among the voices that synthesise the
   queries (so the synth method never hears its own voice in the archive); every
   word's position is exact. A hit is right when it overlaps an occurrence of its word
   not already found.
2. AN4 test: its 130 recordings (held-out speakers of the bundled models). Positions
   are not known, so a hit is right when its recording's transcript holds the word
   more times than the hits already counted right in that recording.

Terms: synthetic, every word; AN4, every word of 3+ letters said at least twice.
For each method (kws on the bundled an4 model's posteriors, with and without the
whole-word charge; synth with the default voices; fused) and archive: MAP and P@10
over terms (each list `--depth` hits deep; missed occurrences count as 0 precision),
and recall at 1 false alarm per hour: one score threshold for all terms, set so the
archive's false alarms over all terms are at most hours x terms; recall is then over
all occurrences. Times: the median wall
time per term, and once per archive the posterior pass (kws) measured separately.

    python bench/text_search.py [--files 40] [--words-per-file 40] [--depth 100]
                                [--asr-model an4] [--archives synthetic,an4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from asrkit.manifest import read_manifest
from asrkit.search.index import SearchIndex, build_index
from asrkit.search.posteriors import FILE as POSTERIORS_FILE
from asrkit.search.text_query import DEFAULT_VOICES, TextQueryConfig, TextSearcher, choose_voices
from asrkit.synth import builtin_words, list_voices, synth_archive

ROOT = Path(__file__).resolve().parents[1]
AN4_TEST = Path.home() / "runs/data/an4/test.jsonl"
# label → (method, whole_words): kws is measured with and without the whole-word charge.
METHODS = {"kws": ("kws", True), "kws-parts": ("kws", False), "synth": ("synth", True),
           "fused": ("fused", True)}
FA_PER_HOUR = 1.0
P_AT = 10


def synthetic_archive(work: Path, files: int, per_file: int):
    """Archive folder, its recordings and the exact word spans (by file)."""
    query_speakers = {v.speaker for v in choose_voices(None)}
    voices = [v.id for v in list_voices() if v.speaker not in query_speakers]
    words = builtin_words("commands") + builtin_words("digits")
    out = work / "synth-archive"
    if not (out / "words.jsonl").exists():
        synth_archive(words, files, out, words_per_file=per_file, voices=voices, snr=20.0,
                      seed=17)
    spans = defaultdict(list)
    for u in read_manifest(out / "words.jsonl"):
        spans[str(Path(u.audio).resolve())].append((u.text, u.offset, u.offset + u.duration))
    return out / "recordings.jsonl", sorted(set(words)), spans, len(voices)


def judge_spans(spans):
    """A judge for the synthetic archive: hit → right or wrong, each occurrence once."""
    found = set()

    def judge(term: str, h) -> bool:
        for k, (word, a, b) in enumerate(spans.get(str(Path(h.audio).resolve()), [])):
            if word == term and h.start < b and a < h.end and (h.audio, k) not in found:
                found.add((h.audio, k))
                return True
        return False
    return judge


def judge_counts(texts: dict[str, list[str]]):
    """A judge for AN4: a hit is right while its recording holds more of the word than
    hits already counted right there."""
    used = Counter()

    def judge(term: str, h) -> bool:
        if used[(term, h.source)] < texts[h.source].count(term):
            used[(term, h.source)] += 1
            return True
        return False
    return judge


def score_method(searcher: TextSearcher, terms, totals: dict[str, int], make_judge,
                 hours: float, depth: int) -> dict:
    aps, pats, times, pooled = [], [], [], []
    judge = make_judge()
    for term in terms:
        started = time.perf_counter()
        hits = searcher.search(term, depth)
        times.append(time.perf_counter() - started)
        right = np.array([judge(term, h) for h in hits], bool)
        precision = np.cumsum(right) / np.arange(1, len(right) + 1)
        aps.append(float(precision[right].sum() / totals[term]) if totals[term] else 0.0)
        pats.append(float(right[:P_AT].sum() / P_AT))
        pooled += [(h.score, r) for h, r in zip(hits, right)]
    return {"map": float(np.mean(aps)), "p_at_10": float(np.mean(pats)),
            "p_at_10_ceiling": float(np.mean([min(totals[t], P_AT) / P_AT for t in terms])),
            "recall_at_1fa_h": recall_at_fa(pooled, sum(totals.values()),
                                            FA_PER_HOUR * hours * len(terms)),
            "median_query_seconds": statistics.median(times)}


def recall_at_fa(pooled, occurrences: int, allowed: float) -> float:
    """Recall over all occurrences at the lowest single threshold that lets no more
    than ``allowed`` false alarms through (ties go in together)."""
    pooled = sorted(pooled, key=lambda p: -p[0])
    best, right, wrong, i = 0, 0, 0, 0
    while i < len(pooled):
        j = i
        while j < len(pooled) and pooled[j][0] == pooled[i][0]:
            right += pooled[j][1]
            wrong += not pooled[j][1]
            j += 1
        if wrong > allowed:
            break
        best, i = right, j
    return best / max(occurrences, 1)


def run_archive(name: str, manifest: Path, terms, totals, make_judge, work: Path,
                depth: int, asr_model: str = "an4") -> dict:
    index_dir = work / f"{name}-index"
    started = time.perf_counter()
    summary = build_index(manifest, index_dir)
    hours = summary.audio_seconds / 3600 if summary.indexed else _hours(index_dir)
    print(f"{name}: {hours * 60:.1f} min of audio, {len(terms)} terms, "
          f"{sum(totals.values())} occurrences (index {time.perf_counter() - started:.0f} s)")
    out = {"hours": hours, "terms": len(terms), "occurrences": sum(totals.values())}
    (index_dir / POSTERIORS_FILE).unlink(missing_ok=True)  # the first kws pass computes
    with SearchIndex(index_dir) as idx:
        for label, (method, whole) in METHODS.items():
            searcher = TextSearcher(idx, TextQueryConfig(method, asr_model=asr_model,
                                                         whole_words=whole))
            if method != "synth":
                started = time.perf_counter()
                searcher.posteriors()  # the once-per-archive pass, timed apart
                out[f"{label}_posterior_seconds"] = time.perf_counter() - started
                print(f"  {label}: posteriors of the archive ready in "
                      f"{out[f'{label}_posterior_seconds']:.1f} s")
            r = score_method(searcher, terms, totals, make_judge, hours, depth)
            out[label] = r
            print(f"  {label:9s} MAP {r['map']:.3f}  P@10 {r['p_at_10']:.3f}  recall@1FA/h "
                  f"{r['recall_at_1fa_h']:.3f}  {1000 * r['median_query_seconds']:7.1f} ms/term")
    k, s, f = (out[m]["map"] for m in ("kws", "synth", "fused"))
    print(f"  MAP ratio kws/synth x{k / max(s, 1e-9):.2f}, fused/best-single "
          f"x{f / max(k, s, 1e-9):.2f}")
    return out


def _hours(index_dir: Path) -> float:
    with SearchIndex(index_dir) as idx:
        return sum(s.duration or 0 for s in idx.sources() if s.status == "indexed") / 3600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path.home() / "runs/h17text/bench")
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--words-per-file", type=int, default=40)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--asr-model", default="an4",
                    help="Recogniser for kws (file, training folder or bundled name).")
    ap.add_argument("--archives", default="synthetic,an4",
                    help="Which archives to measure, comma-separated: synthetic, an4.")
    ap.add_argument("--out", type=Path, help="Write the figures here as JSON.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"query voices: {', '.join(v.id for v in choose_voices(None))} "
          f"(defaults {', '.join(DEFAULT_VOICES)})")
    results, archives = {}, args.archives.split(",")
    print(f"kws recogniser: {args.asr_model}")
    if "synthetic" in archives:
        manifest, words, spans, n_voices = synthetic_archive(args.work, args.files,
                                                             args.words_per_file)
        totals = Counter(w for ws in spans.values() for w, _, _ in ws)
        print(f"synthetic archive voices: {n_voices} (no query voice's speaker among them)")
        results["synthetic"] = run_archive("synthetic", manifest, words, totals,
                                           lambda: judge_spans(spans), args.work, args.depth,
                                           args.asr_model)
    if "an4" not in archives:
        pass
    elif AN4_TEST.exists():
        utts = read_manifest(AN4_TEST)
        texts = {u.id: u.text.upper().split() for u in utts}
        counts = Counter(w for ws in texts.values() for w in ws)
        terms = sorted(w for w, n in counts.items() if len(w) >= 3 and n >= 2)
        results["an4_test"] = run_archive("an4-test", AN4_TEST, terms,
                                          {t: counts[t] for t in terms},
                                          lambda: judge_counts(texts), args.work, args.depth,
                                          args.asr_model)
    else:
        print(f"{AN4_TEST} missing: AN4 part skipped", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
