"""Writing alignments: JSON Lines, SRT and WebVTT subtitles, Praat TextGrids.

Times are seconds from the start of the audio file (an utterance's ``offset`` added),
as in transcripts. A TextGrid (Praat's long text format) has two interval tiers,
``words`` and ``chars``, that cover the whole recording: stretches without a word or
character are intervals with empty text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Sequence

from ..errors import AsrkitError, ConfigError
from ..io import atomic_write_text
from .alignment import Alignment
from .output import LineFile, _inside, _open_lines, format_subtitles

AlignFormat = Literal["jsonl", "srt", "vtt", "textgrid"]
ALIGN_FORMATS = ("jsonl", "srt", "vtt", "textgrid")
SUFFIXES = {"jsonl": "jsonl", "srt": "srt", "vtt": "vtt", "textgrid": "TextGrid"}

# (start, end, text) in seconds
Interval = tuple[float, float, str]


def alignment_record(al: Alignment) -> dict:
    """The JSON Lines record of one alignment; each word lists its characters."""
    off = al.utt.offset

    def t(x: float) -> float:
        return round(x + off, 3)

    return {"id": al.utt.id, "audio": al.utt.audio, "text": al.text,
            "duration": al.duration, "score": round(al.score, 3), "windows": al.windows,
            "words": [{"word": w.word, "start": t(w.start), "end": t(w.end), "score": w.score,
                       "flag": w.flag,
                       "chars": [{"char": c.char, "start": t(c.start), "end": t(c.end),
                                  "score": c.score} for c in w.chars]}
                      for w in al.words]}


def format_alignment(al: Alignment, fmt: AlignFormat) -> str:
    """One alignment in ``fmt``."""
    if fmt == "jsonl":
        return json.dumps(alignment_record(al), ensure_ascii=False) + "\n"
    if fmt in ("srt", "vtt"):
        return format_subtitles([w.timing for w in al.words], fmt, al.utt.offset)
    if fmt == "textgrid":
        off = al.utt.offset
        words = [(w.start + off, w.end + off, w.word) for w in al.words]
        chars = [(c.start + off, c.end + off, c.char) for w in al.words for c in w.chars]
        return textgrid({"words": words, "chars": chars}, off, off + al.duration)
    raise ValueError(f"unknown format {fmt!r}")


def textgrid(tiers: dict[str, Sequence[Interval]], xmin: float, xmax: float) -> str:
    """A Praat TextGrid (long text format) of interval tiers; ``tiers`` maps each name
    to sorted, non-overlapping intervals, and the gaps become empty intervals."""
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "",
             f"xmin = {_num(xmin)}", f"xmax = {_num(xmax)}", "tiers? <exists>",
             f"size = {len(tiers)}", "item []:"]
    for n, (name, spans) in enumerate(tiers.items(), 1):
        intervals = fill_gaps(spans, xmin, xmax)
        lines += [f"    item [{n}]:", '        class = "IntervalTier"',
                  f"        name = {_quote(name)}", f"        xmin = {_num(xmin)}",
                  f"        xmax = {_num(xmax)}", f"        intervals: size = {len(intervals)}"]
        for i, (a, b, text) in enumerate(intervals, 1):
            lines += [f"        intervals [{i}]:", f"            xmin = {_num(a)}",
                      f"            xmax = {_num(b)}", f"            text = {_quote(text)}"]
    return "\n".join(lines) + "\n"


def fill_gaps(spans: Sequence[Interval], xmin: float, xmax: float) -> list[Interval]:
    """``spans`` with empty intervals in the gaps, covering ``[xmin, xmax]`` exactly;
    times are rounded to the millisecond first so neighbours meet exactly."""
    out, at = [], round(xmin, 3)
    for a, b, text in spans:
        a, b = max(round(a, 3), at), min(round(b, 3), round(xmax, 3))
        if a > at:
            out.append((at, a, ""))
        if b > a:
            out.append((a, b, text))
            at = b
    if at < round(xmax, 3) or not out:
        out.append((at, round(xmax, 3), ""))
    return out


def _num(x: float) -> str:
    return repr(round(float(x), 3))


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class AlignmentWriter:
    """Where alignments go: ``output`` (one file; JSON Lines, a line flushed per
    recording so a killed run keeps every finished one, or any format for a single
    recording), ``output_dir`` (``<id>.<suffix>`` per recording, written atomically),
    or neither (:meth:`write` only formats, for the caller to print)."""

    def __init__(self, fmt: AlignFormat, output: Path | None = None,
                 output_dir: Path | None = None, single: bool = False):
        if fmt not in ALIGN_FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(ALIGN_FORMATS)}")
        if output and output_dir:
            raise ConfigError("give --output or --output-dir, not both")
        if output and fmt != "jsonl" and not single:
            raise ConfigError(f"{fmt} is one file per recording: use --output-dir")
        self.fmt, self.output, self.output_dir, self.single = fmt, output, output_dir, single
        self.written = 0
        self._sink: LineFile | None = None

    def path_for(self, al_id: str) -> Path | None:
        """Where the alignment of ``al_id`` is written (None: one shared file, stdout)."""
        if self.output_dir is not None:
            return self.output_dir / f"{al_id}.{SUFFIXES[self.fmt]}"
        return self.output if self.fmt != "jsonl" else None

    def refusal(self, utt) -> str | None:
        """Why ``utt`` cannot be written (its id would leave ``output_dir``), or None."""
        if self.output_dir is None or _inside(self.output_dir, f"{utt.id}.{SUFFIXES[self.fmt]}"):
            return None
        return (f"id would write outside --output-dir {self.output_dir}; give it an id "
                "without '..' or a leading '/'")

    def write(self, al: Alignment) -> str:
        """Format ``al``, write it where it goes, and return the text."""
        text = format_alignment(al, self.fmt)
        path = self.path_for(al.utt.id)
        if path is not None:
            atomic_write_text(path, text)
        elif self._sink is not None:
            try:
                self._sink.write(text)
                self._sink.flush()
            except OSError as e:
                raise AsrkitError(f"{self.output}: write failed ({e.strerror}); the "
                                  f"{self.written} alignment(s) before it are kept. Free "
                                  "disk space and run the command again") from None
        self.written += 1
        return text

    def __enter__(self) -> "AlignmentWriter":
        if self.output is not None and self.fmt == "jsonl":
            self._sink = _open_lines(self.output, append=False)
        return self

    def __exit__(self, *exc) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()
