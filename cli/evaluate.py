"""`asrkit evaluate`: WER and CER of a model on a labelled manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import decoding_options as D
from .common import (NON_NEGATIVE_INT, POSITIVE, ConditionOpt, PlotOpt, RootOpt, exit_if_partial,
                     progress, report_skipped, setup_logging, user_errors)


def evaluate(
    model: Annotated[str, typer.Argument(help="Model file, training folder or bundled model name.")],
    manifest: Annotated[Path, typer.Argument(help="JSON Lines manifest with reference text.")],
    results: Annotated[Optional[Path], typer.Option("--results", help="Per-utterance results (JSON Lines).")] = None,
    worst: Annotated[int, typer.Option("--worst", callback=NON_NEGATIVE_INT, help="List this many worst utterances.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", callback=POSITIVE, help="Padded audio per batch.")] = 240.0,
    condition: ConditionOpt = None,
    plot: PlotOpt = None,
    decoder: D.DecoderOpt = "greedy", beam_size: D.BeamSizeOpt = None, lm: D.LmOpt = None,
    alpha: D.AlphaOpt = None, beta: D.BetaOpt = None, lexicon: D.LexiconOpt = None,
    hotwords: D.HotwordsOpt = None, decoding_config: D.DecodingConfigOpt = None,
    token_min_logp: D.TokenMinLogpOpt = None, beam_threshold: D.BeamThresholdOpt = None,
    unk_offset: D.UnkOffsetOpt = None,
    root: RootOpt = None,
):
    """Score a model: WER/CER with substitution, deletion and insertion counts."""
    setup_logging()
    with user_errors():
        from asrkit.asr.checkpoint import load_model
        from asrkit.asr.evaluation import evaluate as run
        from asrkit.manifest import read_manifest

        from asrkit.errors import ManifestError
        utts = read_manifest(manifest, root)
        if not utts:
            raise ManifestError(f"{manifest}: holds no utterances; nothing to evaluate")
        asr = load_model(model)
        dec = D.build_decoder(asr, decoder, beam_size, lm, alpha, beta, lexicon, hotwords,
                              decoding_config, token_min_logp, beam_threshold, unk_offset)
        if condition is not None or plot is not None:
            _by_condition(asr, utts, dec, batch_seconds, condition or "clean", plot, as_json,
                          model)
            return
        with progress(total=len(utts), desc="evaluating", unit="utt") as bar:
            report = run(asr, utts, dec, batch_seconds, on_result=lambda _: bar.update(1))
        if not report.utterances:  # all skipped: no WER to show, not even 0 %
            report_skipped(list(report.skipped), "utterance")
            raise ManifestError(f"{manifest}: none of its {len(utts)} utterance(s) could be "
                                "scored (reasons above)")
        if results:
            report.write_results(results)
        if as_json:
            typer.echo(json.dumps(report.summary(), indent=2))
        else:
            _print_report(report, worst)
        exit_if_partial(list(report.skipped), "utterance")


def _print_report(report, worst: int) -> None:
    w, c = report.words, report.chars
    typer.echo(f"WER {100 * w.rate:6.2f}%  ({w.errors} errors / {w.reference_length} words: "
               f"{w.substitutions} sub, {w.deletions} del, {w.insertions} ins)")
    typer.echo(f"CER {100 * c.rate:6.2f}%  ({c.errors} errors / {c.reference_length} chars: "
               f"{c.substitutions} sub, {c.deletions} del, {c.insertions} ins)")
    typer.echo(f"{len(report.utterances)} utterances, {report.audio_seconds / 60:.1f} min of audio")
    curve = report.reliability()
    if curve is not None:
        typer.echo(f"word confidence: mean {curve.confidence:.3f}, {100 * curve.accuracy:.1f}% "
                   f"of {curve.words} words right, ECE {curve.ece:.4f}")
    bad = [u for u in report.worst(worst) if u.words.errors]
    if bad:
        typer.echo(f"worst {len(bad)}:")
        for u in bad:
            typer.echo(f"  {u.id}  ({u.words.errors} errors)\n    REF: {u.reference}\n"
                       f"    HYP: {u.hypothesis}")


def _by_condition(asr, utts, dec, batch_seconds, names: str, plot, as_json, model_name) -> None:
    """One WER/CER row per condition; exit code 3 if any utterance was skipped."""
    from asrkit.asr.evaluation import evaluate as run
    from asrkit.conditions import parse_conditions
    from asrkit.plots import plot_conditions

    conditions = parse_conditions(names)
    reports = []
    with progress(total=len(utts) * len(conditions), desc="evaluating", unit="utt") as bar:
        for c in conditions:
            bar.set_description(c.name)
            reports.append(run(asr, utts, dec, batch_seconds, lambda _: bar.update(1), c))
    rows = [(c.name, r.wer, r.cer) for c, r in zip(conditions, reports)]
    if plot is not None:
        plot_conditions(rows, plot, title=f"{model_name}: {len(reports[0].utterances)} "
                                          "utterances")
    if as_json:
        typer.echo(json.dumps([{"condition": c.name, **r.summary()}
                               for c, r in zip(conditions, reports)], indent=2))
    else:
        typer.echo(f"{'condition':<12} {'WER':>7} {'CER':>7}  words  utterances")
        for c, r in zip(conditions, reports):
            typer.echo(f"{c.name:<12} {100 * r.wer:6.2f}% {100 * r.cer:6.2f}%  "
                       f"{r.words.reference_length:5d}  {len(r.utterances)}")
    exit_if_partial(list(reports[0].skipped), "utterance")
