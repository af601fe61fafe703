"""`asrkit search`: find where spoken examples occur in an indexed archive, and measure how well.

`asrkit search INDEX QUERY...` is short for `asrkit search query INDEX QUERY...`;
`asrkit search eval` and `asrkit search calibrate` are in detection.py;
`asrkit search INDEX --text WORD` finds a typed word (its code is at the end of this file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from .common import user_errors
from .common import NON_NEGATIVE, POSITIVE_INT, cosine_or_auto  # parse-time range checks


class _QueryByDefault(TyperGroup):
    """A group whose first argument, when not a subcommand, starts the `query` command."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["query", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_QueryByDefault, no_args_is_help=True,
                  help="Find where spoken examples occur in an indexed archive "
                       "(`asrkit search INDEX QUERY...`), or evaluate search quality.")


# --- options of the typed-word search (`--text`); the code is at the end ---
MethodOpt = Annotated[str, typer.Option(
    "--method", help="For --text: kws (keyword spotting on the acoustic model's "
                     "posteriors), synth (synthesised spoken examples), fused (both), or "
                     "auto (kws when an acoustic model is known, else synth).")]
AsrModelOpt = Annotated[Optional[str], typer.Option(
    "--asr-model", help="For --text with kws/fused: the acoustic model (file, training "
                        "folder or bundled name); default the one the index was built with.")]
VoicesOpt = Annotated[Optional[str], typer.Option(
    "--voices", help="For --text with synth/fused: comma-separated synthesiser voice globs, "
                     "e.g. 'flite:slt,espeak-ng:en-us*' (default: a mix of the installed "
                     "voices; see `asrkit data synth --list-voices`).")]


@app.command("query")
def search(
    index: Annotated[Path, typer.Argument(help="Index folder (from `asrkit index build`).")],
    queries: Annotated[Optional[list[Path]], typer.Argument(
        help="Query recordings, each a spoken example of what to find.")] = None,
    span: Annotated[Optional[list[str]], typer.Option(
        help="A query cut from a recording: FILE:START-END in seconds (repeatable).")] = None,
    top: Annotated[int, typer.Option("--top", "-k", callback=POSITIVE_INT, help="Hits per query.")] = 10,
    threshold: Annotated[Optional[str], typer.Option(callback=cosine_or_auto, metavar="X|auto",
        help="Drop hits with a cosine similarity below X (-1..1); 'auto': the threshold "
             "calibrated for --false-alarms-per-hour (see `asrkit search calibrate`).")] = None,
    false_alarms_per_hour: Annotated[float, typer.Option(callback=NON_NEGATIVE,
        help="With --threshold auto: false alarms per query per hour of archive.")] = 1.0,
    rerank: Annotated[Optional[str], typer.Option(
        help="Re-rank the best hits by DTW on MFCCs: 'dtw' (slower, tighter times).")] = None,
    fuse: Annotated[bool, typer.Option(
        help="Treat all queries as examples of one term: one search with their mean.")]
        = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per hit (JSON Lines).")] = False,
    text: Annotated[Optional[list[str]], typer.Option(
        help="Find where this typed word or phrase is said, instead of a spoken QUERY "
             "(repeatable).")] = None,
    method: MethodOpt = "auto",
    asr_model: AsrModelOpt = None,
    voices: VoicesOpt = None,
):
    """Search INDEX for each spoken QUERY or typed --text; print file, start, end, score."""
    with user_errors():
        from asrkit.errors import ConfigError
        if text is not None:
            if threshold == "auto":
                raise ConfigError("--threshold auto is calibrated for spoken queries; give "
                                  "--text a number (its scores run from 0 to 1)")
            return _search_text(index, text, bool(queries or span), method, asr_model, voices,
                               top, None if threshold is None else float(threshold), as_json)
        from asrkit.search.query import load_query, parse_span, search as run_search
        if rerank not in (None, "dtw"):
            raise ConfigError(f"--rerank must be 'dtw', not {rerank!r}")
        from asrkit.search.detection_eval import threshold_value
        cut = threshold_value(threshold, index, false_alarms_per_hour)
        qs = [load_query(q) for q in queries or []] + [parse_span(s) for s in span or []]
        results = run_search(index, qs, top=top, threshold=cut, rerank=rerank, fuse=fuse)
        names = [" + ".join(q.name for q in qs)] if fuse else [q.name for q in qs]
        for name, hits in zip(names, results):
            _print_hits(name, hits, as_json, several=len(results) > 1)


def _print_hits(name: str, hits, as_json: bool, several: bool) -> None:
    """One query's hits: JSON Lines, or a table (headed by ``name`` when ``several``)."""
    if not as_json:
        _print_table(name, hits, several)
        return
    for rank, h in enumerate(hits, 1):
        typer.echo(json.dumps({"query": h.query, "rank": rank, "source": h.source,
                               "audio": h.audio, "start": h.start, "end": h.end,
                               "score": round(h.score, 4)}))


def _print_table(name: str, hits, several: bool) -> None:
    if several:
        typer.echo(f"# {name}")
    if not hits:
        typer.echo("no hits")
        return
    files = [_shown(h.audio) for h in hits]  # start and end are seconds in this file
    width = max(len(f) for f in files)
    typer.echo(f"{'rank':>4}  {'file':{width}}  {'start':>8}  {'end':>8}  {'score':>6}")
    for rank, (h, f) in enumerate(zip(hits, files), 1):
        typer.echo(f"{rank:4d}  {f:{width}}  {h.start:8.2f}  {h.end:8.2f}  {h.score:6.3f}")


def _shown(path: str) -> str:
    """``path`` relative to the working folder when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


# --- `asrkit search INDEX --text WORD`: where a typed word or phrase is said ---

def _search_text(index: Path, texts: list[str], has_queries: bool, method: str,
                 asr_model: str | None, voices: str | None, top: int,
                 threshold: float | None, as_json: bool) -> None:
    """Run the typed search and print its hits as the spoken-example search does."""
    from asrkit.errors import ConfigError
    from asrkit.search.text_query import TextQueryConfig, search_text as run
    from .common import ProgressBars
    if has_queries:
        raise ConfigError("give spoken queries or --text, not both")
    config = TextQueryConfig(method, asr_model, _split(voices))
    with ProgressBars("posteriors", "rec") as bars:
        results = run(index, texts, top=top, config=config, progress=bars.update)
    for text, hits in zip(texts, results):
        if threshold is not None:
            hits = [h for h in hits if h.score >= threshold]
        _print_hits(text, hits, as_json, several=len(results) > 1)


def _split(value: str | None) -> tuple[str, ...] | None:
    """Comma-separated items → a tuple (None when there are none)."""
    items = tuple(v.strip() for v in (value or "").split(",") if v.strip())
    return items or None
