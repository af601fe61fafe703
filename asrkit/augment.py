"""Channel augmentation: clean close-talking recordings made to sound like other rooms,
noisy places, telephone lines and cheap microphones.

Waveforms are mono float32 ``(samples,)`` at :data:`~asrkit.audio.SAMPLE_RATE`; every
effect keeps the length, so labels and frame counts stay as they were. Randomness comes
only from the ``numpy.random.Generator`` passed in: training seeds one per utterance from
the batch's position in the epoch (see :mod:`asrkit.asr.training`), so a run and its
resumption see the same audio.

Libraries: pyroomacoustics simulates rooms (the image-source method, with absorption
set from a target RT60 by Sabine's formula), torchaudio does the band-limited resampling
and the mu-law codec, scipy.signal the IIR filters and FFT convolution. A room takes
0.1-2 s to simulate, far too slow per utterance, so :class:`ChannelAugmenter` makes a
bank of ``rir_bank`` rooms once per seed and draws from it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.signal
import torch
import torchaudio.functional as AF

from .audio import AUDIO_EXTENSIONS, SAMPLE_RATE, audio_info, load_audio, resample
from .errors import AsrkitError, ConfigError
from .features import AugmentConfig
from .manifest import Utterance

NARROWBAND_RATE = 8_000  # Hz: telephone and old VoIP sampling rate
TELEPHONE_BAND_HZ = (300.0, 3400.0)  # the ITU-T G.712 voice channel
MU_LAW_CHANNELS = 256  # 8-bit G.711 mu-law
FILTER_ORDER = 8  # Butterworth order of the low-pass: a steep but stable edge
SOUND_SPEED = 343.0  # m/s
TRAIN_ROOMS = ((3.0, 8.0), (3.0, 6.0), (2.4, 3.2))  # length, width, height ranges (m)
BABBLE_TRACKS = 8  # babble recordings made per run from training utterances
BABBLE_TALKERS = (3, 7)  # voices mixed into one babble track
BABBLE_SOURCES = 48  # training utterances read to make them
BABBLE_SECONDS = 8.0
MAX_FOLDER_RIRS = 500  # recorded impulse responses kept in memory
MAX_RIR_SECONDS = 2.0  # longer recorded responses are cut here


# -- stateless effects ------------------------------------------------------------

def lowpass(wave: np.ndarray, cutoff_hz: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(samples,)`` through a Butterworth low-pass at ``cutoff_hz`` (zero phase, so
    speech does not move in time)."""
    sos = _butter(FILTER_ORDER, cutoff_hz, "lowpass", sample_rate)
    return scipy.signal.sosfiltfilt(sos, wave).astype(np.float32)


def narrowband(wave: np.ndarray, rate: int = NARROWBAND_RATE) -> np.ndarray:
    """Down to ``rate`` and back up: what an 8 kHz recording played at 16 kHz holds
    (nothing above ``rate / 2``)."""
    return _fit(resample(resample(wave, SAMPLE_RATE, rate), rate, SAMPLE_RATE), len(wave))


def telephone(wave: np.ndarray) -> np.ndarray:
    """A G.711-like line: band-pass :data:`TELEPHONE_BAND_HZ`, 8 kHz, 8-bit mu-law, back
    to 16 kHz. The codec's quantisation noise follows the level, as on a real line."""
    sos = _butter(4, TELEPHONE_BAND_HZ, "bandpass", SAMPLE_RATE)
    band = scipy.signal.sosfiltfilt(sos, wave).astype(np.float32)
    low = resample(band, SAMPLE_RATE, NARROWBAND_RATE)
    peak = max(float(np.max(np.abs(low))), 1e-9)
    codes = AF.mu_law_encoding(torch.from_numpy(low / peak), MU_LAW_CHANNELS)
    decoded = AF.mu_law_decoding(codes, MU_LAW_CHANNELS).numpy() * peak
    return _fit(resample(decoded.astype(np.float32), NARROWBAND_RATE, SAMPLE_RATE), len(wave))


def mix_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wave + g * noise`` (both ``(samples,)``) with ``g`` set so that the mean power
    of ``wave`` over that of the added noise is ``snr_db``. Silence stays clean."""
    speech = float(np.mean(wave.astype(np.float64) ** 2))
    power = float(np.mean(noise.astype(np.float64) ** 2))
    if speech <= 0 or power <= 0:
        return wave
    g = np.sqrt(speech / 10 ** (snr_db / 10) / power)
    return (wave + g * noise).astype(np.float32)


def colored_noise(samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise ``(samples,)`` whose power falls as 1/f**exponent (0 white,
    1 pink, 2 brown)."""
    from .synth.effects import colored_noise as make
    return make(samples, exponent, rng)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve ``(samples,)`` with ``rir (taps,)``, keep the first ``samples`` (the
    tail past the end is cut so labels still fit) and restore the original peak."""
    out = scipy.signal.fftconvolve(wave.astype(np.float64), rir)[:len(wave)]
    top, before = float(np.max(np.abs(out))), float(np.max(np.abs(wave)))
    return (out * (before / top if top > 0 else 1.0)).astype(np.float32)


def apply_gain(wave: np.ndarray, gain_db: float) -> np.ndarray:
    return (wave * 10 ** (gain_db / 20)).astype(np.float32)


def clip(wave: np.ndarray, fraction: float) -> np.ndarray:
    """Hard-clip the loudest ``fraction`` of samples, as an overdriven input does."""
    if fraction <= 0 or wave.size == 0:
        return wave
    level = float(np.quantile(np.abs(wave), 1.0 - fraction))
    return np.clip(wave, -level, level).astype(np.float32) if level > 0 else wave


def simulate_rir(rt60: float, room: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """The impulse response ``(taps,)`` from a random talker to a random microphone in a
    shoebox ``room`` (length, width, height in metres) with reverberation time ``rt60``
    seconds, normalised to a peak of 1."""
    import pyroomacoustics as pra
    try:
        absorption, order = pra.inverse_sabine(rt60, list(room))
    except ValueError as e:  # a big room with short RT60 needs absorption above 1
        raise ConfigError(f"no {list(room)} m room has RT60 {rt60}s ({e})") from None
    sim = pra.ShoeBox(list(room), fs=SAMPLE_RATE, materials=pra.Material(absorption),
                      max_order=order, air_absorption=False)
    margin = 0.5  # talker and microphone keep clear of the walls
    source = [rng.uniform(margin, d - margin) for d in room[:2]] + [rng.uniform(1.2, 1.9)]
    mic = [rng.uniform(margin, d - margin) for d in room[:2]] + [rng.uniform(0.7, 1.5)]
    sim.add_source(source)
    sim.add_microphone(mic)
    sim.compute_rir()
    rir = np.asarray(sim.rir[0][0], dtype=np.float64)
    return (rir / max(np.max(np.abs(rir)), 1e-12)).astype(np.float32)


@functools.lru_cache(maxsize=4)
def rir_bank(count: int, rt60: tuple[float, float], seed: int,
             rooms: tuple[tuple[float, float], ...] = TRAIN_ROOMS) -> tuple[np.ndarray, ...]:
    """``count`` simulated rooms for ``seed`` (made once per process and reused)."""
    rng = np.random.default_rng([seed, 0x5EED])
    out = []
    for _ in range(count):
        dims = [rng.uniform(lo, hi) for lo, hi in rooms]
        out.append(simulate_rir(float(rng.uniform(*rt60)), dims, rng))
    return tuple(out)


def audio_files(folder: str | Path, what: str) -> list[Path]:
    """The audio files under ``folder`` (recursively, sorted); an error if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: {what} folder does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise ConfigError(f"{folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this "
                          f"{what} folder")
    return files


def _butter(order: int, cutoff, kind: str, sample_rate: int) -> np.ndarray:
    return scipy.signal.butter(order, cutoff, kind, fs=sample_rate, output="sos")


def _fit(wave: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad to ``length`` (resampling round trips may be off by a sample)."""
    if len(wave) >= length:
        return np.ascontiguousarray(wave[:length], dtype=np.float32)
    return np.concatenate([wave, np.zeros(length - len(wave), np.float32)])


def _segment(source: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample stretch of ``source``, looped when it is shorter."""
    if len(source) < length:
        source = np.tile(source, length // max(len(source), 1) + 1)
    start = int(rng.integers(0, len(source) - length + 1))
    return source[start:start + length]


# -- the augmenter ----------------------------------------------------------------

class ChannelAugmenter:
    """Applies the channel effects of an :class:`~asrkit.features.AugmentConfig`.

    ``babble_sources`` are training utterances that babble is mixed from;
    without them babble is left out of the noise types. Banks of rooms and babble are
    made once from ``seed``; each call then draws only from the generator it is given.
    """

    def __init__(self, config: AugmentConfig, babble_sources: Sequence[Utterance] = (),
                 seed: int = 0):
        self.config, self.seed = config, seed
        self.noise_types = [t for t in config.noise_types
                            if t != "babble" or babble_sources]
        self._babble_sources = list(babble_sources)
        self._noise_files = audio_files(config.noise_dir, "noise") if config.noise_dir else []
        self._folder_rirs = _load_rirs(config.rir_dir) if config.rir_dir else ()

    @functools.cached_property
    def rirs(self) -> tuple[np.ndarray, ...]:
        return rir_bank(self.config.rir_bank, tuple(self.config.reverb_rt60),
                        self.seed) + self._folder_rirs

    @functools.cached_property
    def babble(self) -> list[np.ndarray]:
        return _make_babble(self._babble_sources, np.random.default_rng([self.seed, 0xBAB]))

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One utterance ``(samples,)`` → augmented ``(samples,)``."""
        c = self.config
        gates = rng.random(6)  # drawn together, so one effect never shifts another's draws
        if gates[0] < c.reverb_prob:
            wave = reverberate(wave, self.rirs[int(rng.integers(len(self.rirs)))])
        if gates[1] < c.noise_prob:
            wave = mix_at_snr(wave, self.noise(len(wave), rng), rng.uniform(*c.noise_snr_db))
        if gates[2] < c.narrowband_prob:
            wave = narrowband(wave) if rng.random() < 0.5 else \
                lowpass(wave, rng.uniform(*c.lowpass_hz))
        if gates[3] < c.telephone_prob:
            wave = telephone(wave)
        if gates[4] < c.gain_prob:
            wave = apply_gain(wave, rng.uniform(*c.gain_db))
        if gates[5] < c.clip_prob:
            wave = clip(wave, rng.uniform(*c.clip_fraction))
        return wave

    def batch(self, waves: Sequence[np.ndarray], seeds: Sequence[int]) -> list[np.ndarray]:
        """Each ``waves[i] (samples_i,)`` augmented with its own generator from
        ``seeds[i]``: the same result as one at a time, whatever the batch."""
        return [self(w, np.random.default_rng(s)) for w, s in zip(waves, seeds)]

    def noise(self, samples: int, rng: np.random.Generator) -> np.ndarray:
        """Noise ``(samples,)`` of a random type among ``noise_types``."""
        kind = self.noise_types[int(rng.integers(len(self.noise_types)))]
        if kind == "babble":
            return _segment(self.babble[int(rng.integers(len(self.babble)))], samples, rng)
        if kind == "folder":
            return self._folder_noise(samples, rng)
        return colored_noise(samples, float(rng.uniform(0.0, 2.0)), rng)

    def _folder_noise(self, samples: int, rng: np.random.Generator) -> np.ndarray:
        """A random stretch of a random file; only that stretch is read (MUSAN holds
        hours of noise, too much to keep in memory)."""
        path = self._noise_files[int(rng.integers(len(self._noise_files)))]
        info = audio_info(path)
        need = samples / SAMPLE_RATE
        start = rng.uniform(0.0, max(info.duration - need, 0.0))
        noise = load_audio(path, offset=start, duration=min(need, info.duration - start))
        return _segment(noise, samples, rng)


def _make_babble(sources: Sequence[Utterance], rng: np.random.Generator) -> list[np.ndarray]:
    """:data:`BABBLE_TRACKS` tracks, each several training utterances talking at once."""
    chosen = rng.choice(len(sources), size=min(BABBLE_SOURCES, len(sources)), replace=False)
    voices = []
    for i in sorted(chosen.tolist()):
        try:
            u = sources[i]
            voices.append(load_audio(u.audio, offset=u.offset, duration=u.duration,
                                     normalize=True))
        except AsrkitError:
            continue  # an unreadable file is reported by the training loop itself
    if not voices:
        raise AsrkitError("babble noise: none of the training audio could be read")
    length = int(BABBLE_SECONDS * SAMPLE_RATE)
    tracks = []
    for _ in range(BABBLE_TRACKS):
        talkers = int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))
        track = np.zeros(length, np.float64)
        for _ in range(talkers):
            track += _segment(voices[int(rng.integers(len(voices)))], length, rng)
        tracks.append(track.astype(np.float32))
    return tracks


def _load_rirs(folder: str) -> tuple[np.ndarray, ...]:
    out = []
    for path in audio_files(folder, "room impulse response")[:MAX_FOLDER_RIRS]:
        rir = load_audio(path)[:int(MAX_RIR_SECONDS * SAMPLE_RATE)]
        out.append((rir / max(float(np.max(np.abs(rir))), 1e-12)).astype(np.float32))
    return tuple(out)
