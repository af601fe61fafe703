"""`asrkit embedder ...`: train a search embedder and measure it against DTW."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (ConditionOpt, PlotOpt, ProgressBars, ThreadsOpt, print_word_eval,
                     report_skipped, set_threads, user_errors)
from .common import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT  # parse-time range checks

app = typer.Typer(help="Train and evaluate the acoustic word embedder used by search.",
                  no_args_is_help=True)


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Embedder file to write.")],
    manifest: Annotated[Optional[Path], typer.Option(
        help="Recordings to learn from (JSON Lines; transcripts are not needed).")] = None,
    audio_dir: Annotated[Optional[Path], typer.Option(
        help="A folder of recordings to learn from, instead of or besides --manifest.")]
        = None,
    words: Annotated[Optional[Path], typer.Option(
        help="Optional single-word recordings (manifest, text = the word): pairs of the "
             "same word teach speaker invariance.")] = None,
    epochs: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Passes over --windows-per-epoch pairs.")] = 15,
    windows_per_epoch: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Training pairs per epoch.")] = 4096,
    batch_size: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Pairs per step.")] = 64,
    lr: Annotated[float, typer.Option(callback=POSITIVE, help="Peak learning rate (cosine decay).")] = 2e-3,
    contrastive_weight: Annotated[float, typer.Option(callback=NON_NEGATIVE,
        help="Weight of the contrastive term; 0 = a plain denoising autoencoder.")] = 1.0,
    features: Annotated[str, typer.Option(
        help="fbank, mfcc, or asr (the states of --asr-model: less of the speaker).")]
        = "fbank",
    asr_model: Annotated[Optional[str], typer.Option(
        help="With --features asr: acoustic model file, training folder or bundled name "
             "(default an4). The embedder records it; index and search use the same.")]
        = None,
    hidden: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Encoder units per direction.")] = 160,
    layers: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Encoder layers.")] = 2,
    dim: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Embedding size.")] = 128,
    stack: Annotated[Optional[int], typer.Option(callback=POSITIVE_INT,
        help="Frames joined per encoder step (default 3; 2 for asr, whose frames are "
             "already 20 ms).")] = None,
    channel_copies: Annotated[int, typer.Option(callback=NON_NEGATIVE_INT,
        help="Also hear each recording through this many simulated channels (noise at "
             "0-20 dB SNR, rooms, 8 kHz), made once before training: vectors that hold up "
             "in noisy and telephone audio. Memory grows with it (features of every copy).")]
        = 0,
    seed: Annotated[int, typer.Option(callback=NON_NEGATIVE_INT, help="Same seed and data, same embedder.")] = 0,
    threads: ThreadsOpt = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue from <out>.ckpt (only --epochs may change).")] = False,
):
    """Train a sequence-autoencoder embedder on unlabelled recordings (and/or words)."""
    with user_errors():
        set_threads(threads)
        from asrkit.errors import ConfigError
        from asrkit.manifest import read_manifest
        from asrkit.search.embedder_training import TrainConfig, train_embedder
        from asrkit.search.embedding import EmbedderConfig
        from asrkit.search.index import archive_sources
        if manifest is None and audio_dir is None and words is None:
            raise ConfigError("give training audio: --manifest, --audio-dir and/or --words")
        recordings = (archive_sources(manifest) if manifest else []) + \
                     (archive_sources(audio_dir) if audio_dir else [])
        model = EmbedderConfig.make(features, asr_model, hidden, layers, dim, stack)
        config = TrainConfig(epochs=epochs, windows_per_epoch=windows_per_epoch,
                             batch_size=batch_size, learning_rate=lr,
                             contrastive_weight=contrastive_weight,
                             channel_copies=channel_copies, seed=seed)
        skipped: list[tuple[str, str]] = []
        typer.echo("reading audio...", err=True)
        with ProgressBars(unit="step", label=lambda p: f"epoch {p.epoch}/{p.epochs}",
                          postfix=lambda p: {"loss": f"{p.loss:.3f}",
                                             "rec": f"{p.reconstruction:.3f}",
                                             "con": f"{p.contrastive:.3f}"}) as bars:
            embedder = train_embedder(out, recordings, read_manifest(words) if words else [],
                                      config, model, resume=resume, progress=bars.update,
                                      on_skip=lambda name, why: skipped.append((name, why)))
        report_skipped(skipped, "recording")
        last = embedder.info["history"][-1] if embedder.info.get("history") else {}
        typer.echo(f"embedder written to {out} ({embedder.info['windows']} training windows; "
                   f"final loss {last.get('loss', float('nan')):.3f})")


@app.command("eval")
def evaluate(
    manifest: Annotated[Path, typer.Argument(
        help="Word-labelled segments: text = the word; one word per line, or word time "
             "spans via offset/duration.")],
    embedder: Annotated[Optional[Path], typer.Option(
        help="Embedder file (default: the one shipped with asrkit).")] = None,
    dtw: Annotated[bool, typer.Option(help="Also run the DTW-on-MFCC baseline.")] = True,
    trim: Annotated[bool, typer.Option(help="Cut silence around each word first.")] = True,
    condition: ConditionOpt = None,
    plot: PlotOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
):
    """Same-different AP, query-by-example MAP and P@10, and time per query:
    embeddings vs frame-level DTW, under --condition test conditions if given."""
    with user_errors():
        from asrkit.search.embedding import load_embedder
        from asrkit.search.evaluation import evaluate_word_manifest
        with ProgressBars(desc="loading", unit="word") as bars:
            segments, results = evaluate_word_manifest(manifest, load_embedder(embedder), dtw,
                                                       trim, progress=bars.count,
                                                       conditions=condition or "clean")
        print_word_eval(segments, results, as_json, plot)
