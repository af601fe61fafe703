"""`asrkit lm`: build word n-gram language models and tune their decoding weights."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ProgressBars, report_skipped, setup_logging, user_errors
from .common import NGRAM_ORDER, POSITIVE, POSITIVE_INT  # parse-time range checks

app = typer.Typer(help="Word n-gram language models for beam-search decoding.",
                  no_args_is_help=True)


@app.command()
def build(
    text: Annotated[Path, typer.Argument(help="Training text, one sentence per line.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ARPA file to write.")],
    order: Annotated[int, typer.Option("--order", "-n", callback=NGRAM_ORDER, help="N-gram order.")] = 3,
    case: Annotated[str, typer.Option("--case", help="upper, lower or keep: match the model's vocabulary.")] = "upper",
    as_json: Annotated[bool, typer.Option("--json", help="Print the n-gram counts as JSON.")] = False,
):
    """Estimate a modified Kneser–Ney n-gram model from text and write it as ARPA."""
    setup_logging()
    if case not in ("upper", "lower", "keep"):
        raise typer.BadParameter("choose upper, lower or keep", param_hint="--case")
    with user_errors():
        from asrkit.lm.ngram import write_arpa
        from asrkit.lm.estimate import estimate_kneser_ney, read_sentences
        from asrkit.text import normalize_text

        sentences = read_sentences(text, lambda line: normalize_text(line, case))
        model = estimate_kneser_ney(sentences, order)
        write_arpa(out, model)
        counts = {f"{k}-grams": len(t) for k, t in enumerate(model.ngrams, 1)}
        if as_json:
            typer.echo(json.dumps({"lm": str(out), "order": order, **counts}))
        else:
            typer.echo(f"wrote {out}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


def _floats(text: Optional[str], default: tuple[float, ...], name: str) -> tuple[float, ...]:
    if text is None:
        return default
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter("give comma-separated numbers, e.g. 0,0.5,1", param_hint=name) from None
    if not values:
        raise typer.BadParameter("give at least one value", param_hint=name)
    if not all(math.isfinite(v) for v in values):
        raise typer.BadParameter("give finite numbers", param_hint=name)
    return values


@app.command()
def tune(
    model: Annotated[str, typer.Argument(help="Model file, training folder or bundled model name.")],
    dev_manifest: Annotated[Path, typer.Argument(help="JSON Lines manifest with reference text.")],
    lm: Annotated[Path, typer.Option("--lm", help="ARPA file or KenLM binary.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Decoding config to write.")] = Path("decoding.json"),
    beam_size: Annotated[int, typer.Option("--beam-size", callback=POSITIVE_INT, help="Beam width.")] = 50,
    alphas: Annotated[Optional[str], typer.Option("--alphas", help="LM weights to try, comma-separated.")] = None,
    betas: Annotated[Optional[str], typer.Option("--betas", help="Word bonuses to try, comma-separated.")] = None,
    unk_offsets: Annotated[Optional[str], typer.Option("--unk-offsets", help="Unknown-word offsets to try, comma-separated (natural-log LM score charged once per word the LM does not know); default: keep the decoder's.")] = None,
    method: Annotated[str, typer.Option("--method", help="grid (every combination) or coordinate (line searches).")] = "grid",
    lexicon: Annotated[Optional[Path], typer.Option("--lexicon", help="Word list restricting the output.")] = None,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", callback=POSITIVE, help="Padded audio per batch.")] = 240.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Tune LM weight (alpha) and word bonus (beta), and with --unk-offsets the
    unknown-word offset, for the lowest dev-set WER.

    Writes a decoding config for `transcribe`/`evaluate --decoding-config`.
    """
    setup_logging()
    from asrkit.lm.tuning import DEFAULT_ALPHAS, DEFAULT_BETAS
    grid_a = _floats(alphas, DEFAULT_ALPHAS, "--alphas")
    grid_b = _floats(betas, DEFAULT_BETAS, "--betas")
    grid_u = _floats(unk_offsets, None, "--unk-offsets")
    if method not in ("grid", "coordinate"):
        raise typer.BadParameter("choose grid or coordinate", param_hint="--method")
    with user_errors():
        from asrkit.lm.tuning import tune_decoding
        with ProgressBars(unit=lambda p: "utt" if p.stage == "log-probs" else "setting",
                          postfix=lambda p: {} if p.wer is None else {"wer": f"{p.wer:.4f}"}
                          ) as bars:
            report = tune_decoding(model, dev_manifest, lm, out, beam_size, grid_a, grid_b,
                                   method, lexicon, batch_seconds, progress=bars.update,
                                   unk_offsets=grid_u)
        result = report.result
        if as_json:
            typer.echo(json.dumps({**report.summary(), "config": report.config,
                                   "skipped": [list(s) for s in report.skipped]}, indent=2))
        else:
            typer.echo(f"alpha {result.alpha:g}  beta {result.beta:g}  unknown-word offset "
                       f"{result.unk_offset:g}  dev WER "
                       f"{100 * result.wer:.2f}% (greedy {100 * report.greedy_wer:.2f}%, "
                       f"{len(result.trials)} settings tried)\nwrote {out}")
        report_skipped(list(report.skipped), "utterance")
