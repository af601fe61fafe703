"""Live transcription for the search page: the page's recorder sends raw audio while
the query is being spoken and shows the words as they come.

A session is one :class:`~asrkit.asr.streaming.StreamingTranscriber`; each piece of
16-bit mono PCM at 16 kHz posted to it answers with the words that became final and the
current partial guess. Sessions left idle are dropped, and at most
:data:`MAX_SESSIONS` run at once (the oldest idle one goes first).
"""

from __future__ import annotations

import secrets
import time

import numpy as np

from ..asr.streaming import StreamingTranscriber, StreamUpdate, check_streamable
from ..errors import AsrkitError, ConfigError

MAX_SESSIONS = 8
IDLE_SECONDS = 120.0  # a session not fed for this long is dropped


class UnknownSession(AsrkitError):
    """A session id the server does not hold (answered with 404)."""


class LiveSessions:
    """The live sessions of one model (all calls on the server's worker thread)."""

    def __init__(self, model, model_name: str):
        check_streamable(model, model_name)
        self.model = model
        self.sessions: dict[str, tuple[StreamingTranscriber, float]] = {}

    def start(self) -> str:
        self._expire()
        if len(self.sessions) >= MAX_SESSIONS:
            oldest = min(self.sessions, key=lambda k: self.sessions[k][1])
            del self.sessions[oldest]
        key = secrets.token_urlsafe(12)
        self.sessions[key] = (StreamingTranscriber(self.model), time.monotonic())
        return key

    def feed(self, key: str, pcm: bytes) -> dict:
        """Raw 16-bit little-endian mono PCM at 16 kHz → the update as JSON."""
        live = self._get(key)
        if len(pcm) % 2:
            raise ConfigError(f"live session: {len(pcm)} bytes is not whole 16-bit samples; "
                              "send 16-bit mono PCM")
        samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        self.sessions[key] = (live, time.monotonic())
        return update_json(live.feed(samples))

    def finish(self, key: str) -> dict:
        live = self._get(key)
        del self.sessions[key]
        out = update_json(live.finish())
        out["text"] = live.hypothesis.text
        return out

    def _get(self, key: str) -> StreamingTranscriber:
        if key not in self.sessions:
            raise UnknownSession(f"live session {key!r}: no such session (finished, or idle "
                                 f"over {IDLE_SECONDS:g} s); start a new one")
        return self.sessions[key][0]

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, t) in self.sessions.items() if now - t > IDLE_SECONDS]:
            del self.sessions[key]


def update_json(update: StreamUpdate) -> dict:
    word = lambda w: {"word": w.word, "start": w.start, "end": w.end,  # noqa: E731
                      "confidence": w.confidence}
    return {"final": [word(w) for w in update.final], "partial": update.partial_text,
            "seconds": round(update.seconds, 3), "done": update.done}
