"""Checking a manifest before training or evaluation: every problem at once.

:func:`validate_manifest` reads every line (a malformed line is reported, not fatal),
decodes every audio file once, and checks each transcript against a vocabulary and
against the number of frames a CTC model would emit for its audio. The result is a
:class:`ValidationReport`; each :class:`Issue` says where, what and how to fix it.

Problems make a manifest unusable as it stands (training would skip or crash on those
utterances); warnings are worth a look but do not stop anything.
"""

from __future__ import annotations

import json
import math
import statistics
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Literal

from ..audio import AudioInfo, audio_info, stream_audio
from ..errors import AsrkitError, ManifestError, where
from ..features import FeatureConfig
from ..manifest import Utterance, _parse_line, check_root  # the strict reader's own line rules
from ..text import CasePolicy, Vocabulary, ctc_min_frames, normalize_text

if TYPE_CHECKING:
    from .model import AsrModel

CHECK_BLOCK_SECONDS = 60.0  # audio is decoded in blocks of this length (bounded memory)
END_TOLERANCE = 0.02  # seconds a segment may run past the end of its file (rounding)
_INVISIBLE = ("Cc", "Cf", "Co", "Cn", "Cs")  # Unicode categories nobody means to transcribe


@dataclass(frozen=True)
class Issue:
    """One thing wrong with one utterance, line or the manifest as a whole."""

    location: str  # file:line, or the manifest for whole-manifest issues
    id: str | None  # utterance id, when the line parsed
    problem: str
    fix: str
    severity: Literal["problem", "warning"] = "problem"


@dataclass(frozen=True)
class DurationStats:
    """Durations of the readable utterances, in seconds."""

    count: int
    total_hours: float
    min: float
    median: float
    max: float


@dataclass(frozen=True)
class ValidationReport:
    manifest: str
    lines: int  # non-empty lines
    utterances: int  # lines that parsed into an utterance
    audio_files: int  # distinct audio files referenced
    sample_rates: tuple[tuple[int, int], ...]  # (Hz, utterances), most common first
    durations: DurationStats | None  # None when no audio was readable
    characters: tuple[tuple[str, int], ...]  # normalised transcript characters, by count
    vocabulary: tuple[str, ...] | None  # the model's symbols, when checked against a model
    subsample: int  # feature frames per output frame used for the CTC length check
    problems: tuple[Issue, ...]
    warnings: tuple[Issue, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["sample_rates"] = {str(rate): n for rate, n in self.sample_rates}
        d["characters"] = {c: n for c, n in self.characters}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class ManifestEntry:
    """A manifest line that parsed into an utterance."""

    lineno: int
    utt: Utterance


def read_manifest_tolerant(path: str | Path, root: str | Path | None = None,
                           ) -> tuple[list[ManifestEntry], list[Issue]]:
    """Read every line of a manifest, collecting malformed lines, duplicate ids and
    (with ``root``) audio outside that folder as :class:`Issue` instead of stopping at
    the first. Raises :class:`ManifestError` only when the file cannot be opened."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    base = path.resolve().parent
    entries, issues, first_line = [], [], {}
    for lineno, raw in _lines(path):
        try:
            text = raw.decode("utf-8").lstrip("\ufeff")  # BOMs: no data, as read_manifest
            utt = _parse_line(text, path, lineno, base)
            if root is not None:
                check_root(utt, Path(root).resolve(), where(path, lineno))
        except UnicodeDecodeError:
            issues.append(Issue(where(path, lineno), None, "line is not valid UTF-8",
                                "save the manifest as UTF-8"))
            continue
        except ManifestError as e:
            problem, _, fix = str(e).removeprefix(f"{where(path, lineno)}: ").partition("; ")
            issues.append(Issue(where(path, lineno), None, problem,
                                fix or 'fix or delete the line; each line is one JSON object '
                                'with at least "id" and "audio"'))
            continue
        if utt.id in first_line:
            issues.append(Issue(where(path, lineno), utt.id,
                                f"duplicate id (first used on line {first_line[utt.id]})",
                                "give every utterance a unique id"))
            continue
        first_line[utt.id] = lineno
        entries.append(ManifestEntry(lineno, utt))
    return entries, issues


def validate_manifest(
    path: str | Path, model: AsrModel | None = None, case: CasePolicy = "upper",
    read_samples: bool = True,
    progress: Callable[[int, int], None] | None = None,
    root: str | Path | None = None,
) -> ValidationReport:
    """Check a manifest; see the module docstring.

    With ``model`` (an :class:`~asrkit.asr.model.AsrModel`) transcripts are checked against
    its vocabulary and frame rate; without it, against the default feature and model
    configuration, and the character inventory is reported for inspection. With
    ``read_samples`` every audio file is decoded completely (finds truncated files and
    NaN samples); otherwise only headers are read. ``progress(done, total)`` is called
    after each utterance. With ``root``, lines naming audio outside it are problems.
    """
    path = Path(path)
    entries, issues = read_manifest_tolerant(path, root)
    lines = len(entries) + len(issues)  # every non-empty line is one or the other
    checker = _Checker(model, case, issues)
    files: dict[str, AudioInfo | _AudioProblem] = {}  # each file is decoded once, however many segments
    rates: Counter[int] = Counter()
    durations: list[float] = []
    for done, entry in enumerate(entries, 1):
        if entry.utt.audio not in files:
            files[entry.utt.audio] = _inspect_audio(entry.utt.audio, read_samples)
        info = files[entry.utt.audio]
        seconds = checker.check(entry.utt, info, where(path, entry.lineno))
        if isinstance(info, AudioInfo):
            rates[info.sample_rate] += 1
        if seconds:
            durations.append(seconds)
        if progress:
            progress(done, len(entries))
    issues += _rate_warnings(rates, checker.features.sample_rate, str(path))
    return ValidationReport(
        str(path), lines, len(entries), len(files), tuple(rates.most_common()),
        _duration_stats(durations), tuple(checker.characters.most_common()),
        tuple(model.vocab.symbols) if model is not None else None, checker.subsample,
        tuple(i for i in issues if i.severity == "problem"),
        tuple(i for i in issues if i.severity == "warning"))


class _Checker:
    """Per-utterance audio, transcript and length checks against a model (or the
    defaults); issues are appended to ``issues``."""

    def __init__(self, model: AsrModel | None, case: CasePolicy, issues: list[Issue]):
        from .model import ModelConfig  # noqa: PLC0415 (torch only when validating)
        self.vocab: Vocabulary | None = model.vocab if model is not None else None
        self.case = self.vocab.case if self.vocab is not None else case
        self.features = model.feature_config if model is not None else FeatureConfig()
        self.subsample = model.config.subsample if model is not None else \
            ModelConfig().subsample
        self.characters: Counter[str] = Counter()
        self.issues = issues

    def output_frames(self, seconds: float) -> int:
        """Model output frames for ``seconds`` of audio (``AsrModel.output_frames`` of
        the feature frames)."""
        samples = int(round(seconds * self.features.sample_rate))
        return -(-self.features.num_frames(samples) // self.subsample)

    def check(self, utt: Utterance, info: AudioInfo | _AudioProblem, loc: str) -> float | None:
        """Check one utterance; returns its duration in seconds if the audio is usable."""
        def add(problem: str, fix: str, severity="problem"):
            self.issues.append(Issue(loc, utt.id, problem, fix, severity))

        seconds = None
        if isinstance(info, _AudioProblem):
            add(info.problem, info.fix)
        else:
            seconds = self._segment(utt, info, add)
        if utt.text is None or not utt.text.strip():
            add("no transcript" if utt.text is None else "empty transcript",
                "fine for transcription; training skips it and evaluation counts every "
                "hypothesised word as an insertion", "warning")
            return seconds
        text = normalize_text(utt.text, self.case)
        self.characters.update(text)
        labels = self._labels(text, add)
        if labels is not None and seconds:
            needed, have = ctc_min_frames(labels), self.output_frames(seconds)
            if needed > have:
                add(f"transcript needs {needed} output frames but {seconds:.2f} s of audio "
                    f"give only {have} (subsample {self.subsample}); CTC cannot align it",
                    "check that the transcript belongs to this audio and segment; for very "
                    "fast speech use a model with a smaller subsample")
        return seconds

    @staticmethod
    def _segment(utt: Utterance, info: AudioInfo, add) -> float | None:
        """Check offset/duration against the file; the segment's seconds if usable."""
        if utt.offset >= info.duration:
            add(f"offset {utt.offset:.3f} s is past the end of the file "
                f"({info.duration:.3f} s)", "correct the offset")
            return None
        seconds = utt.duration if utt.duration is not None else info.duration - utt.offset
        end = utt.offset + seconds
        if end > info.duration + END_TOLERANCE:
            add(f"segment ends at {end:.3f} s but the file is only {info.duration:.3f} s "
                "long", "correct the duration or offset")
            return info.duration - utt.offset
        if seconds <= 0:
            add("segment is empty (duration 0)", "remove the line or give it a positive "
                "duration")
            return None
        return seconds

    def _labels(self, text: str, add) -> list[int] | None:
        """Label ids of ``text`` (code points without a vocabulary); None if unusable."""
        if self.vocab is not None:
            bad = sorted(self.vocab.unknown(text))
            if bad:
                add(f"characters {_show(bad)} are not in the model's vocabulary",
                    "spell them out or remove them from the transcript, or use a model "
                    "trained with them")
                return None
            return self.vocab.encode(text)
        bad = sorted({c for c in text if unicodedata.category(c) in _INVISIBLE})
        if bad:
            add(f"invisible or control characters {_show(bad)} in the transcript",
                "remove them from the transcript")
        return [ord(c) for c in text]


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:  # bytes, so one bad byte spoils one line, not the file
        for lineno, raw in enumerate(f, 1):
            if raw.strip():
                yield lineno, raw


@dataclass(frozen=True)
class _AudioProblem:
    problem: str
    fix: str


def _inspect_audio(path: str, read_samples: bool) -> AudioInfo | _AudioProblem:
    """Header (and, with ``read_samples``, all samples) of one file, or why it is
    unusable: missing, unreadable, empty, truncated, NaN/inf samples."""
    try:
        info = audio_info(path)
        if info.frames == 0:
            return _AudioProblem(f"{path}: the file holds no audio samples",
                                 "remove the line or replace the file")
        if read_samples:
            frames = sum(len(chunk) for _, chunk in stream_audio(
                path, CHECK_BLOCK_SECONDS, sample_rate=info.sample_rate))
            if frames < info.frames:
                return _AudioProblem(f"{path}: only {frames} of the {info.frames} samples "
                                     "in the header could be read (truncated file)",
                                     "re-export or re-copy the file")
    except AsrkitError as e:
        problem, _, fix = str(e).partition("; ")
        return _AudioProblem(problem, fix or "fix the file or remove the line")
    return info


def _rate_warnings(rates: Counter, model_rate: int, manifest: str) -> list[Issue]:
    if not rates:
        return []
    listing = ", ".join(f"{rate} Hz ({n})" for rate, n in rates.most_common())
    out = []
    if len(rates) > 1:
        out.append(Issue(manifest, None, f"mixed sample rates: {listing}",
                         f"all audio is resampled to {model_rate} Hz when read, but "
                         "recordings of different bandwidths behave differently; "
                         "train and test on the same kind", "warning"))
    low = sorted(rate for rate in rates if rate < model_rate)
    if low:
        out.append(Issue(manifest, None, f"audio at {', '.join(map(str, low))} Hz is below the "
                         f"model's {model_rate} Hz", "upsampling cannot restore the missing "
                         "high frequencies; expect more errors on this audio", "warning"))
    return out


def _duration_stats(durations: list[float]) -> DurationStats | None:
    if not durations:
        return None
    return DurationStats(len(durations), round(math.fsum(durations) / 3600, 4),
                         round(min(durations), 3), round(statistics.median(durations), 3),
                         round(max(durations), 3))


def _show(chars: list[str]) -> str:
    return ", ".join(repr(c) if c.isprintable() else f"U+{ord(c):04X}" for c in chars)
