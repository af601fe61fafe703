"""Features: batched == single, frame counts, librosa agreement, statistics, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asrkit.errors import ConfigError
from asrkit.audio import change_speed
from asrkit.features import (BLOCK_FRAMES, LOG_FLOOR, AugmentConfig, FeatureConfig, FeatureExtractor,
                             Normalizer, RunningStats, compute_features, spec_augment)

SR = 16_000


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def noise(samples: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, samples).astype(np.float32)


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("kind", ["fbank", "mfcc"])
def test_padded_batch_equals_one_by_one(kind):
    config = FeatureConfig(kind=kind)
    lengths = [16000, 7001, 513, 200, 12345]  # 200 < n_fft: padded to one frame
    waves = [noise(n, seed=i) for i, n in enumerate(lengths)]
    batch = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(w) for w in waves],
                                            batch_first=True)
    feats, frame_lengths = FeatureExtractor(config)(batch, torch.tensor(lengths))
    assert feats.shape == (5, config.num_frames(16000), config.dim)
    for i, wave in enumerate(waves):
        single = compute_features(wave, config)
        assert frame_lengths[i] == single.shape[0] == config.num_frames(len(wave))
        torch.testing.assert_close(feats[i, :frame_lengths[i]], single, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["fbank", "mfcc"])
@pytest.mark.parametrize("frames", [2 * BLOCK_FRAMES, 2 * BLOCK_FRAMES + 1, 3 * BLOCK_FRAMES,
                                    5 * BLOCK_FRAMES + 7])
def test_long_recordings_analysed_in_blocks_equal_one_call(kind, frames):
    """Block edges fall on frames; the extra samples after the last frame are ignored."""
    config = FeatureConfig(kind=kind)
    extractor = FeatureExtractor(config)
    samples = (frames - 1) * config.hop_length + config.n_fft
    waves = torch.from_numpy(np.stack([noise(samples + 97, seed=1), noise(samples + 97, seed=2)]))
    feats, lengths = extractor(waves)
    whole = torch.log(extractor.mel(waves) + LOG_FLOOR).transpose(1, 2)
    if kind == "mfcc":
        whole = whole @ extractor.dct
    assert feats.shape == whole.shape == (2, frames, config.dim)
    assert lengths.tolist() == [frames, frames]
    torch.testing.assert_close(feats, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("samples", [1, 399, 400, 511, 512, 513, 671, 672, 16000, 16159,
                                     16160, 48000])
def test_frame_count_formula(samples):
    config = FeatureConfig()
    frames = compute_features(noise(samples), config).shape[0]
    assert frames == config.num_frames(samples)
    expected = max((samples - config.n_fft) // config.hop_length + 1, 1)
    assert frames == expected  # no centre padding: (samples - n_fft) // hop + 1
    assert int(config.num_frames(torch.tensor(samples))) == frames


def test_config_derived_sizes():
    config = FeatureConfig()
    assert (config.win_length, config.hop_length, config.n_fft) == (400, 160, 512)
    assert config.frames_per_second == 100
    assert FeatureConfig(sample_rate=8000).win_length == 200


@pytest.mark.parametrize("kind,dim", [("fbank", 80), ("mfcc", 40)])
def test_dimensions(kind, dim):
    config = FeatureConfig(kind=kind)
    assert config.dim == dim
    assert compute_features(noise(8000), config).shape == (config.num_frames(8000), dim)
    assert compute_features(noise(8000), FeatureConfig(kind=kind, n_mels=40, n_mfcc=13)
                            ).shape[1] == (13 if kind == "mfcc" else 40)


def test_mfcc_is_dct_of_log_mel():
    import scipy.fft
    wave = noise(6000)
    fbank = compute_features(wave, FeatureConfig()).numpy()
    mfcc = compute_features(wave, FeatureConfig(kind="mfcc", n_mfcc=20)).numpy()
    reference = scipy.fft.dct(fbank, type=2, norm="ortho", axis=1)[:, :20]
    np.testing.assert_allclose(mfcc, reference, atol=1e-3, rtol=1e-4)


def test_bad_feature_configs():
    with pytest.raises(ConfigError):
        FeatureConfig(kind="spectrogram")
    with pytest.raises(ConfigError):
        FeatureConfig(kind="mfcc", n_mels=20, n_mfcc=40)


def test_log_mel_agrees_with_librosa():
    """torchaudio's mel spectrogram (ours) against librosa's independent implementation."""
    import librosa
    config = FeatureConfig()
    wave = np.concatenate([tone(300, 0.3), noise(4000, seed=3), tone(2500, 0.2)])
    ours = compute_features(wave, config).numpy()  # (frames, n_mels), log(power + floor)
    mel = librosa.feature.melspectrogram(
        y=wave, sr=SR, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window="hann", center=False, power=2.0,
        n_mels=config.n_mels, htk=True, norm=None, fmin=0.0, fmax=SR / 2)
    reference = np.log(mel.T + LOG_FLOOR)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=2e-3, rtol=1e-4)


def test_running_stats_match_torch():
    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(n, 6, generator=gen) * 3 + 5 for n in (17, 1, 40, 9)]
    parts.append(torch.randn(2, 3, 6, generator=gen))  # any leading shape is flattened
    stats = RunningStats(6)
    for part in parts:
        stats.update(part)
    everything = torch.cat([p.reshape(-1, 6) for p in parts]).double()
    mean, std = stats.mean_std()
    assert stats.n == everything.shape[0] == 73
    torch.testing.assert_close(mean, everything.mean(0).float())
    torch.testing.assert_close(std, everything.std(0, unbiased=False).float())


def test_running_stats_constant_dimension_and_empty():
    stats = RunningStats(2)
    stats.update(torch.tensor([[1.0, 7.0], [3.0, 7.0]]))
    mean, std = stats.mean_std()
    assert mean.tolist() == [2.0, 7.0]
    assert std[0] == pytest.approx(1.0) and 0 < std[1] < 1e-4  # no division by zero later
    with pytest.raises(ValueError):
        RunningStats(3).mean_std()


def test_normalizer_whitens_the_statistics_it_was_fitted_on():
    feats = torch.randn(4, 50, 5) * torch.tensor([1.0, 2, 3, 4, 5]) + torch.arange(5.0)
    stats = RunningStats(5)
    stats.update(feats)
    norm = Normalizer(5)
    norm.fit(stats)
    out = norm(feats).reshape(-1, 5).double()
    torch.testing.assert_close(out.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(5, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    assert set(norm.state_dict()) == {"mean", "std"}  # travels inside the model file


# --- SpecAugment ---

SENTINEL = 123.0  # a value neither the data nor the mask fill can take


def _padded_batch(lengths, frames=120, dim=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), frames, dim, generator=gen)
    for b, n in enumerate(lengths):
        feats[b, n:] = SENTINEL
    return feats, torch.tensor(lengths)


def test_spec_augment_masks_only_inside_each_utterance():
    config = AugmentConfig(freq_masks=3, freq_mask_width=10, time_masks=3, time_mask_width=30)
    feats, lengths = _padded_batch([120, 60, 7, 1])
    for seed in range(20):
        out = spec_augment(feats, lengths, config, torch.Generator().manual_seed(seed),
                           fill=-5.0)
        changed = out != feats
        assert torch.all(out[changed] == -5.0)  # every change is the fill value
        for b, n in enumerate(lengths.tolist()):
            assert not changed[b, n:].any()  # padding untouched
            assert torch.all(out[b, n:] == SENTINEL)
        assert changed.any()
    assert torch.all(feats[1, 60:] == SENTINEL)  # the input is not modified in place


def test_spec_augment_time_masks_respect_the_ratio():
    config = AugmentConfig(freq_masks=0, time_masks=1, time_mask_width=100,
                           time_mask_max_ratio=0.2)
    feats, lengths = _padded_batch([100, 40])
    for seed in range(30):
        out = spec_augment(feats, lengths, config, torch.Generator().manual_seed(seed))
        masked_frames = (out != feats).all(dim=2).sum(dim=1)
        assert masked_frames[0] <= 20 and masked_frames[1] <= 8


def test_spec_augment_is_deterministic_for_a_seeded_generator():
    config = AugmentConfig()
    feats, lengths = _padded_batch([120, 90, 45])
    a = spec_augment(feats, lengths, config, torch.Generator().manual_seed(7))
    b = spec_augment(feats, lengths, config, torch.Generator().manual_seed(7))
    c = spec_augment(feats, lengths, config, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_spec_augment_disabled():
    config = AugmentConfig(freq_masks=0, time_masks=0)
    assert not config.enabled
    feats, lengths = _padded_batch([50, 20])
    assert torch.equal(spec_augment(feats, lengths, config), feats)


# --- speed perturbation ---

def dominant_frequency(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / SR)[np.argmax(spectrum)])


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_change_speed_changes_duration_by_the_factor(factor):
    wave = tone(400.0, 2.0)
    fast = change_speed(wave, factor)
    assert abs(len(fast) - len(wave) / factor) <= 2
    assert dominant_frequency(fast) == pytest.approx(400.0 * factor, abs=1.0)


def test_speed_factor_one_is_identity():
    wave = tone(400.0, 0.1)
    assert change_speed(wave, 1.0) is wave
