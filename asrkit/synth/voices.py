"""Voices of the English speech synthesisers packaged by Debian, and running them.

Three engines, each a subprocess:

- ``espeak-ng`` (package ``espeak-ng``): formant synthesis; 8 English accents, each
  combinable with voice variants (``en-gb-scotland+f3``).
- ``flite`` (package ``flite``): voices built from recordings of one person each
  (``kal``, ``awb``, ``rms``, ``slt``).
- ``festival`` (package ``festival`` + one ``festvox-*`` package per voice).

A :class:`Voice` names its *speaker*: voices that share one (every accent of an espeak
variant; flite's and festival's ``kal``) must stay in the same train/valid/test split.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from ..errors import AsrkitError

ESPEAK, FLITE, FESTIVAL = "espeak-ng", "flite", "festival"
ENGINES = (ESPEAK, FLITE, FESTIVAL)
ENGINE_PACKAGES = {ESPEAK: "espeak-ng", FLITE: "flite", FESTIVAL: "festival"}

# The accents of espeak-ng's own English voices (its mbrola voices need extra packages).
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Variants that sound like people; the novelty ones (robots, whisper, 'Demonic') are left out.
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3",
                   "f4", "f5", "klatt", "klatt2", "klatt3", "Andy", "Annie", "aunty",
                   "belinda", "david", "edward", "grandma", "linda", "steph", "travis",
                   "victor", "max", "rob", "john", "paul")
ESPEAK_WPM = 175  # espeak-ng's default speaking rate, words per minute
ESPEAK_PITCH = 50  # espeak-ng's default pitch setting (0-99)
ESPEAK_PITCH_PER_SEMITONE = 6.0  # measured: -p 20/50/80 gives about 81/103/139 Hz

# flite voice → (speaker, mean F0 in Hz to shift from; None = pitch is not adjustable).
FLITE_VOICES = {"kal": ("kal", 95.0), "kal16": ("kal", 95.0), "awb": ("awb", 125.0),
                "rms": ("rms", None), "slt": ("slt", 170.0)}
# festival voice → (speaker, Debian package, mean F0 to shift from; None = not adjustable).
FESTIVAL_VOICES = {"kal_diphone": ("kal", "festvox-kallpc16k", 105.0),
                   "ked_diphone": ("ked", "festvox-kdlpc16k", 105.0),
                   "cmu_us_slt_arctic_hts": ("slt", "festvox-us-slt-hts", None)}
SUBPROCESS_TIMEOUT = 120  # seconds; a batch of festival utterances stays well below


class SynthesisError(AsrkitError):
    """A synthesiser is missing, a voice is unknown, or synthesis failed."""


@dataclass(frozen=True)
class Voice:
    """One synthesiser voice."""

    engine: str  # one of ENGINES
    name: str  # the engine's own name: "en-gb+f3", "slt", "kal_diphone"
    speaker: str  # voices sharing a speaker are never split apart

    @property
    def id(self) -> str:
        """``engine:name``, e.g. ``espeak-ng:en-gb+f3``; what ``--voices`` patterns match."""
        return f"{self.engine}:{self.name}"

    @property
    def kind(self) -> str:
        """``formant`` (espeak-ng, rule-based) or ``recorded`` (built from a person's speech)."""
        return "formant" if self.engine == ESPEAK else "recorded"


@dataclass(frozen=True)
class Prosody:
    """How to say a text, relative to the voice's own defaults."""

    rate: float = 1.0  # speaking-rate factor; 1.2 = 20 % faster
    pitch: float = 0.0  # semitones up (+) or down (-)


def available_engines() -> tuple[str, ...]:
    """Engines whose program is on the PATH."""
    return tuple(e for e in ENGINES if shutil.which(e) is not None)


def list_voices(engines: Sequence[str] | None = None) -> list[Voice]:
    """Every usable voice of the installed engines (or of ``engines``), sorted by id."""
    installed = available_engines()
    voices: list[Voice] = []
    for engine in engines or installed:
        if engine not in installed:
            continue
        voices += {ESPEAK: _espeak_voices, FLITE: _flite_voices,
                   FESTIVAL: _festival_voices}[engine]()
    return sorted(voices, key=lambda v: v.id)


def select_voices(patterns: Sequence[str] | None = None) -> list[Voice]:
    """Voices whose id matches any glob in ``patterns`` (all voices if ``None``).

    A pattern may name a whole engine (``flite``) or use wildcards (``espeak-ng:en-gb*``).
    Raises :class:`SynthesisError` naming the Debian package to install when a pattern
    asks for a missing engine or voice, or when nothing is installed at all.
    """
    voices = list_voices()
    if not patterns:
        if not voices:
            raise SynthesisError("no speech synthesiser is installed; install at least "
                                 "the Debian package espeak-ng (apt-get install espeak-ng)")
        return voices
    chosen: dict[str, Voice] = {}
    for pattern in patterns:
        glob = f"{pattern}:*" if pattern in ENGINES else pattern
        hits = [v for v in voices if fnmatch.fnmatchcase(v.id, glob)]
        if not hits:
            raise SynthesisError(_missing_voice_message(pattern))
        chosen.update((v.id, v) for v in hits)
    return sorted(chosen.values(), key=lambda v: v.id)


def synthesize(voice: Voice, text: str, prosody: Prosody = Prosody()) -> tuple[np.ndarray, int]:
    """Say ``text``; return ``(wave (samples,) float32, sample_rate)`` at the engine's rate."""
    return synthesize_many(voice, [(text, prosody)])[0]


def synthesize_many(voice: Voice, items: Sequence[tuple[str, Prosody]],
                    ) -> list[tuple[np.ndarray, int]]:
    """Say each ``(text, prosody)`` with ``voice``; see :func:`synthesize`.

    festival is slow to start, so all its items run in one process.
    """
    with tempfile.TemporaryDirectory(prefix="asrkit-synth-") as tmp:
        paths = [Path(tmp) / f"{i}.wav" for i in range(len(items))]
        if voice.engine == FESTIVAL:
            _run(["festival", "--pipe"], _festival_script(voice, items, paths), voice)
        else:
            for (text, prosody), path in zip(items, paths):
                if voice.engine == ESPEAK:
                    _run(_espeak_command(voice, prosody, path), _espeak_text(text), voice)
                else:
                    _run(_flite_command(voice, prosody, path, Path(tmp) / "text.txt", text),
                         None, voice)
        return [_read_wave(path, voice) for path in paths]


# --- espeak-ng ---------------------------------------------------------------------

def _espeak_voices() -> list[Voice]:
    accents = set(_espeak_names("--voices=en", r"^gmw/"))
    variants = {f.removeprefix("!v/") for f in _espeak_names("--voices=variant", r"^!v/")}
    return [Voice(ESPEAK, f"{a}+{v}" if v else a, f"espeak-{v or 'default'}")
            for a in ESPEAK_ACCENTS if a.lower() in accents
            for v in ESPEAK_VARIANTS if not v or v in variants]


@functools.lru_cache(maxsize=None)
def _espeak_names(option: str, file_pattern: str) -> tuple[str, ...]:
    """Language (for voices) or file (for variants) column of ``espeak-ng --voices``."""
    out = _list_output((ESPEAK, option))
    names = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        # columns: priority, language, age/gender, name, file, [other languages]
        if len(fields) >= 5 and re.match(file_pattern, fields[4]):
            names.append(fields[1].lower() if option == "--voices=en" else fields[4])
    return tuple(names)


def _espeak_command(voice: Voice, prosody: Prosody, wav: Path) -> list[str]:
    # The text goes in on stdin, so a leading '-' is never taken for an option.
    pitch = ESPEAK_PITCH + ESPEAK_PITCH_PER_SEMITONE * prosody.pitch
    return [ESPEAK, "-v", voice.name, "-s", str(round(ESPEAK_WPM * prosody.rate)),
            "-p", str(int(np.clip(round(pitch), 0, 99))), "-w", str(wav)]


def _espeak_text(text: str) -> str:
    """espeak-ng reads a lone capital A as the article (schwa); spelled-out letters
    need the letter name, so an ``A`` not followed by a longer word is said as 'ay'."""
    words = text.split()
    for i, w in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        if w == "A" and len(following) <= 1:
            words[i] = "[['eI]]"
    return " ".join(words)


# --- flite -------------------------------------------------------------------------

def _flite_voices() -> list[Voice]:
    out = _list_output((FLITE, "-lv"))
    names = out.split(":", 1)[-1].split()
    return [Voice(FLITE, n, FLITE_VOICES[n][0]) for n in names if n in FLITE_VOICES]


def _flite_command(voice: Voice, prosody: Prosody, wav: Path, text_file: Path,
                   text: str) -> list[str]:
    # Text goes through a file so a leading '-' is never taken for an option.
    text_file.write_text(text + "\n", encoding="utf-8")
    cmd = [FLITE, "-voice", voice.name, "-f", str(text_file), "-o", str(wav),
           "--setf", f"duration_stretch={1.0 / prosody.rate:.4f}"]
    f0 = FLITE_VOICES[voice.name][1]
    if f0 is not None:
        cmd += ["--setf", f"int_f0_target_mean={f0 * 2 ** (prosody.pitch / 12):.2f}"]
    return cmd


# --- festival ----------------------------------------------------------------------

def _festival_voices() -> list[Voice]:
    out = _list_output((FESTIVAL, "--pipe"), "(print (voice.list))\n")
    names = re.findall(r"[\w-]+", out)
    return [Voice(FESTIVAL, n, FESTIVAL_VOICES[n][0]) for n in names if n in FESTIVAL_VOICES]


def _festival_script(voice: Voice, items, paths) -> str:
    f0 = FESTIVAL_VOICES[voice.name][2]
    lines = [f"(voice_{voice.name})"]
    for (text, prosody), path in zip(items, paths):
        if voice.name.endswith("_hts"):
            # The HTS engine ignores Duration_Stretch and has no pitch control here.
            lines.append(f"(set! hts_engine_params (append {voice.name}::hts_engine_params "
                         f"(list (list \"-r\" {prosody.rate:.4f}))))")
        else:
            lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / prosody.rate:.4f})")
        if f0 is not None:
            target = f0 * 2 ** (prosody.pitch / 12)
            lines.append(f"(set! int_lr_params '((target_f0_mean {target:.2f}) (target_f0_std 14)"
                         " (model_f0_mean 170) (model_f0_std 34)))")
        lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "
                     f"{_scheme_string(str(path))} 'riff)")
    return "\n".join(lines) + "\n"


def _scheme_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- shared ------------------------------------------------------------------------

def _missing_voice_message(pattern: str) -> str:
    engine = pattern.split(":", 1)[0]
    name = pattern.split(":", 1)[1] if ":" in pattern else ""
    if engine in ENGINES and engine not in available_engines():
        package = ENGINE_PACKAGES[engine]
        if engine == FESTIVAL:
            package += " and a voice (" + ", ".join(p for _, p, _ in FESTIVAL_VOICES.values()) + ")"
        return (f"voices {pattern!r}: {engine} is not installed; install the Debian "
                f"package {package} (apt-get install ...)")
    if engine == FESTIVAL and name in FESTIVAL_VOICES:
        return (f"voice {pattern!r} is not installed; install the Debian package "
                f"{FESTIVAL_VOICES[name][1]}")
    return (f"no installed voice matches {pattern!r}; `asrkit data synth --list-voices` "
            "shows the voices (patterns look like 'espeak-ng:en-gb*' or 'flite:slt')")


@functools.lru_cache(maxsize=None)
def _list_output(cmd: tuple[str, ...], stdin: str | None = None) -> str:
    """Output of a listing command, run once per process."""
    return _run(list(cmd), stdin, None).decode("utf-8", "replace")


def _run(cmd: list[str], stdin: str | None, voice: Voice | None) -> bytes:
    who = voice.id if voice else cmd[0]
    try:
        done = subprocess.run(cmd, input=None if stdin is None else stdin.encode("utf-8"),
                              capture_output=True, timeout=SUBPROCESS_TIMEOUT)
    except FileNotFoundError:
        raise SynthesisError(f"{cmd[0]} is not installed; install the Debian package "
                             f"{ENGINE_PACKAGES.get(cmd[0], cmd[0])}") from None
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{who}: {cmd[0]} did not finish in {SUBPROCESS_TIMEOUT} s") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SynthesisError(f"{who}: {cmd[0]} failed (exit {done.returncode}): "
                             f"{err[-1][:200] if err else 'no message'}")
    return done.stdout


def _read_wave(path: Path, voice: Voice) -> tuple[np.ndarray, int]:
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise SynthesisError(f"{voice.id}: the synthesiser wrote no readable audio ({e})") from e
    return np.ascontiguousarray(data.mean(axis=1)), int(rate)
