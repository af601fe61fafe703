"""`asrkit index ...`: build, update, inspect and merge query-by-example search indexes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (EXIT_PARTIAL, ProgressBars, RootOpt, ThreadsOpt, exit_if_partial,
                     report_skipped, set_threads, user_errors)
from .common import POSITIVE, POSITIVE_INT  # parse-time range checks

app = typer.Typer(help="Build and update a search index of an audio archive.",
                  no_args_is_help=True)

ArchiveArg = Annotated[Path, typer.Argument(
    help="A folder of recordings (searched recursively) or a JSON Lines manifest.")]
IndexArg = Annotated[Path, typer.Argument(help="Index folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
BuildThreadsOpt = Annotated[Optional[int], typer.Option(callback=POSITIVE_INT,
    help="CPU cores for embedding: that many one-thread processes, this one included "
         "(default: all cores). On a machine shared with other busy jobs each worker simply gets its "
         "share; archives under two minutes are embedded in one process.")]
ShardOpt = Annotated[Optional[str], typer.Option(
    help="Index only part I of N of the archive (e.g. 2/4), to split one archive over N "
         "machines; combine the parts with `asrkit index merge`.")]


@app.command()
def build(
    archive: ArchiveArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Index folder to create. "
                                      "Re-running on an unfinished index resumes it.")],
    embedder: Annotated[Optional[Path], typer.Option(
        help="Embedder file (default: the one shipped with asrkit).")] = None,
    factory: Annotated[Optional[str], typer.Option(
        help="FAISS index type, e.g. Flat, HNSW32, IVF1024,Flat (default: by size).")] = None,
    durations: Annotated[Optional[str], typer.Option(
        help="Window lengths in seconds, comma-separated (default 0.4,0.7,1.1).")]
        = None,
    hop: Annotated[Optional[float], typer.Option(callback=POSITIVE,
        help="Seconds between window starts (default 0.25).")] = None,
    segments: Annotated[str, typer.Option(
        help="Candidates: windows (VAD + sliding windows), words (runs of 1-2 words "
             "recognised by --asr-model) or both.")] = "windows",
    asr_model: Annotated[Optional[str], typer.Option(
        help="Acoustic model for --segments words/both: file, training folder or "
             "bundled name (default an4).")] = None,
    detector: Annotated[Optional[str], typer.Option(
        help="Speech detector for the windows: energy (frame energy against the noise "
             "floor) or silero (the Silero VAD network; needs the silero-vad "
             "package).")] = None,
    threads: BuildThreadsOpt = None,
    shard: ShardOpt = None,
    as_json: JsonOpt = False,
    root: RootOpt = None,
):
    """Embed every candidate segment of ARCHIVE into a new index."""
    with user_errors():
        from asrkit.shard import parse_shard
        part = parse_shard(shard) if shard is not None else None
        workers = build_workers(threads)
        from asrkit.search.index import archive_sources, build_index
        from asrkit.search.segments import SegmentConfig
        config = SegmentConfig(**{k: v for k, v in (("durations", _floats(durations)),
                                                    ("hop", hop), ("kind", segments),
                                                    ("asr_model", asr_model),
                                                    ("detector", detector))
                                  if v is not None})
        sources = archive_sources(archive, root)
        with _indexing_bars() as bars:
            summary = build_index(sources, out, embedder, config, factory, bars.update,
                                  shard=part, workers=workers)
        _report(summary, out, as_json)


@app.command()
def add(index: IndexArg, archive: ArchiveArg, threads: BuildThreadsOpt = None,
        as_json: JsonOpt = False):
    """Add the recordings of ARCHIVE not yet in INDEX, re-index those whose audio changed
    since they were indexed, and retry skipped ones."""
    with user_errors():
        workers = build_workers(threads)
        from asrkit.search.index import add_to_index, archive_sources
        sources = archive_sources(archive)
        with _indexing_bars() as bars:
            summary = add_to_index(index, sources, bars.update, workers=workers)
        _report(summary, index, as_json)


@app.command()
def remove(
    index: IndexArg,
    names: Annotated[list[str], typer.Argument(
        help="Recordings to remove: names as listed by `asrkit index info`, or audio paths.")],
):
    """Remove recordings and all their segments from INDEX."""
    with user_errors():
        from asrkit.search.index import remove_from_index
        removed = remove_from_index(index, names)
        typer.echo(f"removed {len(removed)} recording(s) from {index}")


@app.command()
def rebuild(
    index: IndexArg,
    factory: Annotated[Optional[str], typer.Option(
        help="New FAISS index type (default: chosen by size).")] = None,
    params: Annotated[Optional[str], typer.Option(
        help="Search settings, e.g. nprobe=64 (IVF) or efSearch=256 (HNSW).")] = None,
):
    """Rebuild the FAISS index from the stored vectors (no re-embedding)."""
    with user_errors():
        from asrkit.search.index import rebuild_index
        kind = rebuild_index(index, factory, params)
        typer.echo(f"{index}: FAISS index rebuilt as {kind}")


@app.command()
def info(index: IndexArg, as_json: JsonOpt = False):
    """Show what INDEX holds: recordings, segments, index type, skipped files."""
    with user_errors():
        from asrkit.search.index import index_info
        data = index_info(index).to_dict()
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        for key, value in data.items():
            if key != "skipped":
                typer.echo(f"{key:14s} {value}")
        report_skipped(list(data["skipped"].items()), "recording")


@app.command()
def merge(
    out: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Index folder to create (must not exist, or be empty).")],
    shards: Annotated[list[Path], typer.Argument(metavar="SHARD_DIR", help="Index folders to combine, e.g. those built with --shard 1/N ... N/N.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
):
    """Combine shard indexes into one that answers like an index of the whole archive."""
    with user_errors():
        from asrkit.search.merge import merge_indexes
        with ProgressBars("merging", "rec") as bars:
            summary = merge_indexes(out, shards, bars.count)
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


def _report(summary, index: Path, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"index": str(index), "indexed": summary.indexed,
                               "already_indexed": summary.already,
                               "reindexed": summary.reindexed,
                               "skipped": dict(summary.skipped),
                               "segments_added": summary.segments,
                               "segments": summary.total_segments,
                               "audio_hours": round(summary.audio_seconds / 3600, 4),
                               "seconds": round(summary.seconds, 1),
                               "index_type": summary.index_type}, indent=2))
        if summary.skipped:  # listed in the JSON
            raise typer.Exit(EXIT_PARTIAL)
        return
    speed = summary.audio_seconds / max(summary.seconds, 1e-9)
    changed = (f" ({summary.reindexed} re-indexed: their audio changed since indexed)"
               if summary.reindexed else "")
    typer.echo(f"{index}: {summary.indexed} recording(s) indexed{changed}"
               f"{f', {summary.already} already there' if summary.already else ''}; "
               f"{summary.segments} segments added ({summary.total_segments} in all, "
               f"{summary.index_type}); {summary.audio_seconds / 3600:.2f} h of audio "
               f"at {speed:.0f}x real time")
    exit_if_partial(list(summary.skipped), "recording")


def build_workers(threads: Optional[int]) -> int:
    """Embedding processes for ``--threads`` (None: one per core), this one included;
    with one, the embedding runs here on one thread."""
    import os
    workers = threads if threads is not None else (os.cpu_count() or 1)
    set_threads(1 if workers == 1 else workers)  # FAISS uses them when the index is written
    return workers


def _floats(text: Optional[str]) -> Optional[tuple[float, ...]]:
    if text is None:
        return None
    from asrkit.errors import ConfigError
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or not all(0 < v < float("inf") for v in values):
        raise ConfigError(f"--durations {text}: expected a comma-separated list of positive "
                          "seconds, e.g. 0.5,1") from None
    return values


def _indexing_bars() -> ProgressBars:
    """A bar over recordings, fed by :class:`asrkit.search.index.BuildProgress`, with
    the segments added so far beside it."""
    added = 0

    def segments(p) -> dict:
        nonlocal added
        added += p.segments
        return {"segments": added}

    return ProgressBars("indexing", "rec", postfix=segments)
