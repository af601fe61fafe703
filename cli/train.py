"""`asrkit train`: train a recurrent CTC recogniser (BiLSTM by default) on JSON Lines manifests.

Runs unchanged under torchrun (``torchrun --nproc-per-node N --no-python asrkit train
...``): every process trains, rank 0 alone prints and writes files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ProgressBars, RootOpt, report_skipped, setup_logging, user_errors


def train(
    train_manifest: Annotated[list[str], typer.Option("--train", help="Training manifest (JSON Lines); repeat for several corpora, each optionally with a sampling weight: --train a.jsonl:2 --train b.jsonl:1.")],
    valid_manifest: Annotated[list[Path], typer.Option("--valid", help="Validation manifest, for early stopping; repeat for a WER per corpus.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints, config and metrics.")],
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML config (sections model/features/augment/train).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value, e.g. --set train.lr=0.001 (repeatable).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from last.pt.")] = False,
    init: Annotated[Optional[str], typer.Option("--init", help="Start from this trained model (file, run folder or bundled name): fine-tuning. A new vocabulary re-initialises only the output layer; see also --set train.freeze_epochs=N.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    root: RootOpt = None,
):
    """Train a recogniser; writes best.pt, last.pt, config.yaml, metrics.jsonl, curve.png.

    The recurrent stack is set with --set model.KEY=VALUE (or a --config file): cell=lstm|gru, bidirectional=true|false, lookahead=N (forward-only: frames heard ahead), layer_norm=true, forget_bias=1.0, recurrent_init=orthogonal, dropout_kind=locked; and train.sortagrad=true. A model for live transcription (transcribe --stream) needs bidirectional=false and utterance_mean=false. Each option's measured effect on AN4: README, "Training configuration"; the recipe: recipes/an4/ablation.sh.
    """
    setup_logging(verbose)
    with user_errors():
        from asrkit.asr.distributed import detect_cluster
        main_process = detect_cluster().is_main
        if not main_process:  # rank 0 reports for all; the others speak only of errors
            logging.getLogger("asrkit").setLevel(logging.ERROR)
        from asrkit.asr.config import load_config
        from asrkit.asr.training import TrainCallbacks, train as run_training

        if resume and config is None and (out / "config.yaml").is_file():
            config = out / "config.yaml"  # the run's own settings, plus any --set
        cfg = load_config(config, overrides or [])
        train_utts = _corpora([_weighted(t) for t in train_manifest], root)
        valid_utts = _corpora([(v, 1.0) for v in valid_manifest], root)
        bars = ProgressBars(unit="batch", label=lambda s: f"epoch {s.epoch}",
                            postfix=lambda s: {"loss": f"{s.loss:.3f}",
                                               "fps": f"{s.frames_per_second:,.0f}",
                                               "lr": f"{s.lr:.2e}"})

        def on_start(info: dict) -> None:
            typer.echo(f"training on {info['train_utterances']} utterances "
                       f"({info['train_hours']:.2f} h), validating on "
                       f"{info['valid_utterances']}; {info['parameters'] / 1e6:.1f} M "
                       f"parameters; {info['skipped']} excluded", err=True)
            if info["processes"] > 1 or info["device"] != "cpu":
                typer.echo(f"{info['processes']} process(es) on {info['device']}, "
                           f"{info['steps_per_epoch']} steps an epoch", err=True)

        def on_epoch(e) -> None:
            bars.write(f"epoch {e.epoch}: train loss {e.train_loss:.3f}, valid loss "
                       f"{e.valid_loss:.3f}, CER {100 * e.valid_cer:.2f}%, WER "
                       f"{100 * e.valid_wer:.2f}%{'  (best)' if e.improved else ''}")
            for name, c in e.corpora.items():
                bars.write(f"  {name}: valid loss {c['valid_loss']:.3f}, CER "
                           f"{100 * c['valid_cer']:.2f}%, WER {100 * c['valid_wer']:.2f}%")

        with bars:
            result = run_training(train_utts, valid_utts, out, cfg, resume=resume,
                                  callbacks=TrainCallbacks(on_start, bars.update, on_epoch),
                                  init=init)
        if not main_process:
            return
        report_skipped([(s.id, s.reason) for s in result.skipped], "utterance")
        if result.best_epoch < 0:
            typer.echo(f"stopped after {result.steps} steps, before the first validation; "
                       f"continue with --resume (checkpoint: {out / 'last.pt'})")
            return
        typer.echo(f"best validation WER {100 * result.best_wer:.2f}% at epoch "
                   f"{result.best_epoch}; {result.steps} steps in {result.seconds / 60:.1f} min; "
                   f"model: {out / 'best.pt'}")


def _weighted(item: str) -> tuple[Path, float]:
    """``a.jsonl:2`` → (a.jsonl, 2.0); a plain path has weight 1."""
    path, sep, weight = item.rpartition(":")
    if sep:
        try:
            return Path(path), float(weight)
        except ValueError:
            pass  # a colon inside the path itself
    return Path(item), 1.0


def _corpora(items: list[tuple[Path, float]], root):
    """One manifest: its utterances; several: named corpora (by file stem, or parent
    folder and stem when stems repeat)."""
    from asrkit.asr.dataset import Corpus
    from asrkit.manifest import read_manifest
    if len(items) == 1 and items[0][1] == 1.0:
        return read_manifest(items[0][0], root)
    stems = [p.stem for p, _ in items]
    names = [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem
             for p, _ in items]
    return [Corpus(n, tuple(read_manifest(p, root)), w) for n, (p, w) in zip(names, items)]
