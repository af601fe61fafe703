"""Search as detection: MAP, ATWV/MTWV, and whether `--threshold auto` holds its
false-alarm rate on queries it was not calibrated on.

Two archives with known word positions:

- ``synth``: a synthetic archive (`asrkit data synth-archive` style: the digit and
  command words laid end to end in every installed voice, exact spans). Queries: the
  first ``--queries-per-word`` occurrences of each word, cut from the archive.
- ``an4``: every recording of the held-out AN4 speakers (as in search_quality.py), word
  positions from forced alignment of the transcripts with the bundled model. Queries:
  the held-out speakers' single-word recordings (each also in the archive; its own
  recording is not counted).

Each query is a term; occurrences of its word elsewhere are what it should find. The
queries are split by word into two halves: the threshold for each false-alarm target
is chosen on one half (calibration) and applied to the other (held out), both ways.

    python bench/search_detection.py --corpus synth [--files 40 --words-per-file 30]
    python bench/search_detection.py --corpus an4
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from asrkit.manifest import Utterance, read_manifest
from asrkit.search.detection import (false_alarms_per_hour, maximum_twv, recall,
                                     term_weighted_value, threshold_for_false_alarms)
from asrkit.search.detection_eval import judge, report, term_queries
from asrkit.search.index import build_index

TARGETS = (0.5, 1.0, 2.0, 5.0)  # false alarms per query per hour


def synth_archive(work: Path, files: int, words_per_file: int, per_word: int, snr,
                  ) -> tuple[list[Utterance], list[Utterance], list[Utterance]]:
    from asrkit.synth import builtin_words, synth_archive as make
    words = builtin_words("digits") + builtin_words("commands")
    make(words, files, work / "archive", words_per_file=words_per_file, snr=snr, seed=0,
         workers=1)
    spans = read_manifest(work / "archive/words.jsonl")
    queries, seen = [], {}
    for u in spans:
        if seen.setdefault(u.text, 0) < per_word:
            seen[u.text] += 1
            queries.append(u)
    return read_manifest(work / "archive/recordings.jsonl"), spans, queries


def an4_archive() -> tuple[list[Utterance], list[Utterance], list[Utterance]]:
    from _an4 import heldout_audio, word_sets
    from asrkit.asr.alignment import align
    from asrkit.asr.checkpoint import load_model
    from asrkit.pretrained import DEFAULT_MODEL
    archive = heldout_audio()
    spans = []
    for a in align(load_model(DEFAULT_MODEL), archive):
        spans += [Utterance(f"{a.utt.id}-{k:02d}", a.utt.audio, w.word, w.start,
                            max(w.end - w.start, 0.01)) for k, w in enumerate(a.words)]
    held, _ = word_sets()
    return archive, spans, held


def halves(words: list[str]) -> tuple[set[str], set[str]]:
    ordered = sorted(set(words))
    return set(ordered[0::2]), set(ordered[1::2])


def held_out(scored, word_of: dict[str, str]) -> list[dict]:
    """Per fold and target: the threshold chosen on one half of the words, then the
    false-alarm rate, recall and ATWV it gives on the other half."""
    a, b = halves(list(word_of.values()))
    rows = []
    for name, calib, test in (("A→B", a, b), ("B→A", b, a)):
        c = scored.select([t for t in scored.terms if word_of[t] in calib])
        t = scored.select([t for t in scored.terms if word_of[t] in test])
        for target in TARGETS:
            theta = threshold_for_false_alarms(c, target)
            rows.append({"fold": name, "target": target, "threshold": theta,
                         "calibration_fa_per_hour": false_alarms_per_hour(c, theta),
                         "heldout_fa_per_hour": false_alarms_per_hour(t, theta),
                         "heldout_recall": recall(t, theta),
                         "heldout_atwv": term_weighted_value(t, theta),
                         "heldout_mtwv": maximum_twv(t)[0],
                         "queries": [len(c.terms), len(t.terms)]})
            r = rows[-1]
            print(f"  {name} target {target:4.1f}/h: θ {theta:.4f}  calibration "
                  f"{r['calibration_fa_per_hour']:5.2f}/h  held out {r['heldout_fa_per_hour']:5.2f}/h"
                  f"  recall {r['heldout_recall']:.3f}  ATWV {r['heldout_atwv']:7.3f}"
                  f" (MTWV {r['heldout_mtwv']:.3f})")
    return rows


def query_statistics(index: Path, queries) -> dict[str, tuple[float, float]]:
    """Per query: mean and standard deviation of its cosine to every indexed segment
    (nearly all non-targets), for z-normalised scores."""
    from asrkit.search.index import SearchIndex
    from asrkit.search.segments import trim_silence
    out = {}
    with SearchIndex(index) as idx:
        for q in queries:
            vector = idx.embed_queries([trim_silence(q.query.wave, idx.segment_config)])
            scores, ids = idx.nearest(vector, len(idx))
            row = scores[0][ids[0] >= 0]
            out[q.name] = (float(row.mean()), float(row.std()))
    return out


def z_normalised(scored, stats: dict[str, tuple[float, float]]):
    """``scored`` with each detection's score as (score - mean) / std of its query."""
    from dataclasses import replace
    mean = np.array([stats[t][0] for t in scored.terms])[scored.term]
    std = np.array([stats[t][1] for t in scored.terms])[scored.term]
    return replace(scored, score=(scored.score - mean) / std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["synth", "an4"], default="synth")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--words-per-file", type=int, default=30)
    parser.add_argument("--queries-per-word", type=int, default=3)
    parser.add_argument("--snr", type=float, default=None, help="synth: noise (dB)")
    parser.add_argument("--top", type=int, default=100, help="hits judged per query")
    parser.add_argument("--work", type=Path, default=None, help="keep archive and index here")
    parser.add_argument("--out", type=Path, default=None, help="write results JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        if args.corpus == "synth":
            archive, spans, asked = synth_archive(work, args.files, args.words_per_file,
                                                  args.queries_per_word, args.snr)
        else:
            archive, spans, asked = an4_archive()
        if not (work / "index").exists():
            build_index(archive, work / "index")
        queries = term_queries(spans, asked)
        judged = judge(work / "index", spans, queries, depth=args.top)
        stats = query_statistics(work / "index", queries)
    scored = judged.scored
    word_of = {q.name: q.word for q in queries if q.name in scored.terms}
    overall = report(judged, None)
    print(f"{args.corpus}: {overall.queries} queries ({overall.words} words), "
          f"{overall.occurrences} occurrences, {60 * overall.audio_hours:.1f} min of audio")
    print(f"  MAP {overall.map:.3f}  MTWV {overall.mtwv:.3f} at threshold "
          f"{overall.mtwv_threshold}  (all queries)")
    rows = held_out(scored, word_of)
    znorm = z_normalised(scored, stats)
    mtwv, theta = maximum_twv(znorm)
    print(f"z-normalised per query (score - mean) / std over all segments: MTWV {mtwv:.3f}"
          f" at {theta}")
    z_rows = held_out(znorm, word_of)
    results = {"corpus": args.corpus, "overall": overall.__dict__, "held_out": rows,
               "z_norm": {"mtwv": mtwv, "threshold": theta, "held_out": z_rows}}
    for name, table in (("cosine", rows), ("z-norm", z_rows)):
        for target in TARGETS:
            mine = [r for r in table if r["target"] == target]
            print(f"  {name} target {target:4.1f}/h: held-out mean "
                  f"{np.mean([r['heldout_fa_per_hour'] for r in mine]):5.2f}/h, recall "
                  f"{np.mean([r['heldout_recall'] for r in mine]):.3f}, ATWV "
                  f"{np.mean([r['heldout_atwv'] for r in mine]):.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
