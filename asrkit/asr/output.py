"""Writing transcripts: plain text, JSON Lines, SRT and WebVTT subtitles, to stdout, one
file, or one file per input, resumable after a kill or a full disk."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Literal, Sequence

from ..decoding.base import WordTiming
from ..errors import AsrkitError, ConfigError
from ..io import atomic_write_text
from .transcription import Transcript

Format = Literal["txt", "jsonl", "srt", "vtt"]
FORMATS = ("txt", "jsonl", "srt", "vtt")
CUE_MAX_WORDS = 8  # words per subtitle cue
CUE_MAX_GAP = 1.0  # seconds of silence that start a new cue
_TAIL_CHUNK = 1 << 16  # bytes read at a time, backwards, to find the last newline


def kept_words(tr: Transcript, min_confidence: float | None = None) -> list[WordTiming]:
    """The words of ``tr`` whose confidence is at least ``min_confidence`` (None: all)."""
    if min_confidence is None:
        return list(tr.hypothesis.words)
    return [w for w in tr.hypothesis.words if w.confidence >= min_confidence]


def transcript_record(tr: Transcript, min_confidence: float | None = None) -> dict:
    """The JSON Lines record of one transcript. With ``min_confidence``, ``text`` holds
    only the words that reach it; the others stay in ``words``, marked
    ``"dropped": true``."""
    h = tr.hypothesis
    words = []
    for w in h.words:
        word = {"word": w.word, "start": round(w.start + tr.utt.offset, 3),
                "end": round(w.end + tr.utt.offset, 3), "confidence": w.confidence}
        if min_confidence is not None and w.confidence < min_confidence:
            word["dropped"] = True
        words.append(word)
    text = h.text if min_confidence is None else \
        " ".join(w.word for w in kept_words(tr, min_confidence))
    return {"id": tr.utt.id, "audio": tr.utt.audio, "text": text,
            "duration": round(tr.duration, 3), "words": words}


def format_transcript(tr: Transcript, fmt: Format, min_confidence: float | None = None) -> str:
    """One transcript in ``fmt``; ``txt`` is ``id<TAB>text``. Words below
    ``min_confidence`` are left out of the text (see :func:`transcript_record`)."""
    if fmt == "txt":
        return f"{tr.utt.id}\t{' '.join(w.word for w in kept_words(tr, min_confidence))}\n"
    if fmt == "jsonl":
        return json.dumps(transcript_record(tr, min_confidence), ensure_ascii=False) + "\n"
    if fmt in ("srt", "vtt"):
        return format_subtitles(kept_words(tr, min_confidence), fmt, tr.utt.offset)
    raise ValueError(f"unknown format {fmt!r}")


def format_subtitles(words: Sequence[WordTiming], fmt: Literal["srt", "vtt"],
                     offset: float = 0.0) -> str:
    """SRT or WebVTT cues of ``words`` (see :func:`subtitle_cues`), shifted by
    ``offset`` seconds (where the utterance starts in its file)."""
    cues = [(a + offset, b + offset, text) for a, b, text in subtitle_cues(words)]
    if fmt == "srt":
        return "".join(f"{i}\n{_ts(a, ',')} --> {_ts(b, ',')}\n{text}\n\n"
                       for i, (a, b, text) in enumerate(cues, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "".join(f"{_ts(a, '.')} --> {_ts(b, '.')}\n{text}\n\n"
                                      for a, b, text in cues)
    raise ValueError(f"unknown subtitle format {fmt!r}")


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


class TranscriptWriter:
    """Where transcripts go, and what an earlier, interrupted run already wrote there.

    ``output``: one file for every transcript (txt or jsonl), one line each, flushed so a
    killed run keeps every finished line. ``output_dir``: one ``<id>.<fmt>`` file per
    input, written atomically. Neither: :meth:`write` only formats, for the caller to
    print. With ``resume``, :attr:`done` holds the ids already written and new lines are
    appended — after cutting a last line that a full disk or a kill left unfinished, so
    the file stays one valid record per line.

    Making one checks the settings; ``output`` is opened (emptied unless resuming) only
    on entering ``with``, so a model that fails to load costs no earlier output.
    ``min_confidence`` leaves less confident words out of the text (see
    :func:`format_transcript`).
    """

    def __init__(self, fmt: Format, output: Path | None = None,
                 output_dir: Path | None = None, resume: bool = False,
                 min_confidence: float | None = None):
        if fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}")
        if output and output_dir:
            raise ConfigError("give --output or --output-dir, not both")
        if output and fmt in ("srt", "vtt"):
            raise ConfigError("srt/vtt are per recording: use --output-dir")
        self.fmt, self.output, self.output_dir = fmt, output, output_dir
        self.done: set[str] = finished_ids(fmt, output, output_dir) if resume else set()
        self.resume, self.written = resume, 0
        self.min_confidence = min_confidence
        self._sink: LineFile | None = None

    def refusal(self, utt) -> str | None:
        """Why ``utt`` cannot be written (its id would leave ``output_dir``), or None."""
        if self.output_dir is None or _inside(self.output_dir, f"{utt.id}.{self.fmt}"):
            return None
        return (f"id would write outside --output-dir {self.output_dir}; give it an id "
                "without '..' or a leading '/'")

    def write(self, tr: Transcript) -> str:
        """Format ``tr``, write it where it goes, and return the text."""
        text = format_transcript(tr, self.fmt, self.min_confidence)
        if self.output_dir is not None:
            atomic_write_text(self.output_dir / f"{tr.utt.id}.{self.fmt}", text)
        elif self._sink is not None:
            try:
                self._sink.write(text)
                self._sink.flush()
            except OSError as e:
                raise AsrkitError(
                    f"{self.output}: write failed ({e.strerror}); the {self.written} "
                    "transcript(s) before it are kept. Free disk space, then continue "
                    "with --skip-done") from None
        self.written += 1
        return text

    def close(self) -> None:
        sink, self._sink = self._sink, None
        if sink is None:
            return
        try:
            sink.close()
        except OSError as e:
            raise AsrkitError(f"{self.output}: write failed ({e.strerror}) on closing; "
                              "free disk space, then continue with --skip-done") from None

    def __enter__(self) -> "TranscriptWriter":
        if self.output is not None:
            self._sink = _open_lines(self.output, append=self.resume)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # already failing: the first error is the one to report
            self.close()
        except AsrkitError:
            pass


def finished_ids(fmt: Format, output: Path | None = None,
                 output_dir: Path | None = None) -> set[str]:
    """Ids an earlier run wrote to ``output`` (complete lines only) or ``output_dir``."""
    if output_dir is not None:
        if not output_dir.is_dir():
            return set()
        return {p.relative_to(output_dir).with_suffix("").as_posix()
                for p in output_dir.rglob(f"*.{fmt}")}
    if output is None or not output.exists():
        return set()
    text = output.read_text(encoding="utf-8", errors="replace")
    ids = set()
    # A last line without its newline was cut short: its input is transcribed again.
    for line in text.split("\n")[:-1]:
        if not line.strip():
            continue
        try:
            ids.add(json.loads(line)["id"] if fmt == "jsonl" else line.split("\t", 1)[0])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # not a record: that input is transcribed again
    return ids


def cut_partial_line(path: Path) -> int:
    """Truncate ``path`` after its last newline; return the bytes removed."""
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK)
            f.seek(start)
            chunk = f.read(pos - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            pos = start
        else:
            keep = 0
        if keep < end:
            f.truncate(keep)
        return end - keep


class LineFile:
    """An output file of whole lines (records), written unbuffered: a line that cannot
    reach the disk in full (a full disk) is cut off again before the error is raised,
    so the file never ends in half a record."""

    def __init__(self, path: Path, append: bool):
        self.path = path
        self._file = open(path, "ab" if append else "wb", buffering=0)
        self._kept = self._file.seek(0, os.SEEK_END)  # bytes of whole lines

    def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        try:
            while data:
                data = data[self._file.write(data):]  # a short write is continued
        except OSError:
            with contextlib.suppress(OSError):  # cutting a file needs no space
                self._file.truncate(self._kept)
            raise
        self._kept += len(data.obj)

    def flush(self) -> None:
        """Nothing is buffered: each :meth:`write` is on its way to the disk."""

    def close(self) -> None:
        self._file.close()


def _open_lines(output: Path, append: bool) -> LineFile:
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if append and output.is_file():
            cut_partial_line(output)
        return LineFile(output, append)
    except OSError as e:
        raise AsrkitError(f"{output}: cannot write here ({e.strerror}); choose a writable "
                          "output file") from None


def _inside(folder: Path, name: str) -> bool:
    """Whether ``folder / name`` stays inside ``folder``: ids come from manifests, and
    one like ``../../x`` must not write elsewhere."""
    base = folder.resolve()
    return (base / name).resolve().is_relative_to(base)
