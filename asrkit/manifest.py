"""Manifests: JSON Lines, one utterance a line, plus importers for common layouts.

A line looks like::

    {"id": "an4-001", "audio": "wav/001.wav", "text": "YES", "offset": 0.0,
     "duration": 1.2, "speaker": "fash"}

Only ``id`` and ``audio`` are required. Relative ``audio`` paths resolve against the
manifest's own folder, so a corpus folder can be moved as a whole.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

from .audio import AUDIO_EXTENSIONS
from .errors import ManifestError, where
from .io import atomic_open, decode_line, read_text_lines

_FIELDS = ("id", "audio", "text", "offset", "duration", "speaker")


@dataclass(frozen=True)
class Utterance:
    """One (segment of a) recording with its transcript."""

    id: str
    audio: str  # absolute path once read through read_manifest
    text: str | None = None
    offset: float = 0.0  # seconds into the file
    duration: float | None = None  # seconds; None = to the end of the file
    speaker: str | None = None


def read_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None,
                  ) -> list[Utterance]:
    """Read all utterances of a manifest; see :func:`iter_manifest`."""
    return list(iter_manifest(path, root=root))


def iter_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None,
                  ) -> Iterator[Utterance]:
    """Stream utterances from a JSON Lines manifest.

    Raises :class:`ManifestError` naming the file and line of the first malformed line
    or duplicate id. With ``root``, audio paths that resolve outside it are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    base = path.resolve().parent
    root_dir = Path(root).resolve() if root is not None else None
    seen: set[str] = set()
    with open(path, "rb") as f:  # decoded line by line so a bad byte names its line
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            utt = _parse_line(_decode(raw, path, lineno), path, lineno, base)
            if utt.id in seen:
                raise ManifestError(f"{where(path, lineno)}: duplicate id {utt.id!r}; "
                                    "ids must be unique within a manifest")
            if root_dir is not None:
                check_root(utt, root_dir, where(path, lineno))
            seen.add(utt.id)
            yield utt


def check_root(utt: Utterance, root: Path, location: str) -> None:
    """Raise :class:`ManifestError` if the audio of ``utt``, with symlinks and ``..``
    resolved, lies outside the resolved folder ``root``."""
    if not Path(utt.audio).resolve().is_relative_to(root):
        raise ManifestError(f"{location}: audio path {utt.audio!r} is outside the allowed "
                            f"root {root}; move the file below it or remove the line")


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance],
                   relative: bool = True) -> int:
    """Write utterances atomically; return how many. Audio below the manifest's folder
    is stored relative to it when ``relative``; other paths are stored absolute."""
    path = Path(path)
    base = path.resolve().parent
    utterances = check_utterances(utterances, path)
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as f:
        for utt in utterances:
            f.write(json.dumps(_to_record(utt, base if relative else None),
                               ensure_ascii=False) + "\n")
            n += 1
    return n


def import_kaldi(data_dir: str | os.PathLike) -> list[Utterance]:
    """Read a Kaldi data directory: ``wav.scp``, ``text``, optional ``segments`` and
    ``utt2spk``. Piped ``wav.scp`` entries (``cmd |``) are refused with a clear error."""
    d = Path(data_dir)
    wavs = _read_table(d / "wav.scp", required=True)
    texts = _read_table(d / "text")
    spk = _read_table(d / "utt2spk")
    for rec, value in wavs.items():
        if value.rstrip().endswith("|"):
            raise ManifestError(f"{d / 'wav.scp'}: entry {rec!r} is a command pipe; "
                                "convert the audio to files first (e.g. with sox)")
        wavs[rec] = str((d / value).resolve()) if not os.path.isabs(value) else value
    segments = d / "segments"
    utts, seen = [], set()
    if segments.exists():
        for lineno, fields in _table_lines(segments):
            if len(fields) != 4:
                raise ManifestError(f"{where(segments, lineno)}: expected "
                                    "'<utt> <recording> <start> <end>'")
            uid, rec, start, end = fields
            if rec not in wavs:
                raise ManifestError(f"{where(segments, lineno)}: recording {rec!r} "
                                    "is not in wav.scp")
            t0, t1 = _float(start, segments, lineno), _float(end, segments, lineno)
            open_end = t1 == -1  # Kaldi's mark for "to the end of the recording"
            if not (0 <= t0 and (open_end or t0 <= t1)):
                raise ManifestError(f"{where(segments, lineno)}: segment {uid!r} runs from "
                                    f"{start} to {end} s; expected 0 <= start <= end")
            if uid in seen:
                raise ManifestError(f"{where(segments, lineno)}: duplicate utterance id "
                                    f"{uid!r}")
            seen.add(uid)
            utts.append(Utterance(uid, wavs[rec], texts.get(uid), t0,
                                  None if open_end else t1 - t0, spk.get(uid)))
    else:
        utts = [Utterance(uid, wav, texts.get(uid), speaker=spk.get(uid))
                for uid, wav in wavs.items()]
    return sorted(utts, key=lambda u: u.id)


def import_folder(folder: str | os.PathLike, require_text: bool = True) -> list[Utterance]:
    """Every audio file below ``folder`` (recursive) with the ``.txt`` transcript beside
    it (``a/b.wav`` + ``a/b.txt``). Ids are the paths relative to ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder}: not a folder")
    files = find_audio_files(folder)
    stems = Counter(f.relative_to(folder).with_suffix("").as_posix() for f in files)
    utts = []
    for audio in files:
        txt = audio.with_suffix(".txt")
        text = read_transcript(txt) if txt.exists() else None
        if text is None and require_text:
            raise ManifestError(f"{audio}: no transcript {txt.name} beside it; add one "
                                "or remove the audio file")
        rel = audio.relative_to(folder)
        uid = rel.with_suffix("").as_posix()
        # a.wav and a.flac would share the id "a": such files keep their extension
        utts.append(Utterance(uid if stems[uid] == 1 else rel.as_posix(),
                              str(audio.resolve()), text))
    return utts


def read_transcript(path: str | os.PathLike) -> str:
    """A transcript file's words, on one line with single spaces."""
    return " ".join(" ".join(line.split()) for _, line in read_lines(path)).strip()


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """:func:`~asrkit.io.read_text_lines` raising :class:`ManifestError`."""
    return read_text_lines(path, ManifestError)


def check_utterances(utterances: Iterable[Utterance], dest) -> list[Utterance]:
    """The utterances as a list, if :func:`iter_manifest` would read each back: unique
    non-empty string ids, non-empty audio paths, string or no text, finite non-negative
    times. Else :class:`ManifestError` naming the utterance, so no importer writes a
    manifest that reading (or `asrkit data validate`) then refuses."""
    utts, seen = list(utterances), set()
    for utt in utts:
        problem = None
        if not isinstance(utt.id, str) or not utt.id:
            problem = "the id must be a non-empty string"
        elif utt.id in seen:
            problem = "duplicate id"
        elif not isinstance(utt.audio, str) or not utt.audio:
            problem = "no audio path"
        elif utt.text is not None and not isinstance(utt.text, str):
            problem = "the text must be a string"
        elif not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                   and math.isfinite(v) and v >= 0)
                     for v in (utt.offset, utt.duration)):
            problem = "offset and duration must be non-negative numbers of seconds"
        if problem:
            raise ManifestError(f"{dest}: not written: utterance {utt.id!r}: {problem}")
        seen.add(utt.id)
    return utts


def find_audio_files(folder: str | os.PathLike) -> list[Path]:
    """Audio files below ``folder``, sorted; symlink loops are not followed twice."""
    found, seen_dirs = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames.sort()
        found += [Path(dirpath) / n for n in sorted(filenames)
                  if n.lower().endswith(AUDIO_EXTENSIONS) and not n.startswith(".")]
    return found


def with_audio_root(utt: Utterance, base: Path) -> Utterance:
    """Resolve a relative audio path against ``base``."""
    return replace(utt, audio=str(base / utt.audio)) if not os.path.isabs(utt.audio) else utt


def _parse_line(line: str, path: Path, lineno: int, base: Path) -> Utterance:
    loc = where(path, lineno)
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{loc}: not valid JSON ({e.msg}); each line must be one "
                            "JSON object") from None
    if not isinstance(rec, dict):
        raise ManifestError(f"{loc}: expected a JSON object, got {type(rec).__name__}")
    for key in ("id", "audio"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            raise ManifestError(f"{loc}: missing or empty string field {key!r}")
    text = rec.get("text")
    if text is not None and not isinstance(text, str):
        raise ManifestError(f"{loc}: 'text' must be a string")
    offset = rec.get("offset", 0.0) or 0.0
    duration = rec.get("duration")
    for key, value in (("offset", offset), ("duration", duration)):
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not math.isfinite(value) or value < 0):
            raise ManifestError(f"{loc}: {key!r} must be a non-negative number of seconds")
    speaker = rec.get("speaker")
    utt = Utterance(rec["id"], rec["audio"], text, float(offset),
                    None if duration is None else float(duration),
                    None if speaker is None else str(speaker))
    return with_audio_root(utt, base)


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    return decode_line(raw, path, lineno, ManifestError, "manifest")


def _to_record(utt: Utterance, base: Path | None) -> dict:
    rec = {k: v for k, v in asdict(utt).items() if v is not None}
    if not rec.get("offset"):
        rec.pop("offset", None)
    audio = Path(utt.audio).resolve()
    if base is not None and audio.is_relative_to(base):
        # Relative only below the manifest's folder, so the folder moves as a whole;
        # anything else stays absolute rather than climbing out with "../..".
        rec["audio"] = audio.relative_to(base).as_posix()
    else:
        rec["audio"] = str(audio)
    return {k: rec[k] for k in _FIELDS if k in rec}


def _table_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    for lineno, line in read_lines(path):
        if line.strip():
            yield lineno, line.split()


def _read_table(path: Path, required: bool = False) -> dict[str, str]:
    """Kaldi ``key value...`` table → {key: rest of line}."""
    if not path.exists():
        if required:
            raise ManifestError(f"{path}: missing; a Kaldi data directory needs wav.scp")
        return {}
    table = {}
    for lineno, line in read_lines(path):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if len(parts) == 1 and path.name == "wav.scp":
            raise ManifestError(f"{where(path, lineno)}: expected '<id> <path>'")
        if parts[0] in table:
            raise ManifestError(f"{where(path, lineno)}: {parts[0]!r} is listed twice")
        table[parts[0]] = parts[1] if len(parts) > 1 else ""
    return table


def _float(s: str, path: Path, lineno: int) -> float:
    try:
        return float(s)
    except ValueError:
        raise ManifestError(f"{where(path, lineno)}: {s!r} is not a number") from None
