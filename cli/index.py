"""`asrkit index ...`: build and update a query-by-example search index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import RootOpt, progress, report_skipped, user_errors

app = typer.Typer(help="Build and update a search index of an audio archive.",
                  no_args_is_help=True)

EXIT_PARTIAL = 3  # some recordings were skipped (listed); the others are indexed
ArchiveArg = Annotated[Path, typer.Argument(
    help="A folder of recordings (searched recursively) or a JSON Lines manifest.")]
IndexArg = Annotated[Path, typer.Argument(help="Index folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    help="CPU threads for embedding (default: all cores; 1 is faster on a busy machine).")]
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
        help="Window lengths in seconds, comma-separated (default 0.3,0.5,0.7,0.9,1.2,1.5).")]
        = None,
    hop: Annotated[Optional[float], typer.Option(
        help="Seconds between window starts (default 0.1).")] = None,
    segments: Annotated[str, typer.Option(
        help="Candidates: windows (VAD + sliding windows), words (runs of 1-2 words "
             "recognised by --asr-model) or both.")] = "windows",
    asr_model: Annotated[Optional[str], typer.Option(
        help="Acoustic model for --segments words/both: file, training folder or "
             "bundled name (default an4).")] = None,
    threads: ThreadsOpt = None,
    shard: ShardOpt = None,
    as_json: JsonOpt = False,
    root: RootOpt = None,
):
    """Embed every candidate segment of ARCHIVE into a new index."""
    with user_errors():
        from asrkit.shard import parse_shard
        part = parse_shard(shard) if shard is not None else None
        set_threads(threads)
        from asrkit.search.index import archive_sources, build_index
        from asrkit.search.segments import SegmentConfig
        if segments != "windows":
            asr_model = asr_model or "an4"
        config = SegmentConfig(**{k: v for k, v in (("durations", _floats(durations)),
                                                    ("hop", hop), ("kind", segments),
                                                    ("asr_model", asr_model))
                                  if v is not None})
        sources = archive_sources(archive, root)
        with _Bar(len(sources)) as bar:
            summary = build_index(sources, out, embedder, config, factory, bar.update,
                                  shard=part)
        _report(summary, out, as_json)
        if summary.skipped:
            raise typer.Exit(EXIT_PARTIAL)


@app.command()
def add(index: IndexArg, archive: ArchiveArg, threads: ThreadsOpt = None,
        as_json: JsonOpt = False):
    """Add the recordings of ARCHIVE not yet in INDEX, re-index those whose audio changed
    since they were indexed, and retry skipped ones."""
    with user_errors():
        set_threads(threads)
        from asrkit.search.index import add_to_index, archive_sources
        sources = archive_sources(archive)
        with _Bar(len(sources)) as bar:
            summary = add_to_index(index, sources, bar.update)
        _report(summary, index, as_json)
        if summary.skipped:
            raise typer.Exit(EXIT_PARTIAL)


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
        from asrkit.search.index import SearchIndex
        with SearchIndex(index) as idx:
            sources = idx.sources()
            indexed = [s for s in sources if s.status == "indexed"]
            data = {"index": str(index), "recordings": len(indexed),
                    "segments": len(idx), "audio_hours": round(sum(
                        s.duration or 0 for s in indexed) / 3600, 3),
                    "index_type": idx.vectors.factory, "search_params": idx.vectors.params,
                    "embedder": idx.embedder.fingerprint()[:16],
                    "skipped": {s.name: s.reason for s in sources if s.status == "skipped"}}
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        for key, value in data.items():
            if key != "skipped":
                typer.echo(f"{key:14s} {value}")
        report_skipped(list(data["skipped"].items()), "recording")


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
        return
    speed = summary.audio_seconds / max(summary.seconds, 1e-9)
    changed = (f" ({summary.reindexed} re-indexed: their audio changed since indexed)"
               if summary.reindexed else "")
    typer.echo(f"{index}: {summary.indexed} recording(s) indexed{changed}"
               f"{f', {summary.already} already there' if summary.already else ''}; "
               f"{summary.segments} segments added ({summary.total_segments} in all, "
               f"{summary.index_type}); {summary.audio_seconds / 3600:.2f} h of audio "
               f"at {speed:.0f}x real time")
    report_skipped(list(summary.skipped), "recording")


def set_threads(threads: Optional[int]) -> None:
    """Limit torch and FAISS to ``threads`` (None: leave their defaults)."""
    if threads is None:
        return
    if threads < 1:
        from asrkit.errors import ConfigError
        raise ConfigError(f"--threads must be at least 1, not {threads}")
    import faiss
    import torch
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def _floats(text: Optional[str]) -> Optional[tuple[float, ...]]:
    if text is None:
        return None
    from asrkit.errors import ConfigError
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--durations: {text!r} is not a comma-separated list of seconds") \
            from None


class _Bar:
    """tqdm bar over recordings, fed by :class:`asrkit.search.index.BuildProgress` reports."""

    def __init__(self, total: int):
        self.bar = progress(total=total, desc="indexing", unit="rec")
        self.segments = 0

    def update(self, p) -> None:
        if self.bar.total != p.total:
            self.bar.reset(total=p.total)
        self.segments += p.segments
        self.bar.n = p.done
        self.bar.set_postfix(segments=self.segments, refresh=False)
        self.bar.refresh()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
