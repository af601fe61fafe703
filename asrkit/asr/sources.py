"""Audio that arrives over time, for live transcription: a file played at real-time
speed (or as fast as it can be read), raw PCM on a pipe, or a microphone.

Each source yields float32 chunks ``(samples,)`` at the sample rate asked for, not
gain-normalised (a live source cannot know its loudest sample in advance).
"""

from __future__ import annotations

import os
import time
from typing import BinaryIO, Callable, Iterator

import numpy as np
import soxr

from ..audio import load_audio, peak_gain
from ..errors import AudioError, ConfigError

PCM_BYTES = 2  # raw input is 16-bit signed little-endian mono


def file_chunks(path: str | os.PathLike, chunk_seconds: float, sample_rate: int,
                realtime: bool = True, sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic) -> Iterator[np.ndarray]:
    """A file's samples ``chunk_seconds`` at a time; with ``realtime`` each chunk is
    given no earlier than it would have been heard, as if the file were live."""
    wave = load_audio(path, sample_rate=sample_rate, normalize=False)
    step = max(1, int(round(chunk_seconds * sample_rate)))
    start = clock()
    for i in range(0, len(wave), step):
        piece = wave[i:i + step]
        if realtime:
            wait = start + (i + len(piece)) / sample_rate - clock()
            if wait > 0:
                sleep(wait)
        yield piece


def file_gain(path: str | os.PathLike, sample_rate: int) -> float:
    """The gain offline transcription gives the file (from its loudest sample)."""
    wave = load_audio(path, sample_rate=sample_rate, normalize=False)
    return peak_gain(float(np.abs(wave).max()) if len(wave) else 0.0)


def pcm_chunks(stream: BinaryIO, rate: int, chunk_seconds: float, sample_rate: int,
               ) -> Iterator[np.ndarray]:
    """Raw 16-bit little-endian mono PCM at ``rate`` from ``stream``, as it arrives,
    resampled to ``sample_rate`` chunk by chunk."""
    if rate <= 0:
        raise ConfigError(f"--rate {rate}: the sample rate of raw input must be positive")
    want = max(1, int(round(chunk_seconds * rate))) * PCM_BYTES
    carry = b""
    resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ") \
        if rate != sample_rate else None
    while True:
        data = stream.read1(want) if hasattr(stream, "read1") else stream.read(want)
        if not data:
            break
        data = carry + data
        usable = len(data) - len(data) % PCM_BYTES  # an odd byte waits for its pair
        carry = data[usable:]
        if usable:
            wave = np.frombuffer(data[:usable], "<i2").astype(np.float32) / 32768.0
            yield wave if resampler is None else resampler.resample_chunk(wave)
    if resampler is not None:
        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def microphone_chunks(chunk_seconds: float, sample_rate: int) -> Iterator[np.ndarray]:
    """The default input device, mono at ``sample_rate``, until interrupted. Needs the
    ``sounddevice`` package and a machine with an input device."""
    try:
        import sounddevice  # noqa: PLC0415 (optional: only microphone input needs it)
    except (ImportError, OSError) as e:
        raise AudioError(f"microphone input needs the sounddevice package and PortAudio "
                         f"({e}); pip install sounddevice, or pipe raw PCM into "
                         "'asrkit transcribe --stream -' with --rate") from None
    block = max(1, int(round(chunk_seconds * sample_rate)))
    try:
        with sounddevice.InputStream(samplerate=sample_rate, channels=1, dtype="float32",
                                     blocksize=block) as mic:
            while True:
                data, _ = mic.read(block)
                yield np.ascontiguousarray(data[:, 0])
    except sounddevice.PortAudioError as e:
        raise AudioError(f"microphone: {e}; check that the machine has an input device") from None
