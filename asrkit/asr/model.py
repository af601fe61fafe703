"""The acoustic model: waveform → features → normalisation → recurrent stack (a
bidirectional LSTM by default) → CTC log-probs.

:class:`AsrModel` holds everything needed to go from audio to symbol posteriors, so a
saved model file describes itself (see :mod:`asrkit.asr.checkpoint`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..features import (FeatureConfig, FeatureExtractor, Normalizer, frame_mask,
                        frame_positions)
from ..text import Vocabulary


@dataclass(frozen=True)
class ModelConfig:
    layers: int = 3
    hidden: int = 256  # recurrent units per direction
    dropout: float = 0.15
    subsample: int = 2  # stack this many feature frames into one model frame (1, 2 or 3)
    conv_channels: int = 0  # > 0: two 3x3 convolutions over (time, mel) with this many
    # channels, each halving the mel axis, the second striding time by ``subsample``,
    # replace frame stacking (0 = stack frames)
    utterance_mean: bool = False  # subtract the mean feature vector of the audio given at
    # once (an utterance; each chunk of a long recording, see asrkit.asr.transcription)
    # The recurrent stack. Files written before these fields existed load with the
    # defaults, which are the model those files hold (a BiLSTM as first written).
    cell: Literal["lstm", "gru"] = "lstm"
    bidirectional: bool = True
    lookahead: int = 0  # forward-only models: a row convolution over each frame and the
    # next ``lookahead`` frames after the stack (DeepSpeech 2), 0 = none
    layer_norm: bool = False  # layer normalisation of each recurrent layer's output
    forget_bias: float = 0.0  # LSTM only: forget-gate bias at initialisation (0 = PyTorch's
    # random init); 1.0 makes a new LSTM remember by default
    recurrent_init: Literal["default", "orthogonal"] = "default"  # hidden-to-hidden
    # weights: PyTorch's uniform init, or an orthogonal matrix per gate
    dropout_kind: Literal["standard", "locked"] = "standard"  # between recurrent layers:
    # a new mask per frame, or one mask per utterance shared by all its frames

    def __post_init__(self):
        if self.subsample not in (1, 2, 3):
            raise ConfigError(f"model.subsample must be 1, 2 or 3, not {self.subsample}")
        if self.layers < 1 or self.hidden < 1:
            raise ConfigError("model.layers and model.hidden must be positive")
        if not 0 <= self.dropout < 1:
            raise ConfigError("model.dropout must be in [0, 1)")
        if self.conv_channels < 0:
            raise ConfigError("model.conv_channels must be 0 (no convolution) or positive")
        self._check_recurrent()

    @property
    def streams(self) -> bool:
        """Whether a model of this shape can transcribe audio as it arrives: it hears
        only the past (and its look-ahead) and needs no whole-utterance statistic."""
        return not self.bidirectional and not self.utterance_mean

    def _check_recurrent(self):
        for name, choices in (("cell", CELLS), ("recurrent_init", ("default", "orthogonal")),
                              ("dropout_kind", ("standard", "locked"))):
            if getattr(self, name) not in choices:
                raise ConfigError(f"model.{name} must be one of {', '.join(choices)}, "
                                  f"not {getattr(self, name)!r}")
        if self.lookahead < 0:
            raise ConfigError(f"model.lookahead must be 0 (none) or a number of frames, "
                              f"not {self.lookahead}")
        if self.lookahead and self.bidirectional:
            raise ConfigError(f"model.lookahead={self.lookahead} needs a forward-only model: "
                              "a bidirectional stack sees the whole utterance already; set "
                              "model.bidirectional=false or model.lookahead=0")
        if not math.isfinite(self.forget_bias):
            raise ConfigError(f"model.forget_bias must be a finite number, not {self.forget_bias}")
        if self.forget_bias and self.cell != "lstm":
            raise ConfigError(f"model.forget_bias={self.forget_bias:g} applies to LSTM cells "
                              f"only (a {self.cell.upper()} has no forget gate); set "
                              "model.forget_bias=0 or model.cell=lstm")


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
    t = frame_positions(x)  # (batch, frames), from the data: exported graphs stay dynamic
    n = lengths.to(x.device).unsqueeze(1)  # (batch, 1)
    idx = torch.where(t < n, n - 1 - t, t)  # (batch, frames)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, shared by all its frames (variational
    dropout, Gal & Ghahramani 2016): a unit is dropped for the whole utterance, so the
    next layer cannot average the noise away over neighbouring frames."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (batch, frames, dim)`` → same shape; the identity when not training."""
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class RowConvolution(nn.Module):
    """DeepSpeech 2's lookahead convolution: feature ``i`` of frame ``t`` becomes
    ``sum_k w[i, k] * x[t + k, i]`` for ``k = 0..lookahead``, so a forward-only model
    hears a little of the future at a fixed delay.

    Frames past each length are zeroed first, which is what an utterance alone sees
    after its end, so a padded batch gives the same outputs as each utterance alone.
    """

    def __init__(self, dim: int, lookahead: int):
        super().__init__()
        self.lookahead = lookahead
        self.conv = nn.Conv1d(dim, dim, lookahead + 1, groups=dim, bias=False)
        # Starts as the identity (all weight on the current frame): a new model is a
        # plain forward-only stack and learns how much of the future to mix in. Random
        # taps scramble the recurrent states the output layer must first learn to read.
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0, 0] = 1.0

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x (batch, frames, dim)`` and its ``valid (batch, frames)`` mask → ``(batch,
        frames, dim)``."""
        x = (x * valid[:, :, None].to(x.dtype)).transpose(1, 2)  # (batch, dim, frames)
        x = nn.functional.pad(x, (0, self.lookahead))
        return self.conv(x).transpose(1, 2)


class RecurrentStack(nn.Module):
    """Stacked LSTM or GRU layers, bidirectional or forward-only, exact for zero-padded
    batches.

    The backward direction runs over each sequence reversed within its own length, so
    padding never flows into real frames and a padded batch gives the same outputs as
    each sequence alone (a forward direction never reads past a frame anyway). PyTorch's
    packed sequences do the same but their backward pass is an order of magnitude slower
    on CPU. Each layer is its own single-layer module, so the default BiLSTM keeps the
    parameter names it has always had.
    """

    def __init__(self, input_size: int, config: ModelConfig):
        super().__init__()
        cell, hidden = CELLS[config.cell], config.hidden
        self.bidirectional = config.bidirectional
        self.output_dim = hidden * (2 if config.bidirectional else 1)
        sizes = [input_size] + [self.output_dim] * (config.layers - 1)
        self.forward_layers = nn.ModuleList(cell(n, hidden, batch_first=True) for n in sizes)
        self.backward_layers = nn.ModuleList(
            cell(n, hidden, batch_first=True) for n in sizes if config.bidirectional)
        self.norms = nn.ModuleList(nn.LayerNorm(self.output_dim) for _ in sizes) \
            if config.layer_norm else None
        self.dropout = LockedDropout(config.dropout) if config.dropout_kind == "locked" \
            else nn.Dropout(config.dropout)
        with torch.no_grad():
            for layer in [*self.forward_layers, *self.backward_layers]:
                init_recurrent(layer, config)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x (batch, frames, input_size)`` → ``(batch, frames, output_dim)``; frames
        past each length hold unspecified values."""
        for i, fwd in enumerate(self.forward_layers):
            if i > 0:
                x = self.dropout(x)
            out, _ = fwd(x)
            if self.bidirectional:
                behind, _ = self.backward_layers[i](reverse_padded(x, lengths))
                out = torch.cat([out, reverse_padded(behind, lengths)], dim=-1)
            x = self.norms[i](out) if self.norms is not None else out
        return x


def init_recurrent(layer: nn.LSTM | nn.GRU, config: ModelConfig) -> None:
    """Apply ``config.recurrent_init`` and ``config.forget_bias`` to a one-layer
    ``nn.LSTM`` or ``nn.GRU`` (in place; the defaults leave PyTorch's init untouched)."""
    hidden = layer.hidden_size
    if config.recurrent_init == "orthogonal":
        # weight_hh is the gates' (hidden, hidden) matrices stacked: each is made
        # orthogonal on its own, as a square matrix keeps a state's norm.
        for block in layer.weight_hh_l0.split(hidden):
            nn.init.orthogonal_(block)
    if config.forget_bias:
        # PyTorch's LSTM adds two biases, gates ordered input, forget, cell, output:
        # the forget gate's sum is set to forget_bias.
        layer.bias_ih_l0[hidden:2 * hidden] = config.forget_bias
        layer.bias_hh_l0[hidden:2 * hidden] = 0.0


class AsrModel(nn.Module):
    """Recurrent CTC recogniser (a bidirectional LSTM by default) with its own feature
    front end.

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
        # Named ``lstm`` whatever the cell: model files name their weights ``lstm.*``.
        self.lstm = RecurrentStack(lstm_input, config)
        self.row_conv = RowConvolution(self.lstm.output_dim, config.lookahead) \
            if config.lookahead else None
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(self.lstm.output_dim, len(vocab))
        # Word-confidence map from the model file (asr.calibration.Calibration), or None:
        # not a weight, and never carried into a model trained from this one.
        self.calibration = None

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
        """Top states ``(batch, frames, lstm.output_dim)`` (after the row convolution,
        if any: what the output layer sees) and their lengths."""
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
        x = self.lstm(x, lengths)
        if self.row_conv is not None:
            x = self.row_conv(x, frame_mask(x, lengths))
        return x, lengths

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
