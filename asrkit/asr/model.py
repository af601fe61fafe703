"""The acoustic model: waveform → features → normalisation → BiLSTM → CTC log-probs.

:class:`AsrModel` holds everything needed to go from audio to symbol posteriors, so a
saved model file describes itself (see :mod:`asrkit.asr.checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..features import FeatureConfig, FeatureExtractor, Normalizer, frame_mask
from ..text import Vocabulary


@dataclass(frozen=True)
class ModelConfig:
    layers: int = 3
    hidden: int = 256  # LSTM units per direction
    dropout: float = 0.15
    subsample: int = 2  # stack this many feature frames into one model frame (1, 2 or 3)
    conv_channels: int = 0  # > 0: two 3x3 convolutions over (time, mel) with this many
    # channels, each halving the mel axis, the second striding time by ``subsample``,
    # replace frame stacking (0 = stack frames)
    utterance_mean: bool = False  # subtract the mean feature vector of the audio given at
    # once (an utterance; each chunk of a long recording, see asrkit.asr.transcription)

    def __post_init__(self):
        if self.subsample not in (1, 2, 3):
            raise ConfigError(f"model.subsample must be 1, 2 or 3, not {self.subsample}")
        if self.layers < 1 or self.hidden < 1:
            raise ConfigError("model.layers and model.hidden must be positive")
        if not 0 <= self.dropout < 1:
            raise ConfigError("model.dropout must be in [0, 1)")
        if self.conv_channels < 0:
            raise ConfigError("model.conv_channels must be 0 (no convolution) or positive")


def stack_frames(feats: torch.Tensor, lengths: torch.Tensor, factor: int):
    """Concatenate each run of ``factor`` frames: ``(batch, frames, feats)`` →
    ``(batch, ceil(frames / factor), feats * factor)``; a short last run (of each
    utterance, by ``lengths (batch,)``) is zero-padded."""
    if factor == 1:
        return feats, lengths
    batch, frames, dim = feats.shape
    # Frames past each length are zeroed, so an utterance's last run is padded the same
    # way alone or in a batch (where padding frames hold features of silence).
    feats = feats.masked_fill(~frame_mask(feats, lengths)[:, :, None], 0.0)
    pad = (-frames) % factor
    if pad:
        feats = nn.functional.pad(feats, (0, 0, 0, pad))
    feats = feats.reshape(batch, (frames + pad) // factor, dim * factor)
    return feats, torch.div(lengths + factor - 1, factor, rounding_mode="floor")


def subtract_utterance_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``x (batch, frames, dim)`` minus each row's mean over its ``valid (batch, frames)``
    frames; frames outside are zeroed."""
    mask = valid.unsqueeze(-1).to(x.dtype)
    mean = (x * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
    return (x - mean) * mask


class ConvFrontend(nn.Module):
    """Two 3×3 convolutions over (time, mel), as in DeepSpeech 2: local time-frequency
    patterns (bursts, formant transitions) seen the same at any pitch. Each halves the
    mel axis; the second strides time by ``subsample``, which takes the place of frame
    stacking: ``frames`` → ``ceil(frames / subsample)``.

    Exact for zero-padded batches: frames past each length are zeroed before each
    convolution, which is what the convolution's own zero padding gives a sequence
    alone, and no output frame inside a length reaches further than one padding frame.
    """

    def __init__(self, n_mels: int, channels: int, subsample: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=(1, 2), padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(subsample, 2), padding=1)
        self.output_dim = channels * ((((n_mels + 1) // 2) + 1) // 2)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x (batch, frames, mels)`` and its ``valid (batch, frames)`` mask →
        ``(batch, ceil(frames / subsample), output_dim)``."""
        keep = valid[:, None, :, None].to(x.dtype)  # (batch, 1, frames, 1)
        h = nn.functional.gelu(self.conv1(x.unsqueeze(1) * keep))
        h = nn.functional.gelu(self.conv2(h * keep))  # (batch, channels, frames', mels')
        return h.permute(0, 2, 1, 3).flatten(2)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x (batch, frames, dim)`` within its own length;
    padding stays at the end. Applying it twice restores ``x``."""
    frames = x.shape[1]
    t = torch.arange(frames, device=x.device).unsqueeze(0)  # (1, frames)
    n = lengths.to(x.device).unsqueeze(1)  # (batch, 1)
    idx = torch.where(t < n, n - 1 - t, t)  # (batch, frames)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM that is exact for zero-padded batches.

    The backward direction runs over each sequence reversed within its own length, so
    padding never flows into real frames and a padded batch gives the same outputs as
    each sequence alone. (PyTorch's packed sequences do the same but their backward
    pass is an order of magnitude slower on CPU.)
    """

    def __init__(self, input_size: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        sizes = [input_size] + [2 * hidden] * (layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(n, hidden, batch_first=True) for n in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(n, hidden, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x (batch, frames, input_size)`` → ``(batch, frames, 2 * hidden)``; frames
        past each length hold unspecified values."""
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i > 0:
                x = self.dropout(x)
            ahead, _ = fwd(x)
            behind, _ = bwd(reverse_padded(x, lengths))
            x = torch.cat([ahead, reverse_padded(behind, lengths)], dim=-1)
        return x


class AsrModel(nn.Module):
    """Bidirectional-LSTM CTC recogniser with its own feature front end.

    Output index 0 is the CTC blank; index ``i > 0`` is ``vocab.symbols[i - 1]``.
    """

    def __init__(self, vocab: Vocabulary, config: ModelConfig = ModelConfig(),
                 feature_config: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.vocab = vocab
        self.config = config
        self.feature_config = feature_config
        self.features = FeatureExtractor(feature_config)
        self.normalizer = Normalizer(feature_config.dim)
        if config.conv_channels:
            self.conv = ConvFrontend(feature_config.dim, config.conv_channels, config.subsample)
            lstm_input = self.conv.output_dim
        else:
            self.conv = None
            lstm_input = feature_config.dim * config.subsample
        self.lstm = BiLSTM(lstm_input, config.hidden, config.layers, config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(2 * config.hidden, len(vocab))

    @property
    def frame_seconds(self) -> float:
        """Seconds per output frame."""
        return self.config.subsample / self.feature_config.frames_per_second

    def output_frames(self, feature_frames: int) -> int:
        """Output frames for an input of ``feature_frames`` feature frames."""
        return -(-feature_frames // self.config.subsample)

    def forward(self, waves: torch.Tensor, wave_lengths: torch.Tensor | None = None):
        """``waves (batch, samples)``, ``wave_lengths (batch,)`` →
        ``log_probs (batch, frames, vocab)``, ``lengths (batch,)``."""
        feats, lengths = self.features(waves, wave_lengths)
        return self.forward_features(feats, lengths)

    def forward_features(self, feats: torch.Tensor, lengths: torch.Tensor,
                         augment=None):
        """Un-normalised ``feats (batch, frames, feats)`` → log-probs and lengths.

        ``augment`` (training only) is applied after normalisation, e.g. SpecAugment.
        """
        hidden, lengths = self.encode(feats, lengths, augment)
        logits = self.output(self.dropout(hidden))
        return logits.log_softmax(dim=-1), lengths

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor, augment=None):
        """Top BiLSTM states ``(batch, frames, 2 * hidden)`` and their lengths."""
        x = self.normalizer(feats)
        valid = frame_mask(x, lengths)
        if self.config.utterance_mean:
            x = subtract_utterance_mean(x, valid)
        if augment is not None:
            x = augment(x, lengths)
        if self.conv is not None:
            x = self.conv(x, valid)
            lengths = torch.div(lengths + self.config.subsample - 1, self.config.subsample,
                                rounding_mode="floor")
        else:
            x, lengths = stack_frames(x, lengths, self.config.subsample)
        return self.lstm(x, lengths), lengths

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
