"""`asrkit align`: where each word of a known transcript is in a recording."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (FINITE, POSITIVE, POSITIVE_INT, ProgressBars, RootOpt, exit_if_partial,
                     setup_logging, user_errors)


def align(
    model: Annotated[str, typer.Argument(help="Model file, training folder or bundled model name (see `asrkit models`).")],
    audio: Annotated[Optional[list[Path]], typer.Argument(help="The recording whose transcript --text gives.")] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="The transcript of the one AUDIO recording.")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="JSON Lines manifest: align each line's audio to its text.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl, srt, vtt or textgrid (Praat, with a words and a chars tier).")] = "jsonl",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout (jsonl; any format for one recording).")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="Write one file per recording: <id>.<format>.")] = None,
    min_score: Annotated[float, typer.Option("--min-score", callback=FINITE, help="Flag words whose worst-heard character (mean log-posterior of its frames) scores below this as low_score.")] = -3.0,
    max_cells: Annotated[int, typer.Option("--max-cells", callback=POSITIVE_INT, help="Align at most this many trellis cells (one byte each) at once; longer recordings are cut at recognised words.")] = 20_000_000,
    drop_unknown: Annotated[bool, typer.Option("--drop-unknown", help="Drop characters the model cannot write (punctuation...) instead of refusing the text.")] = False,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", callback=POSITIVE, help="Padded audio per batch.")] = 240.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (alignments then need -o or --output-dir).")] = False,
    root: RootOpt = None,
):
    """Align known transcripts to recordings: word and character times, each word scored
    and flagged when the model hardly hears it there."""
    setup_logging()
    with user_errors():
        from asrkit.asr.alignment import AlignConfig
        from asrkit.asr.alignment import align as run
        from asrkit.asr.alignment_output import AlignmentWriter
        from asrkit.asr.checkpoint import load_model
        from asrkit.errors import AlignmentError, ConfigError

        utts = _inputs(audio or [], text, manifest, root)
        single = manifest is None
        if as_json and output is None and output_dir is None:
            raise ConfigError("--json prints the summary on stdout: write the alignments "
                              "with -o or --output-dir")
        writer = AlignmentWriter(fmt, output, output_dir, single=single)  # type: ignore[arg-type]
        config = AlignConfig(min_score, max_cells, drop_unknown)
        asr = load_model(model)
        skipped = [(u.id, why) for u in utts if (why := writer.refusal(u))]
        utts = [u for u in utts if not writer.refusal(u)]
        words = flagged = 0
        audio_seconds, t0 = 0.0, time.monotonic()
        with writer, ProgressBars("aligning", "file") as bars:
            for al in run(asr, utts, config, batch_seconds,
                          on_skip=lambda u, r: skipped.append((u.id, r))):
                out = writer.write(al)
                if output is None and output_dir is None:
                    bars.write(out.rstrip("\n"))
                words += len(al.words)
                flagged += sum(w.flag is not None for w in al.words)
                audio_seconds += al.duration
                bars.count(writer.written + len(skipped), len(utts))
        if single and skipped:
            raise AlignmentError(skipped[0][1])
        summary = {"aligned": writer.written, "skipped": len(skipped), "words": words,
                   "flagged": flagged, "audio_seconds": round(audio_seconds, 3),
                   "seconds": round(time.monotonic() - t0, 3)}
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            typer.echo(f"aligned {writer.written} recording(s), {words} word(s), {flagged} "
                       f"flagged low_score, {audio_seconds:.1f} s of audio in "
                       f"{summary['seconds']:.1f} s", err=True)
        exit_if_partial(skipped, "recording")


def _inputs(audio: list[Path], text: str | None, manifest: Path | None, root: Path | None):
    """The utterances to align: one recording with --text, or a manifest's lines."""
    from asrkit.errors import ConfigError, ManifestError
    from asrkit.manifest import Utterance, check_root, read_manifest
    if manifest is not None:
        if audio or text is not None:
            raise ConfigError("give AUDIO with --text, or --manifest, not both")
        utts = read_manifest(manifest, root)
        if not utts:
            raise ManifestError(f"{manifest}: holds no utterances; nothing to align")
        return utts
    if text is None or len(audio) != 1:
        raise ConfigError("give one AUDIO file and its transcript with --text, or a "
                          "manifest of recordings and texts with --manifest")
    utt = Utterance(audio[0].stem, str(audio[0]), text)
    if root is not None:
        check_root(utt, root.resolve(), str(audio[0]))
    return [utt]
