"""`asrkit transcribe`: speech to text for files, folders and manifests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import decoding_options as D
from .common import RootOpt, exit_if_partial, progress, setup_logging, user_errors
from .common import FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INT  # parse-time range checks


def transcribe(
    inputs: Annotated[list[str], typer.Argument(help="[MODEL] then audio files, folders (recursive) or JSON Lines manifests. The first of two or more arguments is MODEL when it is a .pt file, a training folder (holding best.pt or last.pt) or a bundled model name such as an4 (see `asrkit models`); otherwise every argument is an input and the bundled 'an4' model is used. For a folder of audio named like a bundled model, write ./an4; or name the model with -m.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model file, training folder or bundled model name.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="txt, jsonl, srt or vtt.")] = "txt",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout (txt/jsonl).")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="Write one file per input: <id>.<format>.")] = None,
    skip_done: Annotated[bool, typer.Option("--skip-done", help="Skip inputs already transcribed in --output/--output-dir (resume a killed run).")] = False,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", callback=POSITIVE, help="Padded audio per batch.")] = 240.0,
    min_confidence: Annotated[Optional[float], typer.Option("--min-confidence", callback=FRACTION, help="Leave words with a confidence below this (0..1) out of the text and subtitles; jsonl keeps them in 'words' marked \"dropped\": true. With a calibrated model (asrkit calibrate), 0.5 drops the words that are more likely wrong than right.")] = None,
    decoder: D.DecoderOpt = "greedy", beam_size: D.BeamSizeOpt = None, lm: D.LmOpt = None,
    alpha: D.AlphaOpt = None, beta: D.BetaOpt = None, lexicon: D.LexiconOpt = None,
    hotwords: D.HotwordsOpt = None, decoding_config: D.DecodingConfigOpt = None,
    token_min_logp: D.TokenMinLogpOpt = None, beam_threshold: D.BeamThresholdOpt = None,
    unk_offset: D.UnkOffsetOpt = None,
    cut: Annotated[str, typer.Option("--cut", help="How recordings longer than 30 s are cut: vad (at pauses found by --detector, pieces of at most 30 s recognised alone) or fixed (30 s chunks with 2 s of context either side).")] = "vad",
    detector: Annotated[str, typer.Option("--detector", help="Speech detector for --cut vad: energy or silero.")] = "energy",
    root: RootOpt = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Transcribe only part I of N of the inputs (e.g. 2/4), to split the work over N machines.")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="Live transcription with a forward-only model (bundled: an4-stream): one file played at real-time speed, '-' for raw 16-bit mono PCM on standard input (with --rate), or none with --microphone. Prints each word when it is final, with its times (and the partial guess, overwritten, on a terminal); --format jsonl gives both as JSON lines.")] = False,
    rate: Annotated[Optional[int], typer.Option("--rate", callback=POSITIVE_INT, help="Sample rate of raw PCM on standard input (--stream -).")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="--stream: read the file as fast as it can be transcribed instead of at real-time speed.")] = False,
    microphone: Annotated[bool, typer.Option("--microphone", help="--stream from the default input device (needs the sounddevice package); Ctrl-C ends it.")] = False,
    chunk_ms: Annotated[float, typer.Option("--chunk-ms", callback=POSITIVE, help="--stream: milliseconds of audio read at a time.")] = 100.0,
    final_after: Annotated[Optional[float], typer.Option("--final-after", callback=NON_NEGATIVE, help="--stream with --decoder beam: make a word final this many seconds after it ended even if rivals 1 nat or more below the best still disagree about it (they are dropped). Unset: only once no rival disagrees, so the result equals offline decoding, but words may wait seconds. On AN4, 0.2 cut the median delay from 923 to 438 ms (WER 8.80 % against 8.93 %).")] = None,
):
    """Transcribe audio; prints a real-time-factor line at the end."""
    setup_logging()
    with user_errors():
        from asrkit.asr.checkpoint import load_model
        from asrkit.asr.cutting import check_cut
        from asrkit.asr.output import TranscriptWriter
        from asrkit.asr.transcription import collect_inputs
        from asrkit.asr.transcription import transcribe as run
        from asrkit.shard import parse_shard, select_shard

        check_cut(cut, detector)
        if stream or microphone:
            return _stream(inputs, model, microphone, fmt, output, rate, fast, chunk_ms,
                           final_after, (decoder, beam_size, lm, alpha, beta, lexicon, hotwords,
                            decoding_config, token_min_logp, beam_threshold, unk_offset))
        part = parse_shard(shard) if shard is not None else None
        model_name, paths = _split_model(model, inputs)
        writer = TranscriptWriter(fmt, output, output_dir, resume=skip_done,
                                  min_confidence=min_confidence)
        asr = load_model(model_name)
        dec = D.build_decoder(asr, decoder, beam_size, lm, alpha, beta, lexicon, hotwords,
                              decoding_config, token_min_logp, beam_threshold, unk_offset)
        utts = select_shard(collect_inputs(paths, root), part,
                            key=lambda u: (u.id, u.audio, u.offset))
        utts = [u for u in utts if u.id not in writer.done]
        skipped = [(u.id, why) for u in utts if (why := writer.refusal(u))]
        utts = [u for u in utts if not writer.refusal(u)]
        audio_seconds, t0 = 0.0, time.monotonic()
        with writer, progress(total=len(utts), desc="transcribing", unit="file") as bar:
            for tr in run(asr, utts, dec, batch_seconds,
                          on_skip=lambda u, r: skipped.append((u.id, r)), cut=cut,
                          detector=detector):
                text = writer.write(tr)
                if output is None and output_dir is None:
                    typer.echo(text, nl=False)
                audio_seconds += tr.duration
                bar.update(1)
        wall = time.monotonic() - t0
        typer.echo(f"transcribed {writer.written} file(s), {audio_seconds:.1f} s of "
                   f"audio in {wall:.1f} s: real-time factor {wall / max(audio_seconds, 1e-9):.3f}"
                   + (f" ({len(writer.done)} already done)" if writer.done else ""), err=True)
        exit_if_partial(skipped)


def _stream(inputs, model, microphone, fmt, output, rate, fast, chunk_ms, final_after,
            decoding):
    from asrkit.asr.checkpoint import load_model
    from asrkit.asr.streaming import check_streamable
    from asrkit.decoding.base import GreedyDecoder
    from asrkit.errors import ConfigError
    from .live import run_stream

    from asrkit.pretrained import names_model
    if microphone and model is None and len(inputs) == 1 and names_model(inputs[0]):
        model_name, sources = inputs[0], []
    else:
        model_name, sources = _split_model(model, inputs)
    if microphone and sources:
        raise ConfigError(f"{sources[0]}: --microphone takes no input file; give one or the other")
    if not microphone and len(sources) != 1:
        raise ConfigError("--stream takes one input: a file, '-' for raw PCM on standard "
                          "input, or none with --microphone")
    asr = load_model(model_name)
    check_streamable(asr, model_name)
    dec = D.build_decoder(asr, *decoding)
    if final_after is not None and isinstance(dec, GreedyDecoder):
        raise ConfigError("--final-after applies to beam search (--decoder beam); greedy "
                          "words are final once the word separator after them is heard")
    run_stream(asr, dec, None if microphone else sources[0], fmt, rate, fast,
               chunk_ms / 1000, output, final_after)


def _split_model(model: str | None, inputs: list[str]) -> tuple[str, list[str]]:
    """The first of several positional arguments is the model if it names one."""
    from asrkit.pretrained import DEFAULT_MODEL, names_model
    if model is not None:
        return model, inputs
    if len(inputs) > 1 and names_model(inputs[0]):
        return inputs[0], inputs[1:]
    return DEFAULT_MODEL, inputs
