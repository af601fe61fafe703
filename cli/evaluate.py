"""`asrkit evaluate`: WER and CER of a model on a labelled manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import decoding_options as D
from .common import RootOpt, progress, report_skipped, setup_logging, user_errors
from .common import NON_NEGATIVE_INT, POSITIVE  # parse-time range checks


def evaluate(
    model: Annotated[str, typer.Argument(help="Model file, training folder or bundled model name.")],
    manifest: Annotated[Path, typer.Argument(help="JSON Lines manifest with reference text.")],
    results: Annotated[Optional[Path], typer.Option("--results", help="Per-utterance results (JSON Lines).")] = None,
    worst: Annotated[int, typer.Option("--worst", callback=NON_NEGATIVE_INT, help="List this many worst utterances.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", callback=POSITIVE, help="Padded audio per batch.")] = 240.0,
    decoder: D.DecoderOpt = "greedy", beam_size: D.BeamSizeOpt = None, lm: D.LmOpt = None,
    alpha: D.AlphaOpt = None, beta: D.BetaOpt = None, lexicon: D.LexiconOpt = None,
    hotwords: D.HotwordsOpt = None, decoding_config: D.DecodingConfigOpt = None,
    root: RootOpt = None,
):
    """Score a model: WER/CER with substitution, deletion and insertion counts."""
    setup_logging()
    with user_errors():
        from asrkit.asr.checkpoint import load_model
        from asrkit.asr.evaluation import evaluate as run
        from asrkit.io import atomic_open
        from asrkit.manifest import read_manifest

        from asrkit.errors import ManifestError
        utts = read_manifest(manifest, root)
        if not utts:
            raise ManifestError(f"{manifest}: holds no utterances; nothing to evaluate")
        asr = load_model(model)
        dec = D.build_decoder(asr, decoder, beam_size, lm, alpha, beta, lexicon, hotwords,
                              decoding_config)
        with progress(total=len(utts), desc="evaluating", unit="utt") as bar:
            report = run(asr, utts, dec, batch_seconds, on_result=lambda _: bar.update(1))
        if not report.utterances:  # all skipped: no WER to show, not even 0 %
            report_skipped(list(report.skipped), "utterance")
            raise ManifestError(f"{manifest}: none of its {len(utts)} utterance(s) could be "
                                "scored (reasons above)")
        if results:
            with atomic_open(results, "w", encoding="utf-8") as f:
                for u in report.utterances:
                    f.write(json.dumps({"id": u.id, "reference": u.reference,
                                        "hypothesis": u.hypothesis,
                                        "word_errors": u.words.errors,
                                        "words": u.words.reference_length,
                                        "char_errors": u.chars.errors}, ensure_ascii=False) + "\n")
        if as_json:
            typer.echo(json.dumps(report.summary(), indent=2))
        else:
            _print_report(report, worst)
        report_skipped(list(report.skipped), "utterance")
        if report.skipped:
            raise typer.Exit(3)


def _print_report(report, worst: int) -> None:
    w, c = report.words, report.chars
    typer.echo(f"WER {100 * w.rate:6.2f}%  ({w.errors} errors / {w.reference_length} words: "
               f"{w.substitutions} sub, {w.deletions} del, {w.insertions} ins)")
    typer.echo(f"CER {100 * c.rate:6.2f}%  ({c.errors} errors / {c.reference_length} chars: "
               f"{c.substitutions} sub, {c.deletions} del, {c.insertions} ins)")
    typer.echo(f"{len(report.utterances)} utterances, {report.audio_seconds / 60:.1f} min of audio")
    bad = [u for u in report.worst(worst) if u.words.errors]
    if bad:
        typer.echo(f"worst {len(bad)}:")
        for u in bad:
            typer.echo(f"  {u.id}  ({u.words.errors} errors)\n    REF: {u.reference}\n"
                       f"    HYP: {u.hypothesis}")
