"""Reading audio: any format libsndfile knows, any rate, any channel count → mono float32.

Everything downstream works on 16 kHz mono waveforms of shape ``(samples,)``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError

SAMPLE_RATE = 16_000  # Hz; the rate every model in asrkit works at
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".sph")
PEAK_TARGET = 0.9  # gain normalisation scales the peak to this fraction of full scale
MIN_PEAK = 1e-5  # quieter than this is treated as silence and left alone


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says, without reading the samples."""

    path: str
    sample_rate: int  # Hz
    frames: int  # samples per channel
    channels: int
    subtype: str  # e.g. PCM_16, FLOAT

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of ``path``; raise :class:`AudioError` if it is not audio."""
    path = _check_exists(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: not a readable audio file ({_reason(e)}); "
                         "convert it to WAV or FLAC, or remove it from the input") from e
    if info.format == "WAV" and (missing := _wav_missing_bytes(path)):
        raise AudioError(f"{path}: truncated WAV file ({missing} bytes of audio data are "
                         "missing); re-export the file or remove it from the input")
    return AudioInfo(str(path), int(info.samplerate), int(info.frames),
                     int(info.channels), str(info.subtype))


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
    normalize: bool = False,
) -> np.ndarray:
    """Load ``path`` as a mono float32 waveform ``(samples,)`` at ``sample_rate``.

    ``offset`` and ``duration`` (seconds) select a segment of a long recording.
    Channels are averaged; other rates are resampled. With ``normalize`` the peak is
    scaled to :data:`PEAK_TARGET` (useful for quiet corpora such as AN4).
    Raises :class:`AudioError` for missing, unreadable, empty or non-finite audio.
    """
    info = audio_info(path)
    start = int(round(offset * info.sample_rate))
    stop = info.frames if duration is None else start + int(round(duration * info.sample_rate))
    if start < 0 or (info.frames > 0 and start >= info.frames):
        raise AudioError(f"{path}: offset {offset:.3f}s is outside the file "
                         f"({info.duration:.3f}s long); fix the manifest's offset")
    try:
        data, rate = sf.read(str(path), start=start, stop=min(stop, info.frames),
                             dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: audio data is unreadable or truncated ({_reason(e)}); "
                         "re-export the file or remove it from the input") from e
    return _finish(data, rate, sample_rate, normalize, path)


def stream_audio(
    path: str | os.PathLike, chunk_seconds: float, sample_rate: int = SAMPLE_RATE,
    overlap_seconds: float = 0.0,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(start_seconds, waveform (samples,))`` chunks of a long file.

    Memory stays bounded by the chunk size however long the file is. Consecutive
    chunks overlap by ``overlap_seconds`` so callers can stitch results.
    """
    info = audio_info(path)
    block = int(chunk_seconds * info.sample_rate)
    overlap = int(overlap_seconds * info.sample_rate)
    if block <= overlap:
        raise ValueError("chunk_seconds must exceed overlap_seconds")
    try:
        blocks = sf.blocks(str(path), blocksize=block, overlap=overlap, dtype="float32",
                           always_2d=True)
        for i, data in enumerate(blocks):
            if len(data) == 0:
                break
            start = i * (block - overlap) / info.sample_rate
            yield start, _finish(data, info.sample_rate, sample_rate, False, path)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: audio data is unreadable or truncated ({_reason(e)})") from e


def write_audio(path: str | os.PathLike, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono waveform ``(samples,)`` as 16-bit PCM (format from the extension)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(wave, dtype=np.float32), sample_rate, subtype="PCM_16")


def resample(wave: np.ndarray, orig_rate: float, new_rate: float) -> np.ndarray:
    """Band-limited resampling of ``(samples,)`` float32 (soxr, high quality). Rates
    may be any positive numbers, not only integers: speed perturbation needs that."""
    if orig_rate == new_rate:
        return wave
    out = soxr.resample(np.asarray(wave, np.float32), orig_rate, new_rate, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def change_speed(wave: np.ndarray, factor: float, sample_rate: float = SAMPLE_RATE,
                 out_rate: float | None = None) -> np.ndarray:
    """Play ``wave (samples,)`` at ``sample_rate`` ``factor`` times faster, as audio at
    ``out_rate`` (default: ``sample_rate``). Tempo, pitch and formants move together,
    as in Kaldi's speed perturbation: the input is simply declared to have been
    recorded at ``sample_rate * factor`` and resampled."""
    out_rate = sample_rate if out_rate is None else out_rate
    return resample(wave, sample_rate * factor, out_rate)


def peak_gain(peak: float, target: float = PEAK_TARGET) -> float:
    """The gain that brings audio whose largest magnitude is ``peak`` to ``target``
    (of full scale); 1.0 below :data:`MIN_PEAK`, so silence and a noise floor are never
    amplified. Every gain normalisation in asrkit goes through this one rule."""
    return target / peak if peak >= MIN_PEAK else 1.0


def normalize_gain(wave: np.ndarray) -> np.ndarray:
    """Scale the peak of ``(samples,)`` to :data:`PEAK_TARGET`; silence is left as is."""
    gain = peak_gain(float(np.max(np.abs(wave))) if wave.size else 0.0)
    return wave if gain == 1.0 else wave * gain


def _finish(data: np.ndarray, rate: int, sample_rate: int, normalize: bool, path) -> np.ndarray:
    """(samples, channels) at ``rate`` → checked mono (samples,) at ``sample_rate``."""
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio samples; remove it from the input")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples; "
                         "re-export the file or remove it from the input")
    wave = resample(np.ascontiguousarray(wave, dtype=np.float32), rate, sample_rate)
    return normalize_gain(wave) if normalize else wave


def _wav_missing_bytes(path: Path) -> int:
    """Bytes the RIFF ``data`` chunk declares but the file lacks (0 if complete).

    libsndfile silently shortens a cut-off WAV to the samples present, so a
    half-copied file would otherwise pass as a shorter recording.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0  # RIFX / RF64 / other containers: trust libsndfile
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"data":
                if length in (0, 0xFFFFFFFF):  # length unknown (written to a pipe)
                    return 0
                return max(length - (size - pos - 8), 0)
            pos += 8 + length + (length & 1)  # chunks are padded to even sizes
    return 0


def _check_exists(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path (relative manifest paths "
                         "resolve against the manifest's folder)")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    return path


def _reason(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__
