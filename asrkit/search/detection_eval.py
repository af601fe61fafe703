"""Search as detection, measured on an indexed archive whose word positions are known,
and the score threshold that keeps false alarms at a chosen rate.

Input: the index, a *word manifest* (one line per spoken word: ``text`` the word,
``audio`` its recording, ``offset``/``duration`` its span; the ``words.jsonl`` of
``asrkit data synth-archive``, or forced alignments) and spoken queries (another word
manifest; by default the first occurrence of each word, cut from the archive itself).

Every query is a term of its own (as in query-by-example evaluations): its reference is
every occurrence of its word, except the query's own span, and detections on that
span are ignored. The audio searched is every recording in the index, one non-target
trial per second (:mod:`asrkit.search.detection`).

Calibration keeps the judged detections of the calibration queries in the index's
settings (one SQLite transaction), so ``search --threshold auto`` can pick the threshold
for any false-alarm rate later without searching again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..audio import SAMPLE_RATE, audio_info, load_audio
from ..errors import AudioError, ConfigError, ManifestError
from ..manifest import Utterance
from .detection import (Detection, Occurrence, ScoredDetections, average_precision_of_hits,
                        false_alarms_per_hour, maximum_twv, recall, score_detections,
                        term_weighted_value, threshold_for_false_alarms)
from .index import SearchIndex, _existing
from .query import Query, search
from .store import IndexStore

DEPTH = 100  # hits judged per query; a threshold low enough to reach further is useless
SETTING = "detection_calibration"  # index setting holding the calibration
CALIBRATE_HINT = "asrkit search calibrate INDEX WORDS.jsonl"


@dataclass(frozen=True)
class TermQuery:
    """A spoken query for ``word``; ``own`` is its own span in the archive (resolved
    audio path, start, end in seconds) when it was cut from there, else None."""

    name: str
    word: str
    query: Query
    own: tuple[str, float, float] | None


@dataclass(frozen=True)
class Judged:
    """The hits of every query, judged: what :func:`report` and calibration need."""

    scored: ScoredDetections  # its terms are the judged queries' names
    words: int  # distinct words among the judged queries
    skipped: int  # queries without another occurrence, or too short to search


@dataclass(frozen=True)
class DetectionReport:
    queries: int  # queries judged (their word is said elsewhere in the archive)
    words: int  # distinct words among them
    occurrences: int  # true occurrences to find, summed over queries
    audio_hours: float  # archive searched
    map: float  # mean over queries of the average precision of the top `depth` hits
    mtwv: float  # maximum term-weighted value over thresholds
    mtwv_threshold: float | None  # the highest threshold reaching it (None: say nothing)
    atwv: float | None  # term-weighted value at `threshold` (None without a threshold)
    threshold: float | None  # the decision threshold (given, or from calibration)
    false_alarms_per_hour: float | None  # per query, at `threshold`
    recall: float | None  # share of occurrences found at `threshold`
    skipped: int  # queries without another occurrence, or too short to search


def word_occurrences(words: Sequence[Utterance]) -> list[Occurrence]:
    """A word manifest → where each (upper-cased) word is said."""
    out = []
    for u in words:
        if not u.text or len(u.text.split()) != 1:
            raise ManifestError(f"{u.id}: a word manifest needs exactly one word in 'text', "
                                f"got {u.text!r}")
        end = u.offset + (u.duration if u.duration is not None
                          else audio_info(u.audio).duration - u.offset)
        out.append(Occurrence(u.text.upper(), _key(u.audio), u.offset, end))
    return out


def term_queries(words: Sequence[Utterance], queries: Sequence[Utterance] | None = None,
                 ) -> list[TermQuery]:
    """Spoken queries: each line of ``queries``, or the first occurrence of each word in
    ``words`` (cut from the archive). A query lying in an archive recording is marked
    so its own span is not counted."""
    if queries is None:
        seen: dict[str, Utterance] = {}
        for u in words:
            seen.setdefault((u.text or "").upper(), u)
        queries = list(seen.values())
    out = []
    for u in queries:
        if not u.text or len(u.text.split()) != 1:
            raise ManifestError(f"{u.id}: a query needs exactly one word in 'text', "
                                f"got {u.text!r}")
        wave = load_audio(u.audio, offset=u.offset, duration=u.duration)
        end = u.offset + len(wave) / SAMPLE_RATE
        out.append(TermQuery(u.id, u.text.upper(), Query(u.id, wave),
                             (_key(u.audio), u.offset, end)))
    return out


def judge(index: SearchIndex | str | os.PathLike, words: Sequence[Utterance],
          queries: Sequence[TermQuery], depth: int = DEPTH,
          progress: Callable[[int, int], None] | None = None) -> Judged:
    """Search each query (top ``depth`` hits) and judge the hits against ``words``."""
    occurrences = word_occurrences(words)
    opened = not isinstance(index, SearchIndex)
    idx = SearchIndex(index) if opened else index
    try:
        seconds = sum(s.duration or 0.0 for s in idx.sources() if s.status == "indexed")
        found: list[Detection] = []
        truth: list[Occurrence] = []
        skipped, judged_words = 0, set()
        for n, q in enumerate(queries, 1):
            mine = [o for o in occurrences if o.term == q.word and not _own(q, o.recording,
                                                                             o.start, o.end)]
            try:
                hits = search(idx, [q.query], top=depth)[0] if mine else None
            except AudioError:  # silent or shorter than the index's shortest speech
                hits = None
            if hits is None:
                skipped += 1
            else:
                judged_words.add(q.word)
                truth += [Occurrence(q.name, o.recording, o.start, o.end) for o in mine]
                found += [Detection(q.name, _key(h.audio), h.start, h.end, h.score)
                          for h in hits if not _own(q, _key(h.audio), h.start, h.end)]
            if progress:
                progress(n, len(queries))
    finally:
        if opened:
            idx.close()
    if not truth:
        raise ManifestError("no query's word is said anywhere else in the archive; give a "
                            "word manifest whose words occur at least twice")
    return Judged(score_detections(found, truth, seconds), len(judged_words), skipped)


def report(judged: Judged, threshold: float | None) -> DetectionReport:
    """The figures of a judged run; ATWV and its companions at ``threshold``."""
    scored = judged.scored
    mtwv, best = maximum_twv(scored)
    given = threshold is not None
    return DetectionReport(
        queries=len(scored.terms), words=judged.words, occurrences=int(scored.true_counts.sum()),
        audio_hours=scored.hours, map=float(average_precision_of_hits(scored).mean()),
        mtwv=mtwv, mtwv_threshold=best,
        atwv=term_weighted_value(scored, threshold) if given else None, threshold=threshold,
        false_alarms_per_hour=false_alarms_per_hour(scored, threshold) if given else None,
        recall=recall(scored, threshold) if given else None, skipped=judged.skipped)


def save_calibration(index_dir: str | os.PathLike, scored: ScoredDetections) -> None:
    """Keep ``scored`` in the index's settings (one transaction: all or nothing)."""
    folder = _existing(index_dir)
    with IndexStore(folder / IndexStore.FILE) as store:
        store.set_settings(**{SETTING: {
            "terms": len(scored.terms), "seconds": scored.seconds,
            "true_counts": scored.true_counts.tolist(), "term": scored.term.tolist(),
            "score": scored.score.tolist(),
            "correct": scored.correct.astype(int).tolist(),
            "revision": store.setting("revision")}})  # what the index held when calibrated


def is_calibrated(index_dir: str | os.PathLike) -> bool:
    return _kept(_existing(index_dir)) is not None


def load_calibration(index_dir: str | os.PathLike) -> ScoredDetections:
    """The calibration kept by :func:`save_calibration`; ConfigError if there is none."""
    folder = _existing(index_dir)
    kept = _kept(folder)
    if not kept:
        raise ConfigError(f"{folder}: this index was never calibrated, so --threshold auto "
                          f"has no threshold; run `{CALIBRATE_HINT}` first (or give "
                          "--threshold as a number)")
    return ScoredDetections(tuple(str(i) for i in range(kept["terms"])),
                            np.array(kept["true_counts"], np.int64),
                            np.array(kept["term"], np.int64), np.array(kept["score"]),
                            np.array(kept["correct"], bool), float(kept["seconds"]))


def calibrated_threshold(index_dir: str | os.PathLike, per_hour: float) -> float:
    """The score threshold that kept false alarms within ``per_hour`` per query per hour
    of audio on the index's calibration queries (``search --threshold auto``)."""
    return threshold_for_false_alarms(load_calibration(index_dir), per_hour)


def threshold_value(value: str | float | None, index_dir: str | os.PathLike,
                    per_hour: float) -> float | None:
    """A score threshold as given to ``search --threshold``: None, a number, or 'auto'
    (the calibrated threshold for ``per_hour`` false alarms)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return calibrated_threshold(index_dir, per_hour)
    return None if value is None else float(value)


def _kept(folder: Path) -> dict | None:
    with IndexStore(folder / IndexStore.FILE, read_only=True) as store:
        return store.setting(SETTING)


def _own(q: TermQuery, recording: str, start: float, end: float) -> bool:
    """Whether a span overlaps the query's own place in the archive."""
    return q.own is not None and q.own[0] == recording and start < q.own[2] \
        and q.own[1] < end


def _key(audio: str) -> str:
    return str(Path(audio).resolve())
