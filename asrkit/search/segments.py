"""Candidate segments for query-by-example search: speech regions, then windows;
or the words a trained recogniser finds.

An energy detector finds speech regions in a waveform; inside each region, windows of
several durations slide with a fixed hop. Every window is one candidate "word" that
the embedder turns into a vector. Times are seconds from the start of the waveform.

The default windows (0.4, 0.7 and 1.1 s, one every 0.3 s) are a sixth of the work of
the earlier six lengths every 0.1 s (:data:`TRAINING_WINDOWS`) and searched better,
not worse: on held-out AN4 voices archive MAP 0.504 against 0.460 (47 spoken queries,
bench/index_build_speed.py; 0.489 every 0.25 s, 0.500 every 0.35 s). A recording is ranked by its best window, and each extra
near-duplicate window of an unrelated recording is one more chance of a spurious
high score. Embedders are still trained on the denser windows: more varied views.

The detector is deliberately simple (frame energy against an adaptive threshold):
it only has to drop long silences, because the windows do the fine placement.

With ``kind="words"`` an asrkit acoustic model's greedy CTC alignment places the
candidates instead: every recognised word, and every run of up to ``max_words``
consecutive words. Character CTC fires inside a word, not at its edges, and its last
symbol fires well before the word's sound ends (bench/search_notes.md), so a
word is padded a little before and extended up to ``word_tail`` after, stopping at
the next word or where the energy detector says speech ends. Far fewer segments than windows, each on a word boundary, but only as good
as the recogniser on that audio; ``kind="both"`` keeps the windows as well.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import ConfigError
from ..pretrained import DEFAULT_MODEL

VAD_WIN_MS = 25  # energy analysis window, milliseconds
VAD_HOP_MS = 10  # energy frame shift, milliseconds
ENERGY_FLOOR_DB = -100.0  # digital silence is clamped here, so it stays finite
NOISE_PERCENTILE = 10  # the quietest frames estimate the noise floor
PEAK_PERCENTILE = 99  # the loudest frames (ignoring clicks) estimate the speech level
TRIM_WIDEN_DB = 3.0  # trim_silence keeps the frames next to speech this far above the floor
ENERGY_BLOCK = 4096  # frames whose energy is computed at once (bounds memory)
MAX_WORD_SPAN = 3.0  # seconds; a longer "word" run is a misalignment, not a candidate
SEGMENT_KINDS = ("windows", "words", "both")
DETECTORS = ("energy", "silero")
SILERO_THRESHOLD = 0.5  # speech probability that starts a region...
SILERO_EXIT = 0.35  # ...and the one below which it ends (hysteresis)


@dataclass(frozen=True)
class SegmentConfig:
    """How speech regions are found and cut into candidate windows."""

    durations: tuple[float, ...] = (0.4, 0.7, 1.1)  # window lengths, seconds
    hop: float = 0.3  # seconds between window starts
    snr_db: float = 12.0  # speech must be this far above the noise floor...
    range_db: float = 40.0  # ...and no further than this below the speech peak
    min_level_db: float = -70.0  # frames quieter than this (dBFS) are never speech
    min_speech: float = 0.1  # seconds; shorter bursts are dropped as clicks
    min_silence: float = 0.25  # seconds; shorter pauses are bridged (stops inside words)
    pad: float = 0.05  # seconds added at both ends of every region
    sample_rate: int = SAMPLE_RATE
    # energy: frame energy against an adaptive threshold; silero: the Silero VAD
    # network (asrkit.vad). Settings stored without it are energy (the only one then).
    detector: Literal["energy", "silero"] = "energy"
    kind: Literal["windows", "words", "both"] = "windows"
    # For words: the acoustic model (bundled name or absolute path; default the bundled
    # recogniser) and its fingerprint (see asrkit.search.asr_frontend; fill both with
    # with_asr_model()).
    asr_model: str | None = None
    asr_fingerprint: str | None = None
    max_words: int = 2  # candidates are runs of 1..max_words recognised words
    word_pad: float = 0.05  # seconds added before a recognised word (and at least after it)
    word_tail: float = 0.3  # seconds a word may extend after its last symbol fired

    def __post_init__(self):
        durations = tuple(float(d) for d in self.durations)
        object.__setattr__(self, "durations", tuple(sorted(set(durations))))
        if not durations or min(durations) <= 0:
            raise ConfigError("segments.durations must be a non-empty list of positive seconds")
        for name in ("hop", "min_speech"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"segments.{name} must be positive, not {getattr(self, name)}")
        for name in ("min_silence", "pad", "snr_db", "range_db", "word_pad",
                     "word_tail"):
            if getattr(self, name) < 0:
                raise ConfigError(f"segments.{name} must not be negative")
        if self.detector not in DETECTORS:
            raise ConfigError(f"segments.detector {self.detector!r} is not one of "
                              f"{', '.join(DETECTORS)}")
        if self.kind not in SEGMENT_KINDS:
            raise ConfigError(f"segments.kind {self.kind!r} is not one of "
                              f"{', '.join(SEGMENT_KINDS)}")
        if self.kind != "windows" and not self.asr_model:
            object.__setattr__(self, "asr_model", DEFAULT_MODEL)
        if self.max_words < 1:
            raise ConfigError(f"segments.max_words must be at least 1, not {self.max_words}")

    @property
    def uses_words(self) -> bool:
        return self.kind != "windows"

    @property
    def longest(self) -> float:
        """Seconds: no candidate is longer (chunked indexing overlaps chunks this much)."""
        longest = max(self.durations)
        return max(longest, MAX_WORD_SPAN + self.word_pad + self.word_tail) if self.uses_words else longest

    @classmethod
    def from_dict(cls, d: dict) -> "SegmentConfig":
        """Settings as stored (``asdict``); those stored before there was a choice of
        detector used the energy one, whatever today's default."""
        d = dict(d)
        d.setdefault("detector", "energy")
        if "durations" in d:
            d["durations"] = tuple(d["durations"])
        return cls(**d)


# The windows the bundled embedder was trained on (and every index's default before
# the sparser windows above): still the default for training an embedder.
TRAINING_WINDOWS = SegmentConfig(durations=(0.3, 0.5, 0.7, 0.9, 1.2, 1.5), hop=0.1)


@dataclass(frozen=True)
class Span:
    """A stretch of a waveform, in seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def frame_energy_db(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Log energy (dBFS) of ``wave (samples,)`` per 10 ms frame → ``(frames,)``."""
    win = int(sample_rate * VAD_WIN_MS / 1000)
    hop = int(sample_rate * VAD_HOP_MS / 1000)
    if len(wave) < win:
        wave = np.pad(wave, (0, win - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, win)[::hop]  # a view, no copy
    # In blocks: a float64 copy of all frames of a 10-minute chunk would take 190 MB.
    power = np.concatenate([np.mean(frames[i:i + ENERGY_BLOCK].astype(np.float64) ** 2, axis=1)
                            for i in range(0, len(frames), ENERGY_BLOCK)])
    return np.maximum(10 * np.log10(power + 1e-20), ENERGY_FLOOR_DB)


def detect_speech(wave: np.ndarray, config: SegmentConfig = SegmentConfig()) -> list[Span]:
    """Speech regions of ``wave (samples,)``, sorted, non-overlapping, padded, by the
    config's detector (:func:`energy_speech` or :func:`silero_speech`)."""
    if config.detector == "silero":
        return silero_speech(wave, config)
    return energy_speech(wave, config)


def silero_speech(wave: np.ndarray, config: SegmentConfig = SegmentConfig()) -> list[Span]:
    """Speech regions from Silero VAD's speech probabilities (32 ms windows): a region
    starts where the probability reaches :data:`SILERO_THRESHOLD` and lasts while it
    stays above :data:`SILERO_EXIT`; then pauses under ``min_silence`` are bridged,
    regions under ``min_speech`` dropped and ``pad`` added, as for the energy detector."""
    from ..vad import SILERO_HOP_SECONDS, speech_probabilities  # torch only when used
    if len(wave) == 0:
        return []
    probs = speech_probabilities(wave, config.sample_rate)
    mask, inside = np.zeros(len(probs), bool), False
    for i, p in enumerate(probs.tolist()):
        inside = p >= SILERO_THRESHOLD or (inside and p >= SILERO_EXIT)
        mask[i] = inside
    return _regions(mask, SILERO_HOP_SECONDS, 0.0, len(wave), config)


def energy_speech(wave: np.ndarray, config: SegmentConfig = SegmentConfig()) -> list[Span]:
    """Speech regions of ``wave (samples,)`` by frame energy.

    A frame is speech when it is ``snr_db`` above the noise floor, within ``range_db``
    of the peak and above ``min_level_db``. A recording with no quiet part (e.g. an
    already trimmed word) has no usable noise floor; then only the range test applies.
    """
    if len(wave) == 0:
        return []
    return _energy_regions(_EnergyLevels.of(wave, config), len(wave), config)


@dataclass(frozen=True)
class _EnergyLevels:
    """Frame energies (dBFS) of a waveform with its noise floor and speech peak."""

    energy: np.ndarray  # (frames,)
    noise: float
    peak: float

    @classmethod
    def of(cls, wave: np.ndarray, config: SegmentConfig) -> "_EnergyLevels":
        energy = frame_energy_db(wave, config.sample_rate)
        noise, peak = np.percentile(energy, [NOISE_PERCENTILE, PEAK_PERCENTILE])
        return cls(energy, float(noise), float(peak))

    def floor(self, above_noise_db: float, config: SegmentConfig) -> float:
        """The level a speech frame reaches: ``above_noise_db`` over the noise floor,
        within ``range_db`` of the peak and above ``min_level_db``."""
        return max(self.noise + above_noise_db, self.peak - config.range_db,
                   config.min_level_db)


def _energy_regions(levels: _EnergyLevels, samples: int, config: SegmentConfig) -> list[Span]:
    threshold = levels.floor(config.snr_db, config)
    if threshold > levels.peak:  # no frame stands out from the floor: all speech or silence
        threshold = max(levels.peak - config.range_db, config.min_level_db)
    return _regions(levels.energy >= threshold, VAD_HOP_MS / 1000, VAD_WIN_MS / 1000, samples,
                    config)


def _regions(mask: np.ndarray, hop: float, tail: float, samples: int,
             config: SegmentConfig) -> list[Span]:
    """Spans of the speech frames in ``mask (frames,)``, frame ``i`` starting at ``i *
    hop`` seconds, a run of frames ``[a, b)`` ending at ``b * hop + tail``: short pauses
    bridged, short bursts dropped, padded."""
    runs = _bridge(_runs(mask), int(round(config.min_silence / hop)))
    min_frames = int(round(config.min_speech / hop))
    total = samples / config.sample_rate
    spans = [Span(max(0.0, a * hop - config.pad), min(total, b * hop + tail + config.pad))
             for a, b in runs if b - a >= min_frames]
    return _merge_overlapping(spans)


def trim_silence(wave: np.ndarray, config: SegmentConfig = SegmentConfig()) -> np.ndarray:
    """``wave (samples,)`` cut to the first..last speech region (unchanged if none found).

    With the energy detector the cut is then widened over the frames either side that
    still stand :data:`TRIM_WIDEN_DB` above the noise floor. The detector's own
    threshold (``snr_db`` above the floor) keeps only the loud middle of a word said in
    noise: in pink noise at 10 dB SNR it cut AN4's single words to 0.36 s on average
    (0.59 s clean), and embeddings of the stubs lost to DTW."""
    levels = _EnergyLevels.of(wave, config) if config.detector == "energy" and len(wave) \
        else None
    spans = _energy_regions(levels, len(wave), config) if levels is not None else \
        detect_speech(wave, config)
    if not spans:
        return wave
    rate = config.sample_rate
    a, b = int(spans[0].start * rate), int(np.ceil(spans[-1].end * rate))
    if levels is not None:
        a, b = _widened(levels, a, b, len(wave), config)
    return wave[a:b]


def _widened(levels: _EnergyLevels, a: int, b: int, samples: int, config: SegmentConfig,
             ) -> tuple[int, int]:
    """Samples ``[a, b)`` grown over the neighbouring energy frames that reach
    :data:`TRIM_WIDEN_DB` above the noise floor (and the detector's range and level
    limits), plus the usual ``pad``."""
    energy, low = levels.energy, levels.floor(TRIM_WIDEN_DB, config)
    hop = int(config.sample_rate * VAD_HOP_MS / 1000)
    win = int(config.sample_rate * VAD_WIN_MS / 1000)
    pad = int(config.pad * config.sample_rate)
    first = start = min(a // hop, len(energy) - 1)
    while first > 0 and energy[first - 1] >= low:
        first -= 1
    last = end = min(max((b - win) // hop, 0), len(energy) - 1)
    while last + 1 < len(energy) and energy[last + 1] >= low:
        last += 1
    if first < start:
        a = min(a, max(0, first * hop - pad))
    if last > end:
        b = max(b, min(samples, last * hop + win + pad))
    return a, b


def windows_in(region: Span, config: SegmentConfig = SegmentConfig()) -> list[Span]:
    """Candidate windows inside one speech region, ordered by start then duration.

    Each duration slides with ``hop``; the last window of each duration is aligned to the
    region's end so no speech is left uncovered. A region shorter than the longest
    duration is also a candidate itself: an isolated word is its own best window.
    """
    out = set()
    length = region.duration
    for d in config.durations:
        if d > length + 1e-9:
            continue
        starts = np.arange(0.0, length - d + 1e-9, config.hop)
        for s in np.append(starts, length - d):
            out.add((round(region.start + s, 3), round(region.start + s + d, 3)))
    if length <= config.durations[-1]:
        out.add((round(region.start, 3), round(region.end, 3)))
    return [Span(a, b) for a, b in sorted(out)]


def candidate_segments(wave: np.ndarray, config: SegmentConfig = SegmentConfig()) -> list[Span]:
    """All candidate segments of ``wave (samples,)``, ordered by start then end:
    :func:`windows_in` every speech region, and/or :func:`recognised_word_spans`."""
    out: list[Span] = []
    if config.kind != "words":
        out += [w for region in detect_speech(wave, config) for w in windows_in(region, config)]
    if config.uses_words:
        out += recognised_word_spans(wave, config)
    return sorted(set(out), key=lambda s: (s.start, s.end))


def with_asr_model(config: SegmentConfig, asr_model: str | None = None) -> SegmentConfig:
    """``config`` with its acoustic model (``asr_model`` or the one it names) loaded
    and fingerprinted, so an index records exactly which model placed its segments."""
    name = asr_model or config.asr_model
    if not config.uses_words and name is None:
        return config
    from .asr_frontend import reference_model  # torch and the model only when used
    _, ref = reference_model(name)
    if config.asr_model == ref.name and config.asr_fingerprint not in (None, ref.fingerprint):
        raise ConfigError(f"acoustic model {ref.name!r} has changed since these segment "
                          "settings were made; rebuild into a new folder")
    return replace(config, asr_model=ref.name, asr_fingerprint=ref.fingerprint)


def recognised_word_spans(wave: np.ndarray, config: SegmentConfig) -> list[Span]:
    """Word-run candidates of ``wave (samples,)`` from ``config.asr_model``'s greedy
    CTC alignment (see :func:`word_run_spans`)."""
    from .asr_frontend import AcousticModelRef, load_referenced, wave_log_probs
    if len(wave) == 0:
        return []
    if config.asr_fingerprint is None:  # unchecked: only for configs never stored
        config = with_asr_model(config)
    model = load_referenced(AcousticModelRef(config.asr_model, config.asr_fingerprint),
                            "this word segmentation")
    return aligned_word_spans(wave_log_probs(model, wave), model.vocab, model.frame_seconds,
                              config, len(wave) / config.sample_rate,
                              detect_speech(wave, config))


def aligned_word_spans(log_probs, vocab, frame_seconds: float, config: SegmentConfig,
                       total: float, speech: Sequence[Span] | None = None) -> list[Span]:
    """Word-run candidates from CTC ``log_probs (frames, vocab)`` (blank = 0) of a
    recogniser with ``vocab`` and ``frame_seconds`` per frame: greedy word times, then
    :func:`word_run_spans`."""
    from ..decoding.base import RAW_WORD_TIMES, GreedyDecoder
    # Raw symbol frames: word_extents pads them itself (word_pad, word_tail were tuned
    # on these), and indexes built before word times were corrected keep their segments.
    hyp = GreedyDecoder(vocab, frame_seconds, RAW_WORD_TIMES).decode(log_probs.unsqueeze(0))[0]
    return word_run_spans([(w.start, w.end) for w in hyp.words], config, total, speech)


def word_run_spans(words: Sequence[tuple[float, float]], config: SegmentConfig,
                   total: float, speech: Sequence[Span] | None = None) -> list[Span]:
    """Spans of every run of 1..``max_words`` consecutive ``words`` ((start, end)
    seconds of their first and last symbols, in order), each word widened by
    :func:`word_extents`, clipped to ``[0, total]``; runs whose symbols spread over
    more than :data:`MAX_WORD_SPAN` are left out."""
    extents = word_extents(words, config, total, speech)
    out = set()
    for n in range(1, config.max_words + 1):
        for i in range(len(words) - n + 1):
            if words[i + n - 1][1] - words[i][0] > MAX_WORD_SPAN:
                continue
            out.add((round(extents[i][0], 3), round(extents[i + n - 1][1], 3)))
    return [Span(a, b) for a, b in sorted(out) if b > a]


def word_extents(words: Sequence[tuple[float, float]], config: SegmentConfig, total: float,
                 speech: Sequence[Span] | None = None) -> list[tuple[float, float]]:
    """Each word's (start, end) seconds: ``word_pad`` before its first symbol (not
    into the previous word), and after its last up to ``word_tail``, stopping at the
    next word's first symbol and at the end of the ``speech`` region it ends in."""
    out = []
    for i, (start, end) in enumerate(words):
        limit = words[i + 1][0] if i + 1 < len(words) else total
        region = next((r for r in speech or () if r.start <= end <= r.end), None)
        if region is not None:
            limit = min(limit, region.end)
        begin = max(0.0, start - config.word_pad, words[i - 1][1] if i else 0.0)
        out.append((begin, min(total, max(end + config.word_pad,
                                          min(end + config.word_tail, limit)))))
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) index runs where ``mask`` is true."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _bridge(runs: list[tuple[int, int]], max_gap: int) -> list[tuple[int, int]]:
    """Join runs separated by at most ``max_gap`` frames (plosive closures, short pauses)."""
    out: list[tuple[int, int]] = []
    for a, b in runs:
        if out and a - out[-1][1] <= max_gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _merge_overlapping(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s in spans:
        if out and s.start <= out[-1].end:
            out[-1] = Span(out[-1].start, max(out[-1].end, s.end))
        else:
            out.append(s)
    return out
