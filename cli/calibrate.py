"""`asrkit calibrate`: fit a model's word confidences to its accuracy on held-out data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import decoding_options as D
from .common import POSITIVE, RootOpt, progress, report_skipped, setup_logging, user_errors


def calibrate(
    model: Annotated[str, typer.Argument(help="Model file, training folder or bundled model name.")],
    manifest: Annotated[Path, typer.Argument(help="Validation manifest (JSON Lines with reference text), not the test set.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Calibrated copy of the model to write.")],
    method: Annotated[str, typer.Option("--method", help="auto (the lower held-out ECE), temperature or isotonic.")] = "auto",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Reliability diagram before and after (PNG).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", callback=POSITIVE, help="Padded audio per batch.")] = 240.0,
    decoder: D.DecoderOpt = "greedy", beam_size: D.BeamSizeOpt = None, lm: D.LmOpt = None,
    alpha: D.AlphaOpt = None, beta: D.BetaOpt = None, lexicon: D.LexiconOpt = None,
    hotwords: D.HotwordsOpt = None, decoding_config: D.DecodingConfigOpt = None,
    token_min_logp: D.TokenMinLogpOpt = None, beam_threshold: D.BeamThresholdOpt = None,
    unk_offset: D.UnkOffsetOpt = None,
    root: RootOpt = None,
):
    """Calibrate word confidences on MANIFEST; write a copy of MODEL that applies it."""
    setup_logging()
    with user_errors():
        from asrkit.asr.calibration import METHODS, fit_calibration, reliability
        from asrkit.asr.checkpoint import calibrated_record, load_model, load_record, save_record
        from asrkit.asr.evaluation import evaluate as run
        from asrkit.errors import ConfigError, ManifestError
        from asrkit.manifest import read_manifest
        from asrkit.pretrained import resolve_model

        if method not in ("auto", *METHODS):
            raise ConfigError(f"--method must be auto, {' or '.join(METHODS)}, not {method!r}")
        utts = read_manifest(manifest, root)
        if not utts:
            raise ManifestError(f"{manifest}: holds no utterances; nothing to calibrate on")
        asr = load_model(model)
        dec = D.build_decoder(asr, decoder, beam_size, lm, alpha, beta, lexicon, hotwords,
                              decoding_config, token_min_logp, beam_threshold, unk_offset)
        with progress(total=len(utts), desc="decoding", unit="utt") as bar:
            report = run(asr, utts, dec, batch_seconds, on_result=lambda _: bar.update(1),
                         calibrated=False)  # fitted on raw confidences, whatever MODEL has
        report_skipped(list(report.skipped), "utterance")
        calibration = fit_calibration(report.confidences, report.word_right, method)
        save_record(out, calibrated_record(load_record(resolve_model(model)), calibration))
        before = report.reliability()
        after = reliability(calibration.apply(report.confidences), report.word_right)
        if plot is not None:
            from asrkit.plots import plot_reliability
            plot_reliability([("raw", before), (f"{calibration.method} (on its fitting "
                                                "words)", after)], plot,
                             title=f"{model} on {manifest.name}: {before.words} words")
        result = {"model": model, "out": str(out), "method": calibration.method,
                  "temperature": calibration.temperature if calibration.method == "temperature"
                  else None, "words": calibration.words, "accuracy": round(before.accuracy, 6),
                  "ece_before": round(calibration.ece_before, 6),
                  "ece_after_held_out": round(calibration.ece_after, 6),
                  "ece_after_fitted": round(after.ece, 6)}
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        how = (f"temperature {calibration.temperature:.3f}"
               if calibration.method == "temperature" else
               f"isotonic, {len(calibration.xs)} knots")
        typer.echo(f"{calibration.words} words, {100 * before.accuracy:.1f}% right; "
                   f"calibration: {how}")
        typer.echo(f"ECE before {calibration.ece_before:.4f}, after {calibration.ece_after:.4f} "
                   f"(held out; {after.ece:.4f} on the words it was fitted on)")
        typer.echo(f"wrote {out}" + (f" and {plot}" if plot else ""))
        if calibration.ece_after > calibration.ece_before:
            typer.echo(f"warning: on held-out words the calibration is worse than none; "
                       f"{calibration.words} words may be too few (give a larger validation "
                       "set)", err=True)
