"""`asrkit search calibrate` and `asrkit search eval`: search as detection.

`search eval WORDS.jsonl` without --index is `asrkit embedder eval` (embeddings against
DTW on isolated words); with --index it searches the archive for spoken queries and
reports MAP, term-weighted value (ATWV at the decision threshold, MTWV at the best one)
and false alarms per hour. `search calibrate` keeps what `search --threshold auto`
needs in the index folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (NON_NEGATIVE, POSITIVE_INT, ConditionOpt, PlotOpt, ProgressBars, cosine_or_auto,
                     print_word_eval, user_errors)

TopOpt = Annotated[int, typer.Option("--top", "-k", callback=POSITIVE_INT,
                                     help="Hits judged per query.")]
QueriesOpt = Annotated[Optional[Path], typer.Option(
    help="Spoken queries: a word manifest (text = the word). Default: the first "
         "occurrence of each word in WORDS, cut from the archive.")]


def calibrate(
    index: Annotated[Path, typer.Argument(help="Index folder (from `asrkit index build`).")],
    words: Annotated[Path, typer.Argument(
        help="Where words are said in the indexed recordings: one line per word, text = "
             "the word, offset/duration = its span (e.g. synth-archive's words.jsonl).")],
    queries: QueriesOpt = None,
    top: TopOpt = 100,
    false_alarms_per_hour: Annotated[float, typer.Option(
        "--false-alarms-per-hour", callback=NON_NEGATIVE,
        help="Report the threshold for this rate (per query per hour); --threshold auto "
             "chooses again for whatever rate a search asks.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
):
    """Judge spoken queries on an archive with known word positions and keep the result
    in the index, so `asrkit search --threshold auto` can hold a false-alarm rate."""
    with user_errors():
        from asrkit.search.detection_eval import (calibrated_threshold, report,
                                                  save_calibration)
        judged = _judge(index, words, queries, top)
        save_calibration(index, judged.scored)
        threshold = calibrated_threshold(index, false_alarms_per_hour)
        _print(report(judged, threshold), as_json,
               f"calibrated {index}: --threshold auto with --false-alarms-per-hour "
               f"{false_alarms_per_hour:g} is {threshold:.4f} here")


def evaluate(
    manifest: Annotated[Path, typer.Argument(
        help="Word-labelled segments (text = the word; one word per line, or word spans "
             "via offset/duration). With --index: where words are said in its recordings.")],
    index: Annotated[Optional[Path], typer.Option(
        help="Search this index for spoken queries and score the hits as detections "
             "(MAP, ATWV, MTWV) instead of comparing embeddings with DTW.")] = None,
    queries: QueriesOpt = None,
    threshold: Annotated[Optional[str], typer.Option(
        callback=cosine_or_auto, metavar="X|auto",
        help="Decision threshold for ATWV: a cosine similarity, or 'auto' (calibrated, for "
             "--false-alarms-per-hour; the default once the index is calibrated).")] = None,
    false_alarms_per_hour: Annotated[float, typer.Option(
        "--false-alarms-per-hour", callback=NON_NEGATIVE,
        help="With --threshold auto: false alarms per query per hour of archive.")] = 1.0,
    top: TopOpt = 100,
    embedder: Annotated[Optional[Path], typer.Option(
        help="Embedder file (default: the one shipped with asrkit; not with --index).")] = None,
    dtw: Annotated[bool, typer.Option(help="Also run the DTW-on-MFCC baseline.")] = True,
    trim: Annotated[bool, typer.Option(help="Cut silence around each word first.")] = True,
    condition: ConditionOpt = None,
    plot: PlotOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
):
    """Search quality. Without --index: same-different AP, MAP, P@10 and time per query,
    embeddings vs DTW (under --condition test conditions if given). With --index: MAP,
    ATWV (at --threshold, by default the calibrated one) and MTWV of spoken queries
    searched in the archive."""
    with user_errors():
        from asrkit.errors import ConfigError
        if index is None:
            if queries is not None or threshold is not None:
                raise ConfigError("--queries and --threshold score a search of an index; "
                                  "give --index INDEX too")
            from asrkit.search.embedding import load_embedder
            from asrkit.search.evaluation import evaluate_word_manifest
            with ProgressBars(desc="loading", unit="word") as bars:
                segments, results = evaluate_word_manifest(
                    manifest, load_embedder(embedder), dtw, trim, progress=bars.count,
                    conditions=condition or "clean")
            return print_word_eval(segments, results, as_json, plot)
        if embedder is not None:
            raise ConfigError("--embedder does not go with --index: the index's own "
                              "embedder embeds the queries")
        if condition is not None or plot is not None:
            raise ConfigError("--condition and --plot score isolated words; leave out "
                              "--index (an index holds its recordings as they were indexed)")
        from asrkit.search.detection_eval import is_calibrated, report, threshold_value
        judged = _judge(index, manifest, queries, top)
        if threshold is None and is_calibrated(index):
            threshold = "auto"
        cut = threshold_value(threshold, index, false_alarms_per_hour)
        _print(report(judged, cut), as_json, "" if cut is not None else
               "no ATWV: give --threshold, or calibrate the index first")


def _judge(index: Path, words: Path, queries: Optional[Path], top: int):
    from asrkit.manifest import read_manifest
    from asrkit.search.detection_eval import judge, term_queries
    word_lines = read_manifest(words)
    asked = term_queries(word_lines, read_manifest(queries) if queries else None)
    with ProgressBars(desc="searching", unit="queries") as bars:
        return judge(index, word_lines, asked, depth=top, progress=bars.count)


def _print(r, as_json: bool, note: str) -> None:
    if as_json:
        typer.echo(json.dumps(asdict(r), indent=2))
        return

    def num(x, fmt=".3f"):
        return "-" if x is None else format(x, fmt)
    typer.echo(f"{r.queries} queries ({r.words} words, {r.skipped} skipped), "
               f"{r.occurrences} occurrences to find in {60 * r.audio_hours:.1f} min of audio")
    typer.echo(f"MAP {r.map:.3f}  MTWV {r.mtwv:.3f} (threshold {num(r.mtwv_threshold, '.4f')})"
               f"  ATWV {num(r.atwv)} (threshold {num(r.threshold, '.4f')}: recall "
               f"{num(r.recall)}, {num(r.false_alarms_per_hour, '.2f')} false alarms per "
               "query per hour)")
    if note:
        typer.echo(note)
