"""A labelled synthetic speech corpus: plan every utterance from a seed, then render.

Layout of the output folder::

    synth.json                  settings, and which speakers/voices are in which split
    train.jsonl valid.jsonl test.jsonl     manifests (asrkit.manifest format)
    wav/<split>/<id>.wav        16 kHz mono 16-bit PCM

Splits are made by *speaker*, so no test voice is ever heard in training. Every random
choice is drawn up front from the seed (:func:`plan_corpus`), and each utterance renders
from its own seed, so a corpus is byte-identical however it is scheduled, interrupted
and resumed. WAVs and manifests are written atomically; a re-run skips finished WAVs.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from ..audio import SAMPLE_RATE, audio_info, change_speed
from ..errors import ConfigError
from ..io import atomic_open, atomic_write_json
from ..manifest import Utterance, write_manifest
from . import effects
from .texts import TextSource, text_source
from .voices import Prosody, SynthesisError, Voice, select_voices, synthesize_many

SPLITS = ("train", "valid", "test")
SETTINGS_FILE = "synth.json"
JOB_SIZE = 16  # utterances per worker task; festival pays its start-up once per task
Progress = Callable[[int, int], None]  # (utterances done, total)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides a corpus's content; stored in ``synth.json``."""

    n_utterances: int = 2400
    texts: str = "mixed"  # built-in set: mixed, digits, letters, commands
    words_file: str | None = None  # one word per line; utterances are random strings
    sentences_file: str | None = None  # one utterance per line
    min_words: int = 1
    max_words: int = 4
    voices: tuple[str, ...] = ()  # voice-id globs ("espeak-ng:en-gb*", "flite"); () = all
    valid_fraction: float = 0.1  # of utterances, and of speakers of each kind
    test_fraction: float = 0.1
    rate_range: tuple[float, float] = (0.85, 1.25)  # speaking-rate factor
    pitch_range: tuple[float, float] = (-3.0, 3.0)  # semitones
    speed_range: tuple[float, float] = (0.92, 1.08)  # speed perturbation factor
    # Training utterances only: formants and pitch rise by this factor at an unchanged
    # tempo, as from a shorter vocal tract (the synthesiser speaks that much slower, the
    # audio is then played that much faster). The recorded voices are few and mostly
    # adult men; shifted up they stand in for women and children. Held-out voices are
    # left as the synthesisers make them.
    vocal_tract_range: tuple[float, float] = (1.0, 1.3)
    # dB; None = no noise at all. The quietest default still adds a noise floor: real
    # recordings never fall to digital silence, and a model should not learn that they do.
    snrs: tuple[float | None, ...] = (40.0, 30.0, 20.0, 15.0, 10.0)
    noise_color_range: tuple[float, float] = (0.0, 2.0)  # 0 white, 1 pink, 2 brown
    reverb_probability: float = 0.3
    rt60_range: tuple[float, float] = (0.15, 0.6)  # seconds
    drr_range: tuple[float, float] = (0.0, 10.0)  # direct-to-reverberant ratio, dB
    silence_range: tuple[float, float] = (0.05, 0.4)  # seconds before and after speech
    peak_range: tuple[float, float] = (0.2, 0.9)  # output level, fraction of full scale
    seed: int = 0

    def __post_init__(self):
        if self.n_utterances < 1:
            raise ConfigError(f"n_utterances must be at least 1, got {self.n_utterances}")
        fractions = (self.valid_fraction, self.test_fraction)
        if min(fractions) < 0 or sum(fractions) >= 1:
            raise ConfigError("valid_fraction and test_fraction must be >= 0 and sum to "
                              f"less than 1, got {self.valid_fraction} and {self.test_fraction}")
        for name in ("rate_range", "speed_range", "vocal_tract_range", "rt60_range",
                     "peak_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ConfigError(f"{name} must be (low, high) with 0 < low <= high")
        if not self.snrs:
            raise ConfigError("snrs must hold at least one value (None = clean)")


@dataclass(frozen=True)
class PlannedUtterance:
    """Every decision about one utterance, drawn before any audio is made."""

    id: str
    split: str
    text: str
    voice: Voice
    prosody: Prosody
    speed: float  # tempo, pitch and formants together
    rt60: float | None  # seconds; None = dry
    drr_db: float
    snr: float | None  # dB; None = clean
    noise_color: float
    lead: float  # seconds of silence before the speech
    trail: float  # ... and after
    peak: float
    seed: int  # for the noise and room samples
    vocal_tract: float = 1.0  # formant and pitch factor at unchanged tempo

    @property
    def said(self) -> Prosody:
        """What to ask the synthesiser for: the prosody, slowed by the vocal-tract
        factor that :func:`render` speeds the audio back up by."""
        return Prosody(self.prosody.rate / self.vocal_tract, self.prosody.pitch)

    @property
    def path(self) -> str:
        """Where the WAV goes, relative to the corpus folder."""
        return f"wav/{self.split}/{self.id}.wav"


@dataclass(frozen=True)
class SynthCorpus:
    """What :func:`synth_corpus` made."""

    out_dir: Path
    manifests: dict[str, Path]  # split → manifest path (empty splits are left out)
    speakers: dict[str, tuple[str, ...]]  # split → speakers
    voices: dict[str, tuple[str, ...]]  # split → voice ids
    utterances: dict[str, int] = field(default_factory=dict)  # split → count
    seconds: dict[str, float] = field(default_factory=dict)  # split → audio duration
    generated: int = 0  # WAVs written by this run
    skipped: int = 0  # WAVs already there from an earlier run


def plan_corpus(config: SynthConfig, voices: Sequence[Voice] | None = None,
                source: TextSource | None = None,
                ) -> tuple[list[PlannedUtterance], dict[str, list[str]]]:
    """Draw every utterance of the corpus from ``config.seed``.

    Returns the plan and the speakers of each split. ``voices`` defaults to the
    installed voices matching ``config.voices``.
    """
    voices = list(voices) if voices is not None else select_voices(config.voices or None)
    source = source or _source(config)
    rng = np.random.default_rng(config.seed)
    # A stream of its own, so the vocal-tract shift leaves every other draw as it was.
    shift_rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(1)[0])
    speakers = split_speakers(voices, config.valid_fraction, config.test_fraction, rng)
    by_speaker = defaultdict(list)
    for v in voices:
        by_speaker[v.speaker].append(v)
    texts = source.texts(config.n_utterances, rng)
    plan = []
    for split, count in zip(SPLITS, _split_counts(config)):
        order = [speakers[split][i] for i in rng.permutation(len(speakers[split]))]
        for j in range(count):
            group = by_speaker[order[j % len(order)]]
            voice = group[_pick(rng, len(group))]
            shift = float(shift_rng.uniform(*config.vocal_tract_range))
            plan.append(_draw_utterance(config, f"synth-{len(plan):05d}", split,
                                        texts[len(plan)], voice, rng,
                                        round(shift, 4) if split == "train" else 1.0))
    return plan, speakers


def split_speakers(voices: Sequence[Voice], valid_fraction: float, test_fraction: float,
                   rng: np.random.Generator) -> dict[str, list[str]]:
    """Assign whole speakers to splits, separately for each voice kind (formant and
    recorded), so every split hears both kinds when there are enough speakers."""
    kinds = defaultdict(set)
    for v in voices:
        kinds[v.kind].add(v.speaker)
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for kind in sorted(kinds):
        names = sorted(kinds[kind])
        names = [names[i] for i in rng.permutation(len(names))]
        n_test = min(_share(len(names), test_fraction), len(names) - 1)
        n_valid = min(_share(len(names), valid_fraction), len(names) - 1 - n_test)
        splits["test"] += names[:n_test]
        splits["valid"] += names[n_test:n_test + n_valid]
        splits["train"] += names[n_test + n_valid:]
    for split, fraction in (("valid", valid_fraction), ("test", test_fraction)):
        if fraction > 0 and not splits[split]:
            have = sum(map(len, kinds.values()))
            raise ConfigError(f"the chosen voices have too few speakers to hold some out for "
                              f"{split} (need 3 of one kind, have {have}); "
                              f"choose more voices or set the {split} fraction to 0")
    return {s: sorted(names) for s, names in splits.items()}


def synth_corpus(out_dir: str | os.PathLike, config: SynthConfig = SynthConfig(),
                 workers: int | None = None, progress: Progress | None = None) -> SynthCorpus:
    """Generate (or finish generating) the corpus of ``config`` in ``out_dir``.

    Runs the synthesisers in ``workers`` threads (default: one per CPU). A folder
    holding a corpus made with other settings is refused with :class:`ConfigError`.
    """
    out = Path(out_dir)
    voices = select_voices(config.voices or None)
    source = _source(config)
    plan, speakers = plan_corpus(config, voices, source)
    split_voices = {s: tuple(sorted({p.voice.id for p in plan if p.split == s})) for s in SPLITS}
    _check_settings(out, _settings(config, source, speakers, split_voices))
    todo = [p for p in plan if not (out / p.path).exists()]
    _render_all(out, todo, len(plan), workers or os.cpu_count() or 1, progress)
    manifests, counts, seconds = {}, {}, {}
    for split in SPLITS:
        utts = [Utterance(p.id, str(out / p.path), p.text,
                          duration=audio_info(out / p.path).duration, speaker=p.voice.id)
                for p in plan if p.split == split]
        if utts:
            manifests[split] = out / f"{split}.jsonl"
            write_manifest(manifests[split], utts)
            counts[split], seconds[split] = len(utts), sum(u.duration for u in utts)
    return SynthCorpus(out, manifests, {s: tuple(v) for s, v in speakers.items()},
                       split_voices, counts, seconds, len(todo), len(plan) - len(todo))


def render(item: PlannedUtterance, wave: np.ndarray, rate: int) -> np.ndarray:
    """Synthesiser output ``(samples,)`` at ``rate`` → the corpus waveform at 16 kHz.

    Order matters: the SNR is measured against the speech as the room made it, before
    the added silence, so quiet padding does not make the noise look smaller.
    """
    room_rng, noise_rng = (np.random.default_rng(s)
                           for s in np.random.SeedSequence(item.seed).spawn(2))
    x = effects.trim_silence(change_speed(wave, item.speed * item.vocal_tract, rate,
                                          SAMPLE_RATE))
    if x.size == 0:
        raise SynthesisError(f"{item.voice.id}: produced no sound for {item.text!r}")
    if item.rt60 is not None:
        x = effects.reverberate(x, effects.room_impulse_response(item.rt60, room_rng, item.drr_db))
    speech_power = float(np.mean(x.astype(np.float64) ** 2))
    x = effects.pad_silence(x, round(item.lead * SAMPLE_RATE), round(item.trail * SAMPLE_RATE))
    if item.snr is not None:
        noise = effects.colored_noise(len(x), item.noise_color, noise_rng)
        x = effects.add_noise(x, noise, item.snr, speech_power)
    return effects.set_peak(x, item.peak)


def write_wav(path: str | os.PathLike, wave: np.ndarray) -> None:
    """Write ``(samples,)`` at 16 kHz as 16-bit PCM WAV, atomically."""
    with atomic_open(path, "wb") as f:
        sf.write(f, np.asarray(wave, np.float32), SAMPLE_RATE, format="WAV", subtype="PCM_16")


def _draw_utterance(config: SynthConfig, uid: str, split: str, text: str, voice: Voice,
                    rng: np.random.Generator, vocal_tract: float) -> PlannedUtterance:
    # Always the same draws in the same order, so changing one setting (say, the SNRs)
    # leaves every other choice of every utterance as it was.
    u = lambda bounds: float(rng.uniform(*bounds))  # noqa: E731
    prosody = Prosody(round(u(config.rate_range), 4), round(u(config.pitch_range), 3))
    speed = round(u(config.speed_range), 4)
    reverb = rng.random() < config.reverb_probability
    rt60, drr = round(u(config.rt60_range), 3), round(u(config.drr_range), 2)
    snr = config.snrs[_pick(rng, len(config.snrs))]
    color = round(u(config.noise_color_range), 3)
    lead, trail = round(u(config.silence_range), 3), round(u(config.silence_range), 3)
    peak = round(u(config.peak_range), 3)
    seed = int(rng.integers(2**31))
    return PlannedUtterance(uid, split, text, voice, prosody, speed, rt60 if reverb else None,
                            drr, None if snr is None else float(snr), color, lead, trail,
                            peak, seed, vocal_tract)


def _render_all(out: Path, todo: list[PlannedUtterance], total: int, workers: int,
                progress: Progress | None) -> None:
    by_voice = defaultdict(list)
    for p in todo:
        by_voice[p.voice].append(p)
    jobs = [items[i:i + JOB_SIZE] for items in by_voice.values()
            for i in range(0, len(items), JOB_SIZE)]
    done = total - len(todo)
    if progress:
        progress(done, total)
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_render_job, out, job) for job in jobs]
        try:
            for future in cf.as_completed(futures):
                done += future.result()
                if progress:
                    progress(done, total)
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _render_job(out: Path, items: list[PlannedUtterance]) -> int:
    waves = synthesize_many(items[0].voice, [(p.text, p.said) for p in items])
    for item, (wave, rate) in zip(items, waves):
        write_wav(out / item.path, render(item, wave, rate))
    return len(items)


def _pick(rng: np.random.Generator, n: int) -> int:
    """A uniform index below ``n`` that uses one draw whatever ``n`` is (numpy's
    ``integers`` skips the draw when ``n`` is 1, which would shift every later choice)."""
    return min(int(rng.random() * n), n - 1)


def _source(config: SynthConfig) -> TextSource:
    return text_source(config.texts, config.words_file, config.sentences_file,
                       config.min_words, config.max_words)


def _split_counts(config: SynthConfig) -> tuple[int, int, int]:
    n_valid = round(config.n_utterances * config.valid_fraction)
    n_test = round(config.n_utterances * config.test_fraction)
    return config.n_utterances - n_valid - n_test, n_valid, n_test


def _share(n_speakers: int, fraction: float) -> int:
    """Speakers of one kind to hold out: none if too few to also keep one for training."""
    if fraction <= 0 or n_speakers < 3:
        return 0
    return max(1, round(n_speakers * fraction))


def _settings(config: SynthConfig, source: TextSource, speakers, voices) -> dict:
    return {"config": asdict(config), "text_digest": source.digest,
            "splits": {s: {"speakers": list(speakers[s]), "voices": list(voices[s])}
                       for s in SPLITS}}


def _check_settings(out: Path, settings: dict) -> None:
    """Refuse to mix two corpora in one folder; record the settings of a new one."""
    path = out / SETTINGS_FILE
    settings = json.loads(json.dumps(settings))  # tuples → lists, as stored
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: unreadable ({e}); delete the folder or choose "
                              "another") from e
        if old != settings:
            differ = sorted(k for k in {**old.get("config", {}), **settings["config"]}
                            if old.get("config", {}).get(k) != settings["config"].get(k))
            what = ", ".join(differ) or "text file content or installed voices"
            raise ConfigError(f"{out}: holds a corpus made with other settings ({what}); "
                              "use the same settings to resume, or another folder")
        return
    atomic_write_json(path, settings)
