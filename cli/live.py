"""`asrkit transcribe --stream`: live transcription of a file played in real time, raw
PCM on standard input, or a microphone."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Iterator

import typer

from asrkit.decoding.base import WordTiming

CLEAR_LINE = "\r\x1b[K"  # carriage return, then erase to the end of the line


def run_stream(asr, dec, source: str | None, fmt: str, rate: int | None, fast: bool,
               chunk_seconds: float, output: Path | None,
               final_after: float | None = None) -> None:
    """Transcribe one live source (a file, '-' for raw PCM on stdin, None for the
    microphone) and print its words as they become final."""
    from asrkit.asr.sources import file_chunks, file_gain, microphone_chunks, pcm_chunks
    from asrkit.asr.streaming import StreamingTranscriber
    from asrkit.errors import ConfigError

    if fmt not in ("txt", "jsonl"):
        raise ConfigError(f"--format {fmt}: a stream is written as txt or jsonl")
    sr = asr.feature_config.sample_rate
    if source == "-":
        if rate is None:
            raise ConfigError("-: raw PCM on standard input needs its sample rate; add "
                              "--rate 16000 (16-bit little-endian mono)")
        chunks = pcm_chunks(sys.stdin.buffer, rate, chunk_seconds, sr)
    gain = None  # live audio: the gain of the loudest sample so far
    if source is None:
        chunks = microphone_chunks(chunk_seconds, sr)
    elif source != "-":
        chunks = file_chunks(source, chunk_seconds, sr, realtime=not fast)
        if asr.feature_config.gain_normalize:  # a file's loudest sample is known at once
            gain = file_gain(source, sr)
    transcriber = StreamingTranscriber(asr, dec, gain=gain, final_after=final_after)
    out = open(output, "w", encoding="utf-8") if output is not None else sys.stdout
    try:
        _print_updates(transcriber, chunks, out, fmt, live=out.isatty() and fmt == "txt")
    finally:
        if output is not None:
            out.close()


def _print_updates(transcriber, chunks: Iterator, out: IO[str], fmt: str, live: bool):
    t0, shown = time.monotonic(), ""
    try:
        for piece in chunks:
            update = transcriber.feed(piece)
            shown = _write(out, fmt, update, live, shown)
    except KeyboardInterrupt:  # the microphone runs until Ctrl-C: end the stream there
        pass
    update = transcriber.finish()
    _write(out, fmt, update, live, shown)
    if fmt == "jsonl":
        text = transcriber.hypothesis.text
        out.write(json.dumps({"type": "end", "text": text,
                              "seconds": round(update.seconds, 3)}) + "\n")
    wall = time.monotonic() - t0
    typer.echo(f"streamed {update.seconds:.1f} s of audio in {wall:.1f} s, "
               f"{len(transcriber.final_words)} word(s)", err=True)


def _write(out: IO[str], fmt: str, update, live: bool, shown: str) -> str:
    """Print one update; return the partial line now on the terminal."""
    partial = update.partial_text
    if not update.final and partial == shown:
        return shown
    if fmt == "jsonl":
        for w in update.final:
            out.write(json.dumps({"type": "final", **_word(w)}) + "\n")
        if partial != shown or (update.final and partial):
            out.write(json.dumps({"type": "partial", "text": partial,
                                  "words": [_word(w) for w in update.partial],
                                  "seconds": round(update.seconds, 3)}) + "\n")
        out.flush()
        return partial
    if live and shown:
        out.write(CLEAR_LINE)
    for w in update.final:
        out.write(f"{w.start:8.2f} {w.end:8.2f}  {w.word}  ({w.confidence:.2f})\n")
    if live and partial:
        out.write(f"{'':8} {'':8}  {partial} ...")
    out.flush()
    return partial if live else ""


def _word(w: WordTiming) -> dict:
    return {"word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence}
