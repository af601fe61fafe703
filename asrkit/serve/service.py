"""An indexed archive opened for listening: search it, read spans of its recordings,
draw them, and (with a recognition model) transcribe them.

This is the synchronous back end of ``asrkit serve``. Every method takes plain values
and returns frozen dataclasses or bytes. Recordings are addressed by their name in the
index (a manifest id or a path inside the archive folder), never by a path the caller
makes up: only files the index records can be read.

Not thread-safe: SQLite connections belong to the thread that opened them, so the
web app creates and uses one service on a single worker thread.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import SAMPLE_RATE, audio_info, load_audio
from ..errors import AsrkitError, AudioError, ConfigError
from ..search.index import SearchIndex
from ..manifest import Utterance
from ..search.query import Hit, Query, search

MAX_SPAN_SECONDS = 120.0  # longest stretch one request may read, draw or transcribe
CONTEXT_SECONDS = 1.0  # audio around a hit that its transcript covers, each side
PICTURE_SIZE = (4.8, 1.8)  # inches at PICTURE_DPI
PICTURE_DPI = 100


class NotInIndex(AsrkitError):
    """A recording name the index does not hold (answered with 404)."""


class FileChanged(AsrkitError):
    """An indexed file now resolves somewhere else, e.g. it became a symlink (403)."""


@dataclass(frozen=True)
class Recording:
    name: str  # name in the index
    audio: str  # path as the index records it
    real: str  # that path with symlinks resolved when the service opened
    duration: float  # seconds of the whole file


@dataclass(frozen=True)
class SpanTranscript:
    text: str
    start: float  # seconds in the file of the stretch transcribed (hit ± context)
    end: float


class ArchiveService:
    """Search, listen to and transcribe one indexed archive."""

    def __init__(self, index_dir: str | os.PathLike, model: str | os.PathLike | None = None):
        self.index = SearchIndex(index_dir)
        self.name = Path(index_dir).resolve().name
        self.model_name = None if model is None else str(model)
        self.model = None
        self.live = None  # live transcription sessions, with a forward-only model
        try:
            if model is not None:
                from ..asr.checkpoint import load_model
                self.model = load_model(model)
                if not self.model.config.bidirectional and not self.model.config.utterance_mean:
                    from .live import LiveSessions
                    self.live = LiveSessions(self.model, self.model_name)
            self._recordings: dict[str, Recording] = {}
            self._refresh()
        except BaseException:
            self.index.close()
            raise

    def close(self) -> None:
        self.index.close()

    # -- the archive -------------------------------------------------------------------

    def recordings(self) -> list[Recording]:
        return sorted(self._recordings.values(), key=lambda r: r.name)

    def segment_count(self) -> int:
        return len(self.index)

    def recording(self, name: str) -> Recording:
        """The indexed recording called ``name``. Raises :class:`NotInIndex` for any
        other name (paths, ``..``) and :class:`FileChanged` if its file now resolves
        elsewhere than when the service opened (a swapped-in symlink)."""
        if name not in self._recordings:
            self._refresh()  # `asrkit index add` may have run since
        rec = self._recordings.get(name)
        if rec is None:
            raise NotInIndex(f"{name!r} is not a recording in this index")
        if os.path.realpath(rec.audio) != rec.real:
            raise FileChanged(f"{name!r}: its file was replaced since the index was opened; "
                              "restart the server to serve it")
        return rec

    def read_span(self, name: str, start: float, end: float) -> np.ndarray:
        """Seconds ``start``-``end`` of an indexed recording → ``(samples,)`` at 16 kHz."""
        rec = self.recording(name)
        start, end = _check_span(start, end, rec)
        return load_audio(rec.audio, offset=start, duration=end - start)

    # -- search --------------------------------------------------------------------------

    def search_wave(self, name: str, wave: np.ndarray, top: int) -> list[Hit]:
        """Best-first hits for a spoken example ``wave (samples,)`` at 16 kHz."""
        return search(self.index, [Query(name, wave)], top=top)[0]

    def search_span(self, name: str, start: float, end: float, top: int) -> list[Hit]:
        wave = self.read_span(name, start, end)
        return self.search_wave(f"{name}:{start:g}-{end:g}", wave, top)

    # -- recognition ---------------------------------------------------------------------

    def transcribe_span(self, name: str, start: float, end: float,
                        context: float = CONTEXT_SECONDS) -> SpanTranscript:
        """Transcript of ``start``-``end`` widened by ``context`` seconds each side
        (clipped to the file)."""
        rec = self.recording(name)
        start, end = _check_span(start, end, rec)
        lo, hi = max(0.0, start - context), min(rec.duration, end + context)
        utt = Utterance(rec.name, rec.audio, offset=lo, duration=hi - lo)
        return SpanTranscript(self._transcribe(utt), round(lo, 3), round(hi, 3))

    def transcribe_file(self, path: str | os.PathLike, name: str) -> str:
        """Transcript of a whole audio file (e.g. an upload)."""
        return self._transcribe(Utterance(name, str(path)))

    def _transcribe(self, utt: Utterance) -> str:
        if self.model is None:
            raise ConfigError("no recognition model is loaded; start the server with --model")
        from ..asr.transcription import transcribe
        skipped: list[str] = []
        results = list(transcribe(self.model, [utt], on_skip=lambda u, why: skipped.append(why)))
        if skipped:
            raise AudioError(skipped[0])
        return results[0].text

    def _refresh(self) -> None:
        for src in self.index.sources():
            if src.status != "indexed" or src.name in self._recordings:
                continue
            try:
                duration = audio_info(src.audio).duration
            except AudioError:
                continue  # moved or deleted since indexing: nothing to serve
            self._recordings[src.name] = Recording(src.name, src.audio,
                                                   os.path.realpath(src.audio), duration)


def wav_bytes(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """``wave (samples,)`` as a 16-bit PCM WAV file in memory."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def picture_png(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A PNG of ``wave (samples,)``: its envelope above its log-mel spectrogram (the
    features the search embedder sees)."""
    from matplotlib.figure import Figure  # no pyplot: no global state across requests

    from ..features import compute_features
    feats = compute_features(wave).numpy()  # (frames, mels)
    seconds = len(wave) / sample_rate
    fig = Figure(figsize=PICTURE_SIZE, dpi=PICTURE_DPI)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 3]})
    fig.subplots_adjust(left=0.04, right=0.97, top=0.99, bottom=0.13, hspace=0.03)
    times, low, high = _envelope(wave, sample_rate, columns=600)
    top.fill_between(times, low, high, color="#2b6cb0", linewidth=0)
    top.set_ylim(-1.05 * max(1e-3, np.abs(wave).max()), 1.05 * max(1e-3, np.abs(wave).max()))
    bottom.imshow(feats.T, origin="lower", aspect="auto", cmap="magma",
                  extent=(0.0, seconds, 0, feats.shape[1]))
    top.set_yticks([])
    top.tick_params(bottom=False)
    bottom.set_yticks([])
    top.set_xlim(0.0, seconds)
    bottom.tick_params(axis="x", labelsize=7, pad=1, length=2)
    bottom.set_xlabel("s", fontsize=7, labelpad=0, loc="right")
    for ax in (top, bottom):
        for spine in ax.spines.values():
            spine.set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _envelope(wave: np.ndarray, sample_rate: int, columns: int):
    """Min/max of ``wave`` in ``columns`` equal slices → times, low, high ``(columns,)``:
    a long span draws as fast as a short one."""
    columns = max(1, min(columns, len(wave)))
    edges = np.linspace(0, len(wave), columns + 1).astype(int)
    low = np.minimum.reduceat(wave, edges[:-1])
    high = np.maximum.reduceat(wave, edges[:-1])
    return edges[:-1] / sample_rate, low, high


def _check_span(start: float, end: float, rec: Recording) -> tuple[float, float]:
    if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end <= start:
        raise ConfigError(f"span {start:g}-{end:g} s is not valid; START must be at least 0 "
                          "and END greater than START")
    if start >= rec.duration:
        raise ConfigError(f"{rec.name}: span starts at {start:g} s, after the end of the "
                          f"recording ({rec.duration:.2f} s)")
    end = min(end, rec.duration)
    if end - start > MAX_SPAN_SECONDS:
        raise ConfigError(f"span {start:g}-{end:g} s is longer than {MAX_SPAN_SECONDS:g} s; "
                          "ask for a shorter stretch")
    return start, end
