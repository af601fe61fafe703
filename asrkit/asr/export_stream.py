"""A streaming graph of a forward-only model, for runtimes without asrkit.

The graph is called again and again on a window of the stream's audio and carries the
recurrent state (and the row convolution's pending frames) from call to call::

    inputs   waves (1, samples) float32: the window (see below), gain applied
             start (1,) int64: model frames at the window's start already done (context)
             final (1,) int64: 1 if the window reaches the end of the stream, else 0
             h, c (layers, 1, hidden) float32: recurrent state (zeros at the start; a
                 GRU passes c through unchanged)
             pending (1, lookahead', hidden) float32: recurrent outputs awaiting their
                 look-ahead (zeros at the start; lookahead' = max(lookahead, 1))
             done (1,) int64: recurrent frames run so far (0 at the start)
    outputs  log_probs (1, frames, vocab): the next output frames, in order
             h, c, pending, done: the state for the next call
             drop (1,) int64: samples to remove from the front of the window
             next_start (1,) int64: ``start`` for the next call

A runtime appends new audio to its window, calls the graph once the window holds at
least ``min_window_samples`` (the sidecar's) with ``final`` 0, drops ``drop`` samples,
and at the end calls it once more with ``final`` 1. The log-probs of all calls, one
after another, are the offline model's for the whole stream (up to float rounding).

How: the front end (log-mel, convolutions or frame stacking) sees only a few frames
either side, so each call recomputes it over the window; a frame goes to the recurrent
stack once the window holds all the audio it depends on, and the window then starts a
few frames before the first frame not yet run, for the convolutions' left context.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_open, atomic_write_json
from .export import (ONNX_OPSET, ExportFormat, ExportGraph, describe, export_target,
                     sidecar_path)
from .model import AsrModel
from .streaming import check_streamable

STREAM_INPUTS = ["waves", "start", "final", "h", "c", "pending", "done"]
STREAM_OUTPUTS = ["log_probs", "h_out", "c_out", "pending_out", "done_out", "drop",
                  "next_start"]


def reach(model: AsrModel) -> tuple[int, int]:
    """(feature frames after, model frames of left context) that a model frame's
    front end needs: frame stacking reads its own run only; the two 3x3 convolutions
    read two feature frames either side."""
    s = model.config.subsample
    if model.conv is None:
        return s - 1, 0
    return 2, -(-2 // s)


class StreamGraph(nn.Module):
    """One call of the streaming graph (see the module docstring)."""

    def __init__(self, model: AsrModel):
        super().__init__()
        check_streamable(model)
        self.offline = ExportGraph(model)
        self.s, self.hop = model.config.subsample, model.feature_config.hop_length
        self.n_fft = model.feature_config.n_fft
        self.right, self.context = reach(model)
        self.layers = model.lstm.forward_layers
        self.norms = model.lstm.norms
        self.lstm = model.config.cell == "lstm"
        self.lookahead = model.config.lookahead
        self.row_conv = model.row_conv
        self.output = model.output

    def forward(self, waves, start, final, h, c, pending, done):
        lengths = torch.ones_like(waves[:, 0], dtype=torch.long) * waves.shape[1]
        x, frames = self.offline.front_end(waves, lengths)  # (1, M, input), (1,)
        feat = torch.clamp(torch.div(lengths - self.n_fft, self.hop, rounding_mode="floor")
                           + 1, min=1)
        ready = torch.div(feat - 1 - self.right, self.s, rounding_mode="floor") + 1
        ready = torch.minimum(ready, frames - 1)  # keep one back: the last call runs >= 1
        end = torch.where(final > 0, frames, torch.maximum(ready, start))
        t = torch.ones_like(x[:, :, 0], dtype=torch.long).cumsum(1) - 1  # (1, M)
        x = x[(t >= start[:, None]) & (t < end[:, None])].unsqueeze(0)  # (1, K, input)
        hs, cs = [], []
        for i, layer in enumerate(self.layers):
            if self.lstm:
                x, (hi, ci) = layer(x, (h[i:i + 1], c[i:i + 1]))
            else:
                x, hi = layer(x, h[i:i + 1])
                ci = c[i:i + 1]
            hs.append(hi)
            cs.append(ci)
            if self.norms is not None:
                x = self.norms[i](x)
        ran = end - start
        y, pending = self._look_ahead(x, pending, done, final, ran)
        first = torch.clamp(end - self.context, min=0) * self.s  # next window's first frame
        return (self.output(y).log_softmax(dim=-1), torch.cat(hs), torch.cat(cs), pending,
                done + ran, first * self.hop, end - first // self.s)

    def _look_ahead(self, z, pending, done, final, ran):
        """The row convolution over the pending frames and ``z (1, K, hidden)``: the
        outputs whose look-ahead has arrived (all of them at the end) and the new
        pending frames."""
        if self.row_conv is None:
            return z, pending
        n = self.lookahead
        seq = torch.cat([pending, z], dim=1)  # (1, n + K, hidden): frames done - n ...
        padded = torch.cat([seq, torch.zeros_like(pending)], dim=1)
        out = self.row_conv.conv(padded.transpose(1, 2)).transpose(1, 2)  # (1, K + n, .)
        j = torch.ones_like(out[:, :, 0], dtype=torch.long).cumsum(1) - 1  # (1, K + n)
        frame = done[:, None] - n + j
        keep = (frame >= 0) & ((j < ran[:, None]) | (final[:, None] > 0))
        return out[keep].unsqueeze(0), seq[:, -n:]


def initial_state(model: AsrModel) -> dict[str, torch.Tensor]:
    """The state inputs of a stream's first call."""
    layers, hidden = model.config.layers, model.config.hidden
    return {"h": torch.zeros(layers, 1, hidden), "c": torch.zeros(layers, 1, hidden),
            "pending": torch.zeros(1, max(model.config.lookahead, 1), hidden),
            "done": torch.zeros(1, dtype=torch.long)}


def min_window_samples(model: AsrModel) -> int:
    """A window this long always runs at least one new frame."""
    right, context = reach(model)
    fc = model.feature_config
    return fc.n_fft + fc.hop_length * ((context + 2) * model.config.subsample + right)


def run_stream(step, model: AsrModel, wave: torch.Tensor, chunk: int) -> torch.Tensor:
    """Log-probs ``(frames, vocab)`` of ``wave (samples,)`` streamed ``chunk`` samples
    at a time through ``step`` (the graph, or a callable with its inputs and outputs),
    as a runtime would."""
    state = initial_state(model)
    window, start, out = wave[:0], torch.zeros(1, dtype=torch.long), []
    least = min_window_samples(model)
    for i in range(0, len(wave), chunk):
        window = torch.cat([window, wave[i:i + chunk]])
        if len(window) < least:
            continue
        lp, h, c, pending, done, drop, start = step(
            window[None], start, torch.zeros(1, dtype=torch.long), *state.values())
        state = {"h": h, "c": c, "pending": pending, "done": done}
        out.append(lp[0])
        window = window[int(drop):]
    lp, *_ = step(window[None], start, torch.ones(1, dtype=torch.long), *state.values())
    out.append(lp[0])
    return torch.cat(out)


def export_stream(model: AsrModel, out: str | os.PathLike, fmt: ExportFormat) -> Path:
    """Write the streaming graph of ``model`` as ``fmt`` to ``out`` and its description
    to ``out.json``; return the sidecar's path."""
    out = export_target(out, fmt)
    graph = StreamGraph(model.eval()).eval()
    example = (0.1 * torch.randn(1, 8_000, generator=torch.Generator().manual_seed(0)),
               torch.ones(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
               *initial_state(model).values())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations, tracer notes)
        with atomic_open(out, "wb") as f:
            if fmt == "torchscript":
                torch.jit.save(torch.jit.trace(graph, example, check_trace=False), f)
            else:
                torch.onnx.export(graph, example, f, input_names=STREAM_INPUTS,
                                  output_names=STREAM_OUTPUTS, opset_version=ONNX_OPSET,
                                  dynamo=False, dynamic_axes={"waves": {1: "samples"},
                                                              "log_probs": {1: "frames"}})
    sidecar = sidecar_path(out)
    info = describe(model, fmt, out.name)
    info.update(inputs={n: d for n, d in zip(STREAM_INPUTS, _DOC["inputs"])},
                outputs={n: d for n, d in zip(STREAM_OUTPUTS, _DOC["outputs"])},
                streaming=True, min_window_samples=min_window_samples(model),
                state_shapes={k: list(v.shape) for k, v in initial_state(model).items()})
    atomic_write_json(sidecar, info)
    return sidecar


_DOC = {"inputs": [
    "(1, samples) float32: the window of audio, gain applied",
    "(1,) int64: model frames at the window's start already done (0 at first)",
    "(1,) int64: 1 on the last call of the stream, else 0",
    "(layers, 1, hidden) float32: recurrent state, zeros at first",
    "(layers, 1, hidden) float32: LSTM cell state, zeros at first (GRU: unused)",
    "(1, max(lookahead, 1), hidden) float32: frames awaiting look-ahead, zeros at first",
    "(1,) int64: recurrent frames run so far, 0 at first"], "outputs": [
    "(1, frames, vocab) float32: the next log-probs, blank = 0",
    "next h", "next c", "next pending", "next done",
    "(1,) int64: samples to drop from the front of the window",
    "(1,) int64: start for the next call"]}


def check_stream_export(model: AsrModel, exported: str | os.PathLike, fmt: ExportFormat,
                        ) -> float | None:
    """Largest log-prob difference between ``model`` on a whole random recording and
    the exported graph streaming it in uneven chunks; None without onnxruntime."""
    generator = torch.Generator().manual_seed(1)
    wave = 0.1 * torch.randn(23_456, generator=generator)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            step = torch.jit.load(str(exported), map_location="cpu")
    else:
        try:
            import onnxruntime  # noqa: PLC0415
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(str(exported),
                                               providers=["CPUExecutionProvider"])

        def step(*inputs):
            feed = {n: x.numpy() for n, x in zip(STREAM_INPUTS, inputs)}
            return [torch.from_numpy(o) for o in session.run(None, feed)]
    with torch.no_grad():
        want = model.eval()(wave[None])[0][0]
        got = run_stream(step, model, wave, 1_234)
    if got.shape != want.shape:
        return float("inf")
    return float((got - want).abs().max())
