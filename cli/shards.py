"""`asrkit index merge`: combine shard indexes built on several machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import progress, user_errors


def merge(
    out: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Index folder to create (must not exist, or be empty).")],
    shards: Annotated[list[Path], typer.Argument(metavar="SHARD_DIR", help="Index folders to combine, e.g. those built with --shard 1/N ... N/N.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
):
    """Combine shard indexes into one that answers like an index of the whole archive."""
    with user_errors():
        from asrkit.search.merge import merge_indexes
        with progress(desc="merging", unit="rec") as bar:
            def update(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()
            summary = merge_indexes(out, shards, update)
        if as_json:
            typer.echo(json.dumps({
                "index": str(out), "shards": summary.shards, "recordings": summary.recordings,
                "skipped": summary.skipped, "segments": summary.segments,
                "index_type": summary.index_type, "seconds": round(summary.seconds, 1)},
                indent=2))
            return
        typer.echo(f"{out}: merged {summary.shards} index(es): {summary.recordings} "
                   f"recording(s), {summary.segments} segments ({summary.index_type})"
                   + (f", {summary.skipped} skipped" if summary.skipped else ""))
