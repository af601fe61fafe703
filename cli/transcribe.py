"""`asrkit transcribe`: speech to text for files, folders and manifests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import decoding_options as D
from .common import RootOpt, progress, report_skipped, setup_logging, user_errors
from .common import POSITIVE  # parse-time range checks

DEFAULT_MODEL = "an4"  # bundled model used when no model is named
EXIT_PARTIAL = 3  # some inputs were skipped; the others were transcribed


def transcribe(
    inputs: Annotated[list[str], typer.Argument(help="[MODEL] then audio files, folders (recursive) or JSON Lines manifests. MODEL is a .pt file, a training folder or a bundled name; without it the bundled 'an4' model is used.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model file, training folder or bundled model name.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="txt, jsonl, srt or vtt.")] = "txt",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout (txt/jsonl).")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="Write one file per input: <id>.<format>.")] = None,
    skip_done: Annotated[bool, typer.Option("--skip-done", help="Skip inputs already transcribed in --output/--output-dir (resume a killed run).")] = False,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", callback=POSITIVE, help="Padded audio per batch.")] = 240.0,
    decoder: D.DecoderOpt = "greedy", beam_size: D.BeamSizeOpt = None, lm: D.LmOpt = None,
    alpha: D.AlphaOpt = None, beta: D.BetaOpt = None, lexicon: D.LexiconOpt = None,
    hotwords: D.HotwordsOpt = None, decoding_config: D.DecodingConfigOpt = None,
    root: RootOpt = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Transcribe only part I of N of the inputs (e.g. 2/4), to split the work over N machines.")] = None,
):
    """Transcribe audio; prints a real-time-factor line at the end."""
    setup_logging()
    with user_errors():
        from asrkit.asr.checkpoint import load_model
        from asrkit.errors import ConfigError
        from asrkit.asr.output import FORMATS, format_transcript
        from asrkit.shard import parse_shard, select_shard
        from asrkit.asr.transcription import collect_inputs
        from asrkit.asr.transcription import transcribe as run

        if fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}")
        part = parse_shard(shard) if shard is not None else None
        if output and output_dir:
            raise ConfigError("give --output or --output-dir, not both")
        if output and fmt in ("srt", "vtt"):
            raise ConfigError("srt/vtt are per recording: use --output-dir")
        model_name, paths = _split_model(model, inputs)
        asr = load_model(model_name)
        dec = D.build_decoder(asr, decoder, beam_size, lm, alpha, beta, lexicon, hotwords,
                              decoding_config)
        utts = select_shard(collect_inputs(paths, root), part,
                            key=lambda u: (u.id, u.audio, u.offset))
        done = _done_ids(output, output_dir, fmt) if skip_done else set()
        utts = [u for u in utts if u.id not in done]
        skipped: list[tuple[str, str]] = []
        if output_dir:
            skipped = [(u.id, f"id would write outside --output-dir {output_dir}; give "
                        "it an id without '..' or a leading '/'")
                       for u in utts if not _inside(output_dir, u.id, fmt)]
            utts = [u for u in utts if _inside(output_dir, u.id, fmt)]
        sink = _open_output(output, skip_done) if output else None
        audio_seconds, transcribed, t0 = 0.0, 0, time.monotonic()
        with progress(total=len(utts), desc="transcribing", unit="file") as bar:
            for tr in run(asr, utts, dec, batch_seconds,
                          on_skip=lambda u, r: skipped.append((u.id, r))):
                text = format_transcript(tr, fmt)
                if output_dir:
                    _write_one(output_dir, tr.utt.id, fmt, text)
                elif sink:
                    _append(sink, text, transcribed)
                else:
                    typer.echo(text, nl=False)
                audio_seconds += tr.duration
                transcribed += 1
                bar.update(1)
        if sink:
            sink.close()
        wall = time.monotonic() - t0
        typer.echo(f"transcribed {transcribed} file(s), {audio_seconds:.1f} s of "
                   f"audio in {wall:.1f} s: real-time factor {wall / max(audio_seconds, 1e-9):.3f}"
                   + (f" ({len(done)} already done)" if done else ""), err=True)
        report_skipped(skipped)
        if skipped:
            raise typer.Exit(EXIT_PARTIAL)


def _split_model(model: str | None, inputs: list[str]) -> tuple[str, list[str]]:
    """The first positional argument is the model if it looks like one."""
    if model is not None:
        return model, inputs
    first = Path(inputs[0])
    if len(inputs) > 1 and (first.suffix == ".pt" or (first / "best.pt").is_file()
                            or (first / "last.pt").is_file()):
        return inputs[0], inputs[1:]
    return DEFAULT_MODEL, inputs


def _write_one(folder: Path, uid: str, fmt: str, text: str) -> None:
    from asrkit.io import atomic_write_text
    atomic_write_text(folder / f"{uid}.{fmt}", text)


def _open_output(output: Path, append: bool):
    from asrkit.errors import AsrkitError
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        return open(output, "a" if append else "w", encoding="utf-8")
    except OSError as e:
        raise AsrkitError(f"{output}: cannot write here ({e.strerror}); choose a writable "
                          "output file") from None


def _append(sink, text: str, done: int) -> None:
    """One transcript, flushed, so a killed run keeps every finished line."""
    from asrkit.errors import AsrkitError
    try:
        sink.write(text)
        sink.flush()
    except OSError as e:
        raise AsrkitError(f"{sink.name}: write failed ({e.strerror}); the {done} transcript(s) "
                          "before it are kept. Free disk space, then continue with "
                          "--skip-done") from None


def _inside(folder: Path, uid: str, fmt: str) -> bool:
    """Whether ``<uid>.<fmt>`` stays inside ``folder``: ids come from manifests, and
    one like ``../../x`` must not write elsewhere."""
    base = folder.resolve()
    return (base / f"{uid}.{fmt}").resolve().is_relative_to(base)


def _done_ids(output: Path | None, output_dir: Path | None, fmt: str) -> set[str]:
    if output_dir is not None:
        if not output_dir.is_dir():
            return set()
        return {p.relative_to(output_dir).with_suffix("").as_posix()
                for p in output_dir.rglob(f"*.{fmt}")}
    if output is not None and output.exists():
        ids = set()
        for line in output.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                ids.add(json.loads(line)["id"] if fmt == "jsonl" else line.split("\t", 1)[0])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a killed run: transcribe that input again
        return ids
    return set()
