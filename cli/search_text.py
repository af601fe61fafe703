"""`asrkit search INDEX --text WORD`: where a typed word or phrase is said in an index.

Kept apart from the spoken-example search in `search.py`, which only hands over to
:func:`search_text` when `--text` is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ProgressBars

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


def search_text(index: Path, texts: list[str], has_queries: bool, method: str,
                asr_model: str | None, voices: str | None, top: int,
                threshold: float | None, as_json: bool) -> None:
    """Run the typed search and print its hits as the spoken-example search does."""
    from asrkit.errors import ConfigError
    from asrkit.search.text_query import TextQueryConfig, search_text as run
    from .search import _print_table
    if has_queries:
        raise ConfigError("give spoken queries or --text, not both")
    config = TextQueryConfig(method, asr_model, _split(voices))
    with ProgressBars("posteriors", "rec") as bars:
        results = run(index, texts, top=top, config=config, progress=bars.update)
    for text, hits in zip(texts, results):
        if threshold is not None:
            hits = [h for h in hits if h.score >= threshold]
        if as_json:
            for rank, h in enumerate(hits, 1):
                typer.echo(json.dumps({"query": h.query, "rank": rank, "source": h.source,
                                       "audio": h.audio, "start": h.start, "end": h.end,
                                       "score": round(h.score, 4)}))
        else:
            _print_table(text, hits, several=len(results) > 1)


def _split(value: str | None) -> tuple[str, ...] | None:
    items = tuple(v.strip() for v in (value or "").split(",") if v.strip())
    return items or None
