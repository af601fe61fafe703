"""Channel augmentation: seeded, the SNR it claims, the band it claims, batch-independent."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from asrkit.audio import SAMPLE_RATE
from asrkit.augment import (ChannelAugmenter, clip, lowpass, mix_at_snr, narrowband,
                            reverberate, simulate_rir, telephone)
from asrkit.asr.config import load_config
from asrkit.errors import ConfigError
from asrkit.features import AugmentConfig
from asrkit.manifest import Utterance

SMALL_ROOMS = dict(rir_bank=2, reverb_rt60=(0.15, 0.25))  # quick to simulate


def speechlike(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """Broadband, speech-like test signal: harmonics plus white noise, syllable rhythm."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    harmonics = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 50))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.3 * envelope * (harmonics / 4 + 0.5 * rng.standard_normal(len(t)))).astype(np.float32)


def energy_above(wave: np.ndarray, hz: float) -> float:
    """Share of the signal's energy above ``hz``."""
    freqs, power = scipy.signal.welch(wave, fs=SAMPLE_RATE, nperseg=1024)
    return float(power[freqs > hz].sum() / power.sum())


@pytest.fixture(scope="module")
def babble_corpus(tmp_path_factory, write_wav):
    folder = tmp_path_factory.mktemp("babble")
    return [Utterance(f"u{i}", str(write_wav(folder / f"u{i}.wav", speechlike(1.0, seed=i))))
            for i in range(5)]


def everything(**changes) -> AugmentConfig:
    settings = dict(narrowband_prob=0.5, telephone_prob=0.3, noise_prob=0.8, reverb_prob=0.5,
                    gain_prob=0.5, clip_prob=0.3, **SMALL_ROOMS)
    return AugmentConfig(**{**settings, **changes})


def test_seeded_determinism(babble_corpus):
    aug = ChannelAugmenter(everything(), babble_corpus, seed=3)
    wave = speechlike()
    a = aug(wave, np.random.default_rng(11))
    b = aug(wave, np.random.default_rng(11))
    c = aug(wave, np.random.default_rng(12))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # A second augmenter from the same seed makes the same rooms and babble.
    again = ChannelAugmenter(everything(), babble_corpus, seed=3)
    assert np.array_equal(again(wave, np.random.default_rng(11)), a)


def test_batched_equals_single(babble_corpus):
    aug = ChannelAugmenter(everything(), babble_corpus, seed=0)
    waves = [speechlike(s, seed=i) for i, s in enumerate((0.7, 1.3, 1.0))]
    seeds = [[5, 0], [5, 1], [5, 2]]
    batched = aug.batch(waves, seeds)
    for w, s, out in zip(waves, seeds, batched):
        assert np.array_equal(out, aug(w, np.random.default_rng(s)))
    assert np.array_equal(aug.batch(waves[1:], seeds[1:])[0], batched[1])
    assert [len(o) for o in batched] == [len(w) for w in waves]  # labels still fit


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0])
@pytest.mark.parametrize("kind", ["colored", "babble"])
def test_snr_achieved(babble_corpus, snr, kind):
    config = AugmentConfig(noise_prob=1.0, noise_snr_db=(snr, snr), noise_types=(kind,))
    aug = ChannelAugmenter(config, babble_corpus, seed=1)
    wave = speechlike()
    for seed in range(4):
        noisy = aug(wave, np.random.default_rng(seed))
        added = noisy.astype(np.float64) - wave
        measured = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(added ** 2))
        assert abs(measured - snr) < 0.5


def test_folder_noise_snr(tmp_path, write_wav):
    write_wav(tmp_path / "noise" / "hum.wav", 0.1 * np.sin(np.arange(3000) * 0.07))
    config = AugmentConfig(noise_prob=1.0, noise_snr_db=(5.0, 5.0), noise_types=("folder",),
                           noise_dir=str(tmp_path / "noise"))
    wave = speechlike()
    noisy = ChannelAugmenter(config)(wave, np.random.default_rng(0))
    added = noisy.astype(np.float64) - wave
    assert abs(10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(added ** 2))
               - 5.0) < 0.5


def test_mix_at_snr_leaves_silence_alone():
    silence = np.zeros(1000, np.float32)
    assert np.array_equal(mix_at_snr(silence, np.ones(1000, np.float32), 10.0), silence)


@pytest.mark.parametrize("cutoff", [3400.0, 5000.0, 7000.0])
def test_lowpass_removes_energy_above_cutoff(cutoff):
    wave = speechlike()
    assert energy_above(wave, cutoff + 500) > 0.03
    assert energy_above(lowpass(wave, cutoff), cutoff + 500) < 1e-4


def test_narrowband_removes_the_band_above_4k():
    wave = speechlike()
    out = narrowband(wave)
    assert len(out) == len(wave)
    # The resampler's transition band ends by 4.5 kHz: 30 dB down there, 50 dB at 5 kHz.
    assert energy_above(out, 4500) < 1e-3 and energy_above(out, 5000) < 1e-5
    # ...while the band below is kept.
    assert np.corrcoef(lowpass(wave, 3500), lowpass(out, 3500))[0, 1] > 0.99


def test_telephone_band_and_codec():
    wave = speechlike()
    out = telephone(wave)
    assert len(out) == len(wave)
    assert energy_above(out, 4500) < 1e-3 and energy_above(out, 5000) < 1e-5
    freqs, power = scipy.signal.welch(out, fs=SAMPLE_RATE, nperseg=1024)
    assert power[freqs < 150].sum() / power.sum() < 0.01  # the band-pass's low edge
    assert len(np.unique(np.round(out / np.max(np.abs(out)), 6))) > 256  # resampled after


def test_augmenter_band_limit_applied():
    config = AugmentConfig(narrowband_prob=1.0, lowpass_hz=(3400.0, 3400.0))
    aug = ChannelAugmenter(config)
    wave = speechlike()
    for seed in range(6):  # both branches: 8 kHz round trip and low-pass
        assert energy_above(aug(wave, np.random.default_rng(seed)), 4500) < 1e-3


def test_reverberation_smears_and_keeps_length():
    rng = np.random.default_rng(0)
    rir = simulate_rir(0.4, (5.0, 4.0, 2.8), rng)
    assert np.argmax(np.abs(rir)) < 0.05 * SAMPLE_RATE and np.max(np.abs(rir)) == 1.0
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[100] = 0.5
    out = reverberate(click, rir)
    assert len(out) == len(click)
    assert np.max(np.abs(out)) == pytest.approx(0.5, rel=1e-5)
    late = out[100 + int(0.05 * SAMPLE_RATE):]
    assert np.sum(late ** 2) > 1e-3 * np.sum(out ** 2)  # a decaying tail after 50 ms


def test_recorded_rirs_are_used(tmp_path, write_wav):
    echo = np.zeros(800, np.float32)
    echo[0], echo[400] = 1.0, 0.5
    write_wav(tmp_path / "rirs" / "a.wav", echo)
    config = AugmentConfig(reverb_prob=1.0, rir_dir=str(tmp_path / "rirs"), rir_bank=1,
                           reverb_rt60=(0.15, 0.15))
    aug = ChannelAugmenter(config)
    assert len(aug.rirs) == 2
    np.testing.assert_allclose(aug.rirs[1], echo, atol=1e-4)


def test_clip_fraction():
    wave = speechlike()
    out = clip(wave, 0.01)
    top = np.max(np.abs(out))
    assert np.mean(np.abs(wave) > top) == pytest.approx(0.01, abs=0.002)


def test_off_by_default_and_gain():
    assert not AugmentConfig().channel
    wave = speechlike()
    config = AugmentConfig(gain_prob=1.0, gain_db=(-6.0, -6.0))
    out = ChannelAugmenter(config)(wave, np.random.default_rng(0))
    np.testing.assert_allclose(out, wave * 10 ** (-6 / 20), rtol=1e-5)


@pytest.mark.parametrize("override, message", [
    ("augment.noise_prob=1.5", "noise_prob"),
    ("augment.lowpass_hz=[7000, 3000]", "lowpass_hz"),
    ("augment.noise_types=[pink]", "noise_types"),
    ("augment.noise_dir=/tmp", "noise_dir"),
    ("augment.rir_bank=0", "rir_bank"),
    ("augment.clip_fraction=[0.1, 0.5]", "clip_fraction"),
])
def test_config_validation(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_config_round_trip():
    config = load_config(None, ["augment.noise_prob=0.5", "augment.noise_snr_db=[5, 15]",
                                "augment.reverb_prob=0.3"])
    assert config.augment.channel
    assert config.augment.noise_snr_db == (5, 15)


def test_missing_folders_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ChannelAugmenter(AugmentConfig(reverb_prob=1.0, rir_dir=str(tmp_path / "none")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no audio files"):
        ChannelAugmenter(AugmentConfig(noise_prob=1.0, noise_types=("folder",),
                                       noise_dir=str(tmp_path / "empty")))
