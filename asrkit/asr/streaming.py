"""Live transcription: audio chunks of any size in, final and partial words out.

A forward-only model (``model.bidirectional: false``) needs only the past and a fixed
look-ahead, so it can run while the audio arrives. :class:`AcousticStream` carries
everything between chunks: the samples of an unfinished analysis window, the frames a
convolution (front end, frame stacking, row convolution) still needs, and the
recurrent state of each layer. :class:`StreamingTranscriber` feeds its log-probs to a
decoder stream (:meth:`asrkit.decoding.base.Decoder.stream`) and reports
:class:`StreamUpdate` records: words that are final (never revised) and the rest of
the current best guess (partial, may change).

Fed a whole recording in chunks of any size, the stream computes what the offline
model computes for the recording in one piece (up to float rounding), so its words at
:meth:`StreamingTranscriber.finish` are the offline transcript's.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..audio import peak_gain
from ..decoding.base import Decoder, GreedyDecoder, Hypothesis, WordTiming
from ..errors import ConfigError
from .calibration import calibrate_hypothesis
from .model import AsrModel


def check_streamable(model: AsrModel, where: str = "model") -> None:
    """Raise :class:`ConfigError` (one line: what and how to fix) unless ``model`` can
    transcribe audio as it arrives (:attr:`ModelConfig.streams`), naming the setting
    that keeps it from it."""
    if model.config.streams:
        return
    if model.config.bidirectional:
        raise ConfigError(f"{where}: a bidirectional model needs the whole recording and "
                          "cannot stream; train a forward-only one (asrkit train --set "
                          "model.bidirectional=false --set model.lookahead=5 --set "
                          "model.utterance_mean=false) or drop --stream")
    if model.config.utterance_mean:
        raise ConfigError(f"{where}: the model subtracts each utterance's mean feature "
                          "vector, which a stream does not know before its end; train with "
                          "--set model.utterance_mean=false or drop --stream")


class TimeWindow:
    """A convolution over time fed a few frames at a time.

    ``apply`` maps a window of frames (time along ``axis``) to its outputs with no time
    padding, ``kernel`` input frames and ``stride`` between outputs. ``left`` zero
    frames stand before the first frame and ``right`` after the last (given at
    :meth:`finish`), as the offline convolution's zero padding does. Outputs come as
    soon as their last input frame has arrived.
    """

    def __init__(self, apply: Callable[[torch.Tensor], torch.Tensor], kernel: int,
                 stride: int, left: int, right: int, axis: int):
        self.apply, self.kernel, self.stride = apply, kernel, stride
        self.left, self.right, self.axis = left, right, axis
        self.buffer: torch.Tensor | None = None

    def push(self, x: torch.Tensor) -> torch.Tensor | None:
        """New frames in (time along ``axis``) → new outputs, or None."""
        if self.buffer is None:
            self.buffer = self._zeros(x, self.left)
        self.buffer = torch.cat([self.buffer, x], dim=self.axis)
        return self._emit()

    def finish(self) -> torch.Tensor | None:
        """The outputs that wait for frames after the last (the zero padding)."""
        if self.buffer is None:
            return None
        self.buffer = torch.cat([self.buffer, self._zeros(self.buffer, self.right)], self.axis)
        return self._emit()

    def _zeros(self, like: torch.Tensor, frames: int) -> torch.Tensor:
        shape = list(like.shape)
        shape[self.axis] = frames
        return like.new_zeros(shape)

    def _emit(self) -> torch.Tensor | None:
        have = self.buffer.shape[self.axis]
        count = (have - self.kernel) // self.stride + 1 if have >= self.kernel else 0
        if count <= 0:
            return None
        window = self.buffer.narrow(self.axis, 0, (count - 1) * self.stride + self.kernel)
        self.buffer = self.buffer.narrow(self.axis, count * self.stride,
                                         have - count * self.stride)
        return self.apply(window)


class AcousticStream:
    """A forward-only :class:`AsrModel` run on audio as it arrives.

    :meth:`push` takes samples ``(n,)`` (already scaled by any gain) and returns the
    log-probs ``(frames, vocab)`` of the output frames they complete; :meth:`finish`
    returns the last ones. Together they equal ``model(whole_wave)`` frame for frame.
    """

    def __init__(self, model: AsrModel):
        check_streamable(model)
        self.model = model.eval()
        fc = model.feature_config
        self.n_fft, self.hop = fc.n_fft, fc.hop_length
        self.samples = np.zeros(0, np.float32)  # of the unfinished analysis window
        self.seen_frames = 0  # feature frames made so far
        # the stages from normalised features to the output layer's input, in order
        self.stages = [*self._front_end(model), RecurrentState(model.lstm)]
        if model.row_conv is not None:
            self.stages.append(self._row_window(model))

    @staticmethod
    def _front_end(model: AsrModel) -> list[TimeWindow]:
        """The windows between normalised features ``(1, frames, feats)`` and the
        recurrent stack's input ``(1, frames', input)``."""
        s = model.config.subsample
        if model.conv is None:  # frame stacking: a stride-s window, a short last run zero-padded
            return [TimeWindow(lambda x: x.reshape(1, -1, x.shape[2] * s), s, s, 0, s - 1, 1)]
        c1, c2 = model.conv.conv1, model.conv.conv2

        def first(x):  # (1, frames, mels) → (1, channels, frames', mels')
            return nn.functional.gelu(nn.functional.conv2d(
                x.unsqueeze(1), c1.weight, c1.bias, stride=(1, 2), padding=(0, 1)))

        def second(h):  # → (1, frames'', channels * mels'')
            h = nn.functional.gelu(nn.functional.conv2d(h, c2.weight, c2.bias,
                                                         stride=(s, 2), padding=(0, 1)))
            return h.permute(0, 2, 1, 3).flatten(2)
        return [TimeWindow(first, 3, 1, 1, 1, 1), TimeWindow(second, 3, s, 1, 1, 2)]

    @staticmethod
    def _row_window(model: AsrModel) -> TimeWindow:
        n = model.row_conv.lookahead
        weight = model.row_conv.conv.weight[:, 0, :].detach()  # (dim, n + 1)

        def row(x):  # (1, frames, dim) → (1, frames - n, dim); a depthwise Conv1d
            # costs milliseconds a call on a few frames, this a few microseconds
            return (x.unfold(1, n + 1, 1) * weight).sum(-1)
        return TimeWindow(row, n + 1, 1, 0, n, 1)

    @torch.inference_mode()
    def push(self, samples: np.ndarray) -> torch.Tensor:
        """``samples (n,)`` float32 → log-probs ``(frames, vocab)`` (frames may be 0)."""
        self.samples = np.concatenate([self.samples, np.asarray(samples, np.float32)])
        if len(self.samples) < self.n_fft:
            return self._empty()
        with without_onednn():
            return self._push_frames()

    def _push_frames(self) -> torch.Tensor:
        frames = (len(self.samples) - self.n_fft) // self.hop + 1
        used = (frames - 1) * self.hop + self.n_fft
        feats, _ = self.model.features(torch.from_numpy(self.samples[:used])[None])
        self.samples = self.samples[frames * self.hop:]
        self.seen_frames += frames
        return self._frames(feats)

    @torch.inference_mode()
    def finish(self) -> torch.Tensor:
        """The log-probs ``(frames, vocab)`` that wait for the end of the audio."""
        with without_onednn():
            return self._finish()

    def _finish(self) -> torch.Tensor:
        out = []
        if self.seen_frames == 0:  # shorter than one window: zero-padded into one frame
            wave = np.zeros(self.n_fft, np.float32)
            wave[:len(self.samples)] = self.samples
            feats, _ = self.model.features(torch.from_numpy(wave)[None])
            self.seen_frames = 1
            out.append(self._frames(feats))
        self.samples = np.zeros(0, np.float32)
        x = None
        for stage in self.stages:  # each stage's last outputs go through the ones after it
            x = _cat(stage.push(x) if x is not None else None, stage.finish())
        out.append(self._output(x))
        return torch.cat(out)

    def _frames(self, feats: torch.Tensor) -> torch.Tensor:
        """Un-normalised features ``(1, frames, feats)`` → log-probs of the output
        frames they complete."""
        x = self.model.normalizer(feats)
        for stage in self.stages:
            if x is None:
                break
            x = stage.push(x)
        return self._output(x)

    def _output(self, x: torch.Tensor | None) -> torch.Tensor:
        if x is None or x.shape[1] == 0:
            return self._empty()
        return self.model.output(x[0]).log_softmax(dim=-1)

    def _empty(self) -> torch.Tensor:
        return torch.zeros(0, len(self.model.vocab))


class RecurrentState:
    """The recurrent stack run a few frames at a time, each layer's state carried.

    Without layer normalisation the layers run as one multi-layer module (the same
    weights): a call has a fixed cost of its own, which matters on a few frames."""

    def __init__(self, stack):
        self.layers = list(stack.forward_layers)
        self.norms = stack.norms
        if self.norms is None and len(self.layers) > 1:
            self.layers = [_fused(self.layers)]
        self.state: list = [None] * len(self.layers)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, frames, input)`` → ``(1, frames, hidden)``."""
        for i, layer in enumerate(self.layers):
            x, self.state[i] = layer(x, self.state[i])
            if self.norms is not None:
                x = self.norms[i](x)
        return x

    def finish(self) -> None:
        return None


def _fused(layers: list) -> nn.Module:
    """One ``num_layers``-layer LSTM or GRU holding the weights of ``layers``, each a
    one-layer module (between which the model has only dropout, idle in eval)."""
    first = layers[0]
    fused = type(first)(first.input_size, first.hidden_size, num_layers=len(layers),
                        batch_first=True)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(fused, f"{name}_l{i}").copy_(getattr(layer, f"{name}_l0"))
    return fused.eval()


@contextlib.contextmanager
def without_onednn():
    """oneDNN off: its recurrent kernels reorder the weights on every call, which costs
    more than the few frames a stream gives them."""
    with warnings.catch_warnings():  # torch warns about a GPU-only TF32 setting here
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None:
        return b if a is None else a
    return torch.cat([a, b], dim=1)


@dataclass(frozen=True)
class StreamUpdate:
    """What one chunk of audio changed.

    ``final`` words are new and never revised; ``partial`` is the rest of the current
    best hypothesis (after every final word so far), which later audio may change.
    """

    final: tuple[WordTiming, ...]
    partial: tuple[WordTiming, ...]
    seconds: float  # audio received so far
    done: bool = False  # True after the end of the audio: nothing is partial any more

    @property
    def partial_text(self) -> str:
        return " ".join(w.word for w in self.partial)


class StreamingTranscriber:
    """Transcribe audio as it arrives, with a forward-only model.

    Args:
        model: a forward-only :class:`AsrModel` (see :func:`check_streamable`).
        decoder: any :class:`~asrkit.decoding.base.Decoder` (greedy by default; beam
            search with an LM keeps its beam between chunks).
        gain: a fixed gain for the samples. None: for a model trained on
            gain-normalised audio, the gain the loudest sample so far asks for (what
            offline normalisation gives once the loudest sample has arrived), else 1.
        calibrated: map word confidences through the model's calibration, if any.
        final_after: beam search: seconds after which a word is made final although
            far weaker rivals still disagree (see :meth:`Decoder.stream`); None: the
            stream's transcript equals the offline one.

    Feed :meth:`feed` chunks of float samples ``(n,)`` at the model's sample rate (any
    ``n``, even 0 or 1), then call :meth:`finish` once.
    """

    def __init__(self, model: AsrModel, decoder: Decoder | None = None,
                 gain: float | None = None, calibrated: bool = True,
                 final_after: float | None = None):
        self.acoustic = AcousticStream(model)
        self.decoder = decoder or GreedyDecoder(model.vocab, model.frame_seconds)
        self.decoding = self.decoder.stream(final_after)
        self.calibration = model.calibration if calibrated else None
        self.sample_rate = model.feature_config.sample_rate
        self.adaptive = gain is None and model.feature_config.gain_normalize
        self.gain = 1.0 if gain is None else float(gain)
        self.peak = 0.0
        self.received = 0  # samples
        self.final_words: list[WordTiming] = []
        self.hypothesis: Hypothesis | None = None  # the whole transcript, after finish

    @property
    def seconds(self) -> float:
        return self.received / self.sample_rate

    def feed(self, samples: np.ndarray) -> StreamUpdate:
        """Take the next samples ``(n,)``; return what they changed."""
        if self.hypothesis is not None:
            raise ConfigError("the stream has finished; start a new StreamingTranscriber")
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.received += len(samples)
        if self.adaptive and len(samples):
            self.peak = max(self.peak, float(np.abs(samples).max()))
            self.gain = peak_gain(self.peak)
        log_probs = self.acoustic.push(samples if self.gain == 1.0 else samples * self.gain)
        if log_probs.shape[0]:
            self.decoding.advance(log_probs)
        final, partial = self.decoding.update()
        return StreamUpdate(self._commit(final), self._calibrated(partial), self.seconds)

    def finish(self) -> StreamUpdate:
        """End of the audio: the remaining words, all final."""
        if self.hypothesis is not None:
            raise ConfigError("the stream has already finished")
        log_probs = self.acoustic.finish()
        if log_probs.shape[0]:
            self.decoding.advance(log_probs)
        hyp = calibrate_hypothesis(self.decoding.finish(), self.calibration)
        self.hypothesis = hyp
        rest = hyp.words[len(self.final_words):]
        self.final_words.extend(rest)
        return StreamUpdate(tuple(rest), (), self.seconds, done=True)

    def _commit(self, words) -> tuple[WordTiming, ...]:
        words = self._calibrated(words)
        self.final_words.extend(words)
        return words

    def _calibrated(self, words) -> tuple[WordTiming, ...]:
        if not words or self.calibration is None:
            return tuple(words)
        return calibrate_hypothesis(Hypothesis("", (), (), tuple(words)),
                                    self.calibration).words
