"""Test conditions: the same test audio, changed the way real recordings differ, so a
model can be scored as it will meet the world (``asrkit evaluate --condition``).

Names (comma-separated on the command line):

- ``clean``: the audio as recorded;
- ``8k``: resampled to 8 kHz and back (telephone bandwidth);
- ``telephone``: 300-3400 Hz band-pass and 8-bit mu-law at 8 kHz;
- ``noise<SNR>``, e.g. ``noise10``, ``noise0``, ``noise-5``: pink noise at that SNR (dB);
- ``reverb`` or ``reverb<RT60>``, e.g. ``reverb0.8``: a room with that reverberation
  time in seconds (0.5 by default).

Each utterance's change is seeded by the condition and the utterance id, so two runs
(or two models) hear exactly the same audio. None of it is what training heard:
training draws its randomness from ``(seed, epoch, batch)`` seeds, these from a
separate :data:`TEST_SEED_SPACE`; and the test rooms are larger than any training room
(:data:`TEST_ROOMS` against :data:`~asrkit.augment.TRAIN_ROOMS`), with their own
positions of talker and microphone.
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .augment import colored_noise, mix_at_snr, narrowband, reverberate, simulate_rir, telephone
from .errors import ConfigError

TEST_SEED_SPACE = 0x7E57  # first word of every test seed; training seeds never start so
TEST_ROOMS = ((8.5, 12.0), (6.5, 9.0), (3.3, 4.0))  # length, width, height (m)
TEST_ROOM_COUNT = 4  # rooms per RT60, drawn per utterance
DEFAULT_RT60 = 0.5  # seconds
PINK = 1.0  # spectral exponent of the test noise

_NAME = re.compile(r"^(clean|8k|telephone|noise(-?\d+(?:\.\d+)?)|reverb(\d+(?:\.\d+)?)?)$")


@dataclass(frozen=True)
class Condition:
    name: str
    kind: Literal["clean", "narrowband", "telephone", "noise", "reverb"]
    value: float = 0.0  # SNR in dB for noise, RT60 in seconds for reverb

    def apply(self, wave: np.ndarray, key: str) -> np.ndarray:
        """``wave (samples,)`` under this condition → ``(samples,)``; ``key`` (the
        utterance id) seeds the noise or the choice of room."""
        if self.kind == "clean":
            return wave
        if self.kind == "narrowband":
            return narrowband(wave)
        if self.kind == "telephone":
            return telephone(wave)
        rng = np.random.default_rng([TEST_SEED_SPACE, _crc(self.name), _crc(key)])
        if self.kind == "noise":
            return mix_at_snr(wave, colored_noise(len(wave), PINK, rng), self.value)
        rooms = evaluation_rooms(self.value)
        return reverberate(wave, rooms[int(rng.integers(len(rooms)))])


def parse_conditions(text: str) -> list[Condition]:
    """``"clean,8k,noise10,reverb"`` → conditions, in the order given."""
    out = []
    for name in (n.strip() for n in text.split(",")):
        m = _NAME.match(name)
        if not m:
            raise ConfigError(f"unknown condition {name!r}; use clean, 8k, telephone, "
                              "noise<SNR dB> (e.g. noise10) or reverb[<RT60 s>] (e.g. reverb0.8)")
        if name == "clean":
            out.append(Condition(name, "clean"))
        elif name == "8k":
            out.append(Condition(name, "narrowband"))
        elif name == "telephone":
            out.append(Condition(name, "telephone"))
        elif m[2] is not None:
            out.append(Condition(name, "noise", float(m[2])))
        else:
            rt60 = float(m[3]) if m[3] else DEFAULT_RT60
            if not 0.1 <= rt60 <= 2.0:
                raise ConfigError(f"condition {name!r}: RT60 must be between 0.1 and 2 s")
            out.append(Condition(name, "reverb", rt60))
    if len({c.name for c in out}) != len(out):
        raise ConfigError(f"conditions {text!r} name one condition twice")
    return out


@functools.lru_cache(maxsize=8)
def evaluation_rooms(rt60: float) -> tuple[np.ndarray, ...]:
    """The :data:`TEST_ROOM_COUNT` rooms of the ``reverb`` condition at ``rt60``."""
    rng = np.random.default_rng([TEST_SEED_SPACE, int(round(rt60 * 1000))])
    return tuple(simulate_rir(rt60, [rng.uniform(lo, hi) for lo, hi in TEST_ROOMS], rng)
                 for _ in range(TEST_ROOM_COUNT))


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))
