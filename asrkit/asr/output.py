"""Writing transcripts: plain text, JSON Lines, SRT and WebVTT subtitles."""

from __future__ import annotations

import json
from typing import Literal, Sequence

from ..decoding.base import WordTiming
from .transcription import Transcript

Format = Literal["txt", "jsonl", "srt", "vtt"]
FORMATS = ("txt", "jsonl", "srt", "vtt")
CUE_MAX_WORDS = 8  # words per subtitle cue
CUE_MAX_GAP = 1.0  # seconds of silence that start a new cue


def transcript_record(tr: Transcript) -> dict:
    """The JSON Lines record of one transcript."""
    h = tr.hypothesis
    return {"id": tr.utt.id, "audio": tr.utt.audio, "text": h.text,
            "duration": round(tr.duration, 3),
            "words": [{"word": w.word, "start": round(w.start + tr.utt.offset, 3),
                       "end": round(w.end + tr.utt.offset, 3), "confidence": w.confidence}
                      for w in h.words]}


def format_transcript(tr: Transcript, fmt: Format) -> str:
    """One transcript in ``fmt``; ``txt`` is ``id<TAB>text``."""
    if fmt == "txt":
        return f"{tr.utt.id}\t{tr.text}\n"
    if fmt == "jsonl":
        return json.dumps(transcript_record(tr), ensure_ascii=False) + "\n"
    cues = [(a + tr.utt.offset, b + tr.utt.offset, text)
            for a, b, text in subtitle_cues(tr.hypothesis.words)]
    if fmt == "srt":
        return "".join(f"{i}\n{_ts(a, ',')} --> {_ts(b, ',')}\n{text}\n\n"
                       for i, (a, b, text) in enumerate(cues, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "".join(f"{_ts(a, '.')} --> {_ts(b, '.')}\n{text}\n\n"
                                      for a, b, text in cues)
    raise ValueError(f"unknown format {fmt!r}")


def subtitle_cues(words: Sequence[WordTiming]) -> list[tuple[float, float, str]]:
    """Group words into ``(start, end, text)`` cues of at most :data:`CUE_MAX_WORDS`,
    breaking at pauses longer than :data:`CUE_MAX_GAP`."""
    cues, current = [], []
    for w in words:
        if current and (len(current) >= CUE_MAX_WORDS or w.start - current[-1].end > CUE_MAX_GAP):
            cues.append(current)
            current = []
        current.append(w)
    if current:
        cues.append(current)
    return [(c[0].start, c[-1].end, " ".join(w.word for w in c)) for c in cues]


def _ts(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"
