"""Waveforms → log-mel (or MFCC) feature frames, normalisation and augmentation.

Shapes: waveforms ``(batch, samples)`` at :data:`~asrkit.audio.SAMPLE_RATE`,
features ``(batch, frames, feats)``. Frames are computed without centre padding, so a
frame depends only on samples inside the utterance: features of a padded batch equal
the features of each utterance alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torchaudio
from torch import nn

from .audio import SAMPLE_RATE
from .errors import ConfigError

WIN_MS = 25  # analysis window, milliseconds
HOP_MS = 10  # frame shift, milliseconds
LOG_FLOOR = 1e-6  # added before the log so silence stays finite
# Frames analysed per STFT call. A long recording's spectrum in one call leaves the
# cache (10 minutes: 60,000 frames x 257 complex bins); in blocks of this many frames
# the same features took a third of the time (0.24 s against 0.80 s, one thread).
BLOCK_FRAMES = 500


def frame_positions(x: torch.Tensor) -> torch.Tensor:
    """Step numbers ``(batch, steps)`` (int64) of ``x (batch, steps)`` or ``(batch, steps,
    dim)``, counted from the data rather than from ``x.shape`` so a traced (exported)
    model keeps the number of steps dynamic."""
    row = x[:, :, 0] if x.dim() == 3 else x
    return torch.ones_like(row, dtype=torch.long).cumsum(1) - 1


def frame_mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(batch, steps)`` bool: True for the steps (samples, frames) of ``x (batch,
    steps)`` or ``(batch, steps, dim)`` inside each row's length ``lengths (batch,)``.
    The one padding mask of asrkit's padded batches."""
    return frame_positions(x) < lengths.to(x.device)[:, None]


@dataclass(frozen=True)
class FeatureConfig:
    kind: Literal["fbank", "mfcc"] = "fbank"
    n_mels: int = 80
    n_mfcc: int = 40  # only for kind="mfcc"
    sample_rate: int = SAMPLE_RATE
    win_ms: float = WIN_MS
    hop_ms: float = HOP_MS
    gain_normalize: bool = True  # scale each recording's peak before analysis

    def __post_init__(self):
        if self.kind not in ("fbank", "mfcc"):
            raise ConfigError(f"features.kind must be 'fbank' or 'mfcc', not {self.kind!r}")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ConfigError("features.n_mfcc cannot exceed features.n_mels")

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def n_fft(self) -> int:
        """FFT size: the window length rounded up to a power of two. Without centre
        padding each frame spans ``n_fft`` samples, so this sets the frame count."""
        return 2 ** math.ceil(math.log2(self.win_length))

    @property
    def dim(self) -> int:
        """Feature dimension per frame."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, samples: int | torch.Tensor):
        """Frames produced from ``samples`` samples (at least one: short input is padded)."""
        if isinstance(samples, torch.Tensor):
            return torch.clamp((samples - self.n_fft) // self.hop_length + 1, min=1)
        return max((samples - self.n_fft) // self.hop_length + 1, 1)


class FeatureExtractor(nn.Module):
    """Batched log-mel / MFCC extraction (no learnable state)."""

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.n_fft, win_length=config.win_length,
            hop_length=config.hop_length, n_mels=config.n_mels, center=False, power=2.0)
        if config.kind == "mfcc":
            dct = torchaudio.functional.create_dct(config.n_mfcc, config.n_mels, "ortho")
            self.register_buffer("dct", dct, persistent=False)  # (n_mels, n_mfcc)

    @torch.no_grad()
    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None):
        """``waves (batch, samples)``, ``lengths (batch,)`` in samples →
        ``feats (batch, frames, feats)``, ``frame_lengths (batch,)``."""
        if waves.dim() == 1:
            waves = waves.unsqueeze(0)
        batch, samples = waves.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long)
        n_fft = self.mel.n_fft
        if samples < n_fft:  # the STFT needs one full window
            waves = nn.functional.pad(waves, (0, n_fft - samples))
        spec = self._mel_blocks(waves.float())  # (batch, n_mels, frames)
        feats = torch.log(spec + LOG_FLOOR).transpose(1, 2)  # (batch, frames, n_mels)
        if self.config.kind == "mfcc":
            feats = feats @ self.dct
        frame_lengths = torch.clamp(
            (lengths - n_fft) // self.config.hop_length + 1, min=1, max=feats.shape[1])
        return feats, frame_lengths


    def _mel_blocks(self, waves: torch.Tensor) -> torch.Tensor:
        """``self.mel`` over ``waves (batch, samples)`` in blocks of
        :data:`BLOCK_FRAMES` frames; frames never span blocks' edges (no centre
        padding), so the result is that of one call."""
        n_fft, hop = self.mel.n_fft, self.config.hop_length
        frames = (waves.shape[1] - n_fft) // hop + 1
        if frames <= 2 * BLOCK_FRAMES:
            return self.mel(waves)
        blocks = []
        for first in range(0, frames, BLOCK_FRAMES):
            last = min(first + BLOCK_FRAMES, frames) - 1
            blocks.append(self.mel(waves[:, first * hop:last * hop + n_fft]))
        return torch.cat(blocks, dim=2)


def compute_features(wave: np.ndarray | torch.Tensor, config: FeatureConfig = FeatureConfig(),
                     ) -> torch.Tensor:
    """One waveform ``(samples,)`` → features ``(frames, feats)``."""
    wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    feats, _ = FeatureExtractor(config)(wave.unsqueeze(0))
    return feats[0]


class Normalizer(nn.Module):
    """Per-dimension mean/variance normalisation with training-set statistics.

    The statistics are buffers, so they travel inside the model file.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, feats)`` → same shape, normalised."""
        return (feats - self.mean) / self.std

    @torch.no_grad()
    def fit(self, stats: "RunningStats") -> None:
        mean, std = stats.mean_std()
        self.mean.copy_(mean)
        self.std.copy_(std)


class RunningStats:
    """Accumulates per-dimension sums over many ``(frames, feats)`` matrices (float64)."""

    def __init__(self, dim: int):
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.sq = torch.zeros(dim, dtype=torch.float64)

    def update(self, feats: torch.Tensor) -> None:
        f = feats.reshape(-1, feats.shape[-1]).double()
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.sq += (f * f).sum(0)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.n == 0:
            raise ValueError("no frames to compute statistics from")
        mean = self.sum / self.n
        var = (self.sq / self.n - mean * mean).clamp(min=1e-10)
        return mean.float(), var.sqrt().float()


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation. Speed factors are applied to the waveform."""

    freq_masks: int = 2
    freq_mask_width: int = 15  # feature bins
    time_masks: int = 2
    time_mask_width: int = 40  # frames
    time_mask_max_ratio: float = 0.2  # no mask longer than this share of the utterance
    speed_factors: tuple[float, ...] = (0.9, 1.0, 1.1)
    # Channel augmentation (asrkit.augment) on the waveform: each effect is applied to an
    # utterance with its probability (0 = off), in the order room, noise, line, level.
    narrowband_prob: float = 0.0  # 8 kHz round trip, or a low-pass within lowpass_hz
    lowpass_hz: tuple[float, float] = (3400.0, 7000.0)
    telephone_prob: float = 0.0  # 300-3400 Hz band-pass and 8-bit mu-law at 8 kHz
    noise_prob: float = 0.0
    noise_snr_db: tuple[float, float] = (0.0, 20.0)
    noise_types: tuple[str, ...] = ("colored", "babble")  # "folder" reads noise_dir
    noise_dir: str = ""  # folder of noise recordings (searched recursively), e.g. MUSAN
    reverb_prob: float = 0.0
    reverb_rt60: tuple[float, float] = (0.2, 0.6)  # seconds, of the simulated rooms
    rir_bank: int = 16  # simulated rooms per run (made once, from train.seed)
    rir_dir: str = ""  # folder of recorded room impulse responses, used with the bank
    gain_prob: float = 0.0  # matters only with features.gain_normalize off, which undoes it
    gain_db: tuple[float, float] = (-12.0, 6.0)
    clip_prob: float = 0.0
    clip_fraction: tuple[float, float] = (0.001, 0.01)  # share of samples clipped

    def __post_init__(self):
        for name in ("narrowband", "telephone", "noise", "reverb", "gain", "clip"):
            p = getattr(self, f"{name}_prob")
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"augment.{name}_prob must be between 0 and 1, not {p}")
        for name, low, high in (("lowpass_hz", 1000.0, 7900.0), ("noise_snr_db", -20.0, 60.0),
                                ("reverb_rt60", 0.05, 2.0), ("gain_db", -40.0, 20.0),
                                ("clip_fraction", 0.0, 0.2)):
            r = getattr(self, name)
            if len(r) != 2 or not low <= r[0] <= r[1] <= high:
                raise ConfigError(f"augment.{name} must be [low, high] with {low} <= low "
                                  f"<= high <= {high}, not {list(r)}")
        unknown = set(self.noise_types) - {"colored", "babble", "folder"}
        if unknown or not self.noise_types:
            raise ConfigError(f"augment.noise_types: choose among colored, babble, folder, "
                              f"not {list(self.noise_types)}")
        if ("folder" in self.noise_types) != bool(self.noise_dir):
            raise ConfigError("augment.noise_dir and the noise type 'folder' go together: "
                              "set noise_dir to a folder of noise recordings and add "
                              "'folder' to augment.noise_types (or neither)")
        if self.rir_bank < 1:
            raise ConfigError(f"augment.rir_bank must be at least 1, not {self.rir_bank}")

    @property
    def enabled(self) -> bool:
        return self.freq_masks > 0 or self.time_masks > 0

    @property
    def channel(self) -> bool:
        """Whether any channel effect is on."""
        return any(getattr(self, f"{n}_prob") > 0 for n in
                   ("narrowband", "telephone", "noise", "reverb", "gain", "clip"))


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, config: AugmentConfig,
                 generator: torch.Generator | None = None, fill: float = 0.0) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) frequency and time masks, independent per utterance.

    ``feats (batch, frames, feats)`` (normalised, so ``fill=0`` is the mean),
    ``lengths (batch,)``. Returns a masked copy.
    """
    out = feats.clone()
    batch, frames, dim = feats.shape

    def draw(high: int) -> int:
        return int(torch.randint(0, max(high, 0) + 1, (1,), generator=generator))

    for b in range(batch):
        n = int(lengths[b])
        for _ in range(config.freq_masks):
            w = draw(min(config.freq_mask_width, dim))
            f0 = draw(dim - w)
            out[b, :n, f0:f0 + w] = fill  # padding stays as it was
        max_w = min(config.time_mask_width, int(n * config.time_mask_max_ratio))
        for _ in range(config.time_masks):
            w = draw(max_w)
            t0 = draw(n - w)
            out[b, t0:t0 + w, :] = fill
    return out
