"""Making clean synthetic speech sound recorded: speed, room, noise, silence, level.

Stateless numpy functions on mono waveforms ``(samples,)`` at :data:`SAMPLE_RATE`
unless a rate is given. Randomness comes only from the ``rng`` passed in, so a seed
reproduces every sample.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.signal

from ..audio import SAMPLE_RATE, peak_gain

FRAME = SAMPLE_RATE // 100  # 10 ms frames for finding where speech starts and ends
SILENCE_DB = -40.0  # frames this far below the loudest one count as silence
DIRECT_PATH_SECONDS = 0.003  # the reverberant tail starts this long after the direct sound
DECAY_60DB = np.log(1000.0)  # amplitude decay (nepers) over RT60: 60 dB = a factor of 1000


def trim_silence(wave: np.ndarray, threshold_db: float = SILENCE_DB) -> np.ndarray:
    """Cut leading and trailing 10 ms frames quieter than ``threshold_db`` below the
    loudest frame; synthesisers pad their output with varying amounts of silence."""
    n = len(wave) // FRAME
    if n == 0:
        return wave
    power = np.mean(wave[: n * FRAME].reshape(n, FRAME).astype(np.float64) ** 2, axis=1)
    if power.max() <= 0:
        return wave[:0]
    active = np.flatnonzero(power >= power.max() * 10 ** (threshold_db / 10))
    return wave[active[0] * FRAME: (active[-1] + 1) * FRAME]


def room_impulse_response(rt60: float, rng: np.random.Generator, drr_db: float = 4.0,
                          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A synthetic room: direct sound plus exponentially decaying noise ``(taps,)``.

    ``rt60`` (seconds) is the time the tail takes to fall by 60 dB; ``drr_db`` is the
    direct-to-reverberant energy ratio (lower = farther from the microphone). This is
    the statistical model of late reverberation (Polack), enough to smear speech the
    way real rooms do without needing recorded impulse responses.
    """
    taps = max(int(rt60 * sample_rate), 2)
    start = int(DIRECT_PATH_SECONDS * sample_rate)
    t = np.arange(taps - start) / sample_rate
    tail = rng.standard_normal(taps - start) * np.exp(-DECAY_60DB * t / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(np.sum(tail ** 2), 1e-12))
    ir = np.zeros(taps)
    ir[0] = 1.0
    ir[start:] += tail
    return ir


def reverberate(wave: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolve ``(samples,)`` with ``ir (taps,)``; the result keeps the decaying tail
    ``(samples + taps - 1,)``."""
    return scipy.signal.fftconvolve(wave.astype(np.float64), ir).astype(np.float32)


def colored_noise(samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise ``(samples,)`` whose power falls as 1/f**exponent
    (0 = white, 1 = pink, 2 = brown): hum, fans and hiss have different tilts."""
    n = scipy.fft.next_fast_len(max(samples, 2), real=True)  # odd lengths make slow FFTs
    spectrum = scipy.fft.rfft(rng.standard_normal(n))
    freqs = scipy.fft.rfftfreq(n)
    freqs[0] = freqs[1]  # no infinite gain at DC
    noise = scipy.fft.irfft(spectrum / freqs ** (exponent / 2), n=n)[:samples]
    noise -= noise.mean()
    return (noise / max(np.sqrt(np.mean(noise ** 2)), 1e-12)).astype(np.float32)


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float, speech_power: float,
              ) -> np.ndarray:
    """``wave + g * noise`` with ``g`` chosen so that ``speech_power`` over the noise's
    mean power is ``snr_db``. Both arrays are ``(samples,)``."""
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    gain = np.sqrt(speech_power / (10 ** (snr_db / 10)) / max(noise_power, 1e-20))
    return (wave + gain * noise).astype(np.float32)


def pad_silence(wave: np.ndarray, lead: int, trail: int) -> np.ndarray:
    """``lead`` zeros, the wave, ``trail`` zeros."""
    return np.concatenate([np.zeros(lead, np.float32), wave, np.zeros(trail, np.float32)])


def set_peak(wave: np.ndarray, peak: float) -> np.ndarray:
    """Scale so the largest magnitude is ``peak`` (of full scale); silence stays silent."""
    gain = peak_gain(float(np.max(np.abs(wave))) if wave.size else 0.0, peak)
    return (wave * gain).astype(np.float32)
