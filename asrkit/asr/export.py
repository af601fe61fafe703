"""Deployable copies of an acoustic model: TorchScript or ONNX, waveform → log-probs.

The exported graph holds the whole recogniser — log-mel front end, normalisation,
frame stacking or convolutions, the recurrent stack (LSTM or GRU, bidirectional or
forward-only with its row convolution) and the CTC output layer — so a runtime without
asrkit needs only the audio::

    inputs   waves (batch, samples) float32 at the model's sample rate, zero-padded
             lengths (batch,) int64, samples of each waveform
    outputs  log_probs (batch, frames, vocab) float32, CTC blank = index 0
             out_lengths (batch,) int64, valid frames of each row

Batch size and length are free (any value at run time, not only the example's). A
JSON sidecar (``FILE.json``) beside the exported file records the vocabulary, feature
and model settings, ``frame_seconds`` and the gain normalisation the caller must apply,
so the file describes itself as a model file does.

Why a separate graph: :class:`~asrkit.asr.model.AsrModel` makes a few Python decisions
from tensor shapes (pad short input, pad to a multiple of the stacking factor), which a
trace would freeze at the example's values, and its STFT returns complex numbers, which
the ONNX exporter cannot write. :class:`ExportGraph` computes the same numbers with
shape-free real-valued operations (the STFT as a strided convolution with DFT kernels,
frame stacking as a strided convolution with selection kernels), reusing the model's
own weights and mel filters. The recurrent stack and row convolution are the model's
own modules, written to take their shapes from the data.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .. import __version__
from ..audio import MIN_PEAK, PEAK_TARGET
from ..errors import ConfigError
from ..features import LOG_FLOOR, frame_mask
from ..io import atomic_open, atomic_write_json
from .model import AsrModel, subtract_utterance_mean

ExportFormat = Literal["torchscript", "onnx"]
FORMATS: tuple[str, ...] = ("torchscript", "onnx")
SIDECAR_FORMAT = "asrkit-exported-model"
ONNX_OPSET = 18  # recent enough for every runtime in use; the graph needs Conv, LSTM or GRU
# and LayerNormalization
ONNX_DYNAMIC_AXES = {"waves": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                     "log_probs": {0: "batch", 1: "frames"}, "out_lengths": {0: "batch"}}
EXAMPLE_SAMPLES = (16_000, 11_200)  # lengths of the tracing example (any would do)


class ExportGraph(nn.Module):
    """``AsrModel.forward`` rewritten so that no shape becomes a constant when traced.

    Every padded waveform gets ``n_fft`` zero samples at the end, so even a waveform
    shorter than one window yields a frame; frames past each length are padding (and
    the output may carry a few more padding frames than :class:`AsrModel` returns).
    Frames inside each length equal the model's up to float rounding (the DFT is
    summed in another order than the FFT; differences are ~1e-5 in log-probability).
    """

    def __init__(self, model: AsrModel):
        super().__init__()
        config = model.feature_config
        self.n_fft = config.n_fft
        self.hop = config.hop_length
        self.factor = model.config.subsample
        self.register_buffer("dft", dft_kernels(model.features.mel.spectrogram.window,
                                                config.n_fft))  # (2 * freqs, 1, n_fft)
        self.register_buffer("stacker", stack_kernels(config.dim, self.factor))
        self.register_buffer("mel_fb", model.features.mel.mel_scale.fb.clone())  # (freqs, mels)
        self.dct = getattr(model.features, "dct", None)  # (n_mels, n_mfcc), MFCC only
        self.normalizer = model.normalizer
        self.utterance_mean = model.config.utterance_mean
        self.conv = model.conv
        self.recurrent = model.lstm
        self.row_conv = model.row_conv
        self.output = model.output

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor):
        """``waves (batch, samples)``, ``lengths (batch,)`` → ``log_probs (batch,
        frames, vocab)``, ``out_lengths (batch,)``."""
        x, frames = self.front_end(waves, lengths)
        x = self.recurrent(x, frames)
        if self.row_conv is not None:
            x = self.row_conv(x, frame_mask(x, frames))
        return self.output(x).log_softmax(dim=-1), frames

    def front_end(self, waves: torch.Tensor, lengths: torch.Tensor):
        """What the recurrent stack reads: ``(batch, frames, input)`` and ``frames
        (batch,)``."""
        waves = nn.functional.pad(waves, (0, self.n_fft))
        spec = nn.functional.conv1d(waves[:, None, :], self.dft, stride=self.hop)
        real, imag = spec.chunk(2, dim=1)  # (batch, freqs, frames) each
        power = (real ** 2 + imag ** 2).transpose(1, 2)  # (batch, frames, freqs)
        feats = torch.log(power @ self.mel_fb + LOG_FLOOR)  # (batch, frames, mels)
        if self.dct is not None:
            feats = feats @ self.dct
        frames = torch.clamp(torch.div(lengths - self.n_fft, self.hop, rounding_mode="floor")
                             + 1, min=1)
        x = self.normalizer(feats)
        valid = frame_mask(x, frames)
        if self.utterance_mean:
            x = subtract_utterance_mean(x, valid)
        x = self.conv(x, valid) if self.conv is not None else self._stack(x, valid)
        return x, torch.div(frames + self.factor - 1, self.factor, rounding_mode="floor")

    def _stack(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """:func:`asrkit.asr.model.stack_frames` without shape arithmetic: ``(batch, t,
        feats)`` and its ``valid (batch, t)`` mask → ``(batch, ceil(t / factor), feats *
        factor)``."""
        if self.factor == 1:
            return x
        x = x.masked_fill(~valid[:, :, None], 0.0)
        x = nn.functional.pad(x.transpose(1, 2), (0, self.factor - 1))  # (batch, feats, t')
        # a strided convolution drops the incomplete last run: t + f - 1 frames → ceil(t / f)
        return nn.functional.conv1d(x, self.stacker, stride=self.factor).transpose(1, 2)


def dft_kernels(window: torch.Tensor, n_fft: int) -> torch.Tensor:
    """The one-sided DFT of a windowed frame as convolution kernels ``(2 * freqs, 1,
    n_fft)``: real parts, then imaginary; ``window (win_length,)`` is centred in
    ``n_fft`` as ``torch.stft`` does."""
    left = (n_fft - len(window)) // 2
    padded = nn.functional.pad(window.double(), (left, n_fft - len(window) - left))
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None, :]
    angle = 2 * torch.pi * ((k * n) % n_fft) / n_fft  # reduced first, so exact for large k*n
    kernels = torch.cat([padded * torch.cos(angle), padded * -torch.sin(angle)])
    return kernels.float().unsqueeze(1)


def stack_kernels(dim: int, factor: int) -> torch.Tensor:
    """Kernels ``(dim * factor, dim, factor)`` whose convolution with stride ``factor``
    concatenates each run of ``factor`` frames: output channel ``k * dim + i`` is input
    channel ``i`` at offset ``k`` (the layout of :func:`asrkit.asr.model.stack_frames`)."""
    kernels = torch.zeros(dim * factor, dim, factor)
    for k in range(factor):
        kernels[k * dim:(k + 1) * dim, :, k] = torch.eye(dim)
    return kernels


def example_inputs(sample_rate: int = 16_000) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-waveform batch of unequal lengths: ``waves (2, samples)``, ``lengths (2,)``."""
    lengths = torch.tensor([n * sample_rate // 16_000 for n in EXAMPLE_SAMPLES])
    generator = torch.Generator().manual_seed(0)
    waves = 0.1 * torch.randn(len(lengths), int(lengths.max()), generator=generator)
    waves[1, lengths[1]:] = 0.0
    return waves, lengths


def export_target(out: str | os.PathLike, fmt: str) -> Path:
    """``out`` as a path to export to as ``fmt``, or a ConfigError saying what is wrong."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give the exported model's file name")
    return out


def export_model(model: AsrModel, out: str | os.PathLike, fmt: ExportFormat) -> Path:
    """Write ``model`` as ``fmt`` to ``out`` and its description to ``out.json``;
    return the sidecar's path. Both files are written atomically."""
    out = export_target(out, fmt)
    graph = ExportGraph(model.eval()).eval()
    example = example_inputs(model.feature_config.sample_rate)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations, tracer notes)
        if fmt == "torchscript":
            _write_torchscript(graph, example, out)
        else:
            _write_onnx(graph, example, out)
    sidecar = sidecar_path(out)
    atomic_write_json(sidecar, describe(model, fmt, out.name))
    return sidecar


def sidecar_path(exported: str | os.PathLike) -> Path:
    exported = Path(exported)
    return exported.with_name(exported.name + ".json")


def describe(model: AsrModel, fmt: str, file_name: str) -> dict:
    """What a runtime needs to use the exported file (the sidecar's content)."""
    return {
        "format": SIDECAR_FORMAT, "format_version": 1, "asrkit_version": __version__,
        "file": file_name, "export_format": fmt,
        "inputs": {"waves": "(batch, samples) float32, zero-padded",
                   "lengths": "(batch,) int64, samples"},
        "outputs": {"log_probs": "(batch, frames, vocab) float32, natural log",
                    "out_lengths": "(batch,) int64, valid frames per row"},
        "sample_rate": model.feature_config.sample_rate,
        "frame_seconds": model.frame_seconds,
        "blank_index": 0,
        "labels": ["<blank>"] + list(model.vocab.symbols),
        "vocabulary": model.vocab.to_dict(),
        "gain_normalize": {"enabled": model.feature_config.gain_normalize,
                           "peak_target": PEAK_TARGET, "min_peak": MIN_PEAK},
        "feature_config": dataclasses.asdict(model.feature_config),
        "model_config": dataclasses.asdict(model.config),
        "info": dict(getattr(model, "info", {}) or {}),
    }


def _write_torchscript(graph: ExportGraph, example, out: Path) -> None:
    traced = torch.jit.trace(graph, example, check_trace=False)
    with atomic_open(out, "wb") as f:
        torch.jit.save(traced, f)


def _write_onnx(graph: ExportGraph, example, out: Path) -> None:
    # The TorchScript-based exporter: the dynamo-based one needs onnxscript, takes over
    # a minute for this model and (torch 2.14) fixed an Expand to the example's shape.
    with atomic_open(out, "wb") as f:
        torch.onnx.export(
            graph, example, f, input_names=["waves", "lengths"],
            output_names=["log_probs", "out_lengths"], opset_version=ONNX_OPSET,
            dynamo=False, dynamic_axes=ONNX_DYNAMIC_AXES)


def check_export(model: AsrModel, exported: str | os.PathLike, fmt: ExportFormat,
                 ) -> float | None:
    """Largest difference of log-probabilities between ``model`` and the exported file
    on a batch of lengths unlike the tracing example (inside each row's length); None
    if the runtime for ``fmt`` is not installed (onnxruntime for ONNX)."""
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([9_123, 4_321]) * model.feature_config.sample_rate // 16_000
    waves = 0.1 * torch.randn(2, int(lengths.max()), generator=generator)
    waves[1, lengths[1]:] = 0.0
    got = run_exported(exported, fmt, waves, lengths)
    if got is None:
        return None
    with torch.no_grad():
        want, out_lengths = model.eval()(waves, lengths)
    if not torch.equal(got[1], out_lengths):
        return float("inf")
    return max(float((want[i, :n] - got[0][i, :n]).abs().max())
               for i, n in enumerate(out_lengths.tolist()))


def run_exported(exported: str | os.PathLike, fmt: ExportFormat, waves: torch.Tensor,
                 lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Run an exported file: ``waves (batch, samples)``, ``lengths (batch,)`` →
    ``log_probs (batch, frames, vocab)``, ``out_lengths (batch,)``; None if the ONNX
    runtime is missing."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated
            module = torch.jit.load(str(exported), map_location="cpu")
        with torch.no_grad():
            return module(waves, lengths)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    log_probs, out_lengths = session.run(None, {"waves": waves.numpy(),
                                                "lengths": lengths.numpy()})
    return torch.from_numpy(log_probs), torch.from_numpy(out_lengths)
