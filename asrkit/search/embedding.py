"""Acoustic word embeddings: a sequence autoencoder maps a segment to one vector.

The model follows Audio Word2Vec (Chung et al. 2016): a bidirectional GRU reads a
variable-length frame sequence ``(batch, frames, feats)`` and its final states become
one vector ``(batch, dim)``; a GRU decoder must rebuild the sequence from that vector
alone, so the vector has to summarise what was said. Training (denoising, speed
perturbation, an optional contrastive term) lives in :mod:`asrkit.search.embedder_training`.

Frames come from a *frontend* (:func:`make_frontend`): log-mel / MFCC features
(:mod:`asrkit.features`), or the top recurrent-layer states of a trained asrkit acoustic model
(``kind="asr"``, :mod:`asrkit.search.asr_frontend`), which were trained to tell symbols
apart whoever speaks and so carry less of the speaker. An ``asr`` embedder file names
its acoustic model and that model's fingerprint; loading it refuses any other model.

An embedder file is self-describing: format name and version, the config dataclasses,
normalisation statistics and weights, loaded with ``torch.load(weights_only=True)``.
Versions follow the rule of :mod:`asrkit.io`: files of ``FORMAT_VERSION`` or older
load, newer ones are refused with a message to upgrade.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from ..errors import ConfigError, ModelFileError
from ..features import FeatureConfig, FeatureExtractor, Normalizer, frame_mask
from .gru import GruWeights, final_states
from ..io import atomic_open, check_format_version, fingerprint
from ..pretrained import default_embedder_path

FORMAT_NAME = "asrkit-embedder"
FORMAT_VERSION = 1
INFERENCE_BATCH = 256  # segments per forward pass when embedding many
SMALL_BATCH = 4  # up to this many sequences are embedded one by one in numpy


@dataclass(frozen=True)
class FrontendConfig:
    """Where frames come from and how each segment is normalised."""

    kind: Literal["features", "asr"] = "features"
    features: FeatureConfig = field(default_factory=lambda: FeatureConfig(kind="fbank", n_mels=40))
    # Subtracting each segment's own mean removes channel and part of the speaker
    # colouring, so a query recorded elsewhere still lands near the archive's words.
    segment_mean: bool = True
    # kind "asr": the acoustic model (see asrkit.search.asr_frontend.AcousticModelRef) and
    # the size and rate of its states; build with asr_frontend_config().
    asr_model: str | None = None
    asr_fingerprint: str | None = None
    asr_dim: int = 0
    asr_frames_per_second: float = 0.0

    @property
    def dim(self) -> int:
        return self.asr_dim if self.kind == "asr" else self.features.dim

    @property
    def frames_per_second(self) -> float:
        return self.asr_frames_per_second if self.kind == "asr" else \
            self.features.frames_per_second


def asr_frontend_config(asr_model: str | os.PathLike, segment_mean: bool = False,
                        ) -> FrontendConfig:
    """Frontend config for the hidden states of ``asr_model`` (file, training folder or
    bundled name such as ``"an4"``). States are already normalised by the model, and a
    segment's mean of them is part of what was said, so it is kept by default."""
    from .asr_frontend import reference_model
    model, ref = reference_model(asr_model)
    return FrontendConfig(kind="asr", segment_mean=segment_mean, asr_model=ref.name,
                          asr_fingerprint=ref.fingerprint, asr_dim=model.lstm.output_dim,
                          asr_frames_per_second=1.0 / model.frame_seconds)


@dataclass(frozen=True)
class AutoencoderConfig:
    """Sizes of the sequence autoencoder."""

    input_dim: int = 40
    stack: int = 3  # consecutive frames concatenated: a third of the recurrent steps
    hidden: int = 160  # per direction
    layers: int = 2
    dim: int = 128  # embedding size
    decoder_hidden: int = 160
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("input_dim", "stack", "hidden", "layers", "dim", "decoder_hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(f"embedder.{name} must be at least 1")


@dataclass(frozen=True)
class EmbedderConfig:
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EmbedderConfig":
        front = dict(d["frontend"])
        front["features"] = FeatureConfig(**front["features"])
        return cls(FrontendConfig(**front), AutoencoderConfig(**d["autoencoder"]))

    @classmethod
    def make(cls, features: str = "fbank", asr_model: str | os.PathLike | None = None,
             hidden: int = 160, layers: int = 2, dim: int = 128,
             stack: int | None = None) -> "EmbedderConfig":
        """An embedder over ``features``: ``fbank`` (40 log-mel bands), ``mfcc`` (13 of
        40) or ``asr`` (the states of ``asr_model``, default the bundled recogniser).
        ``stack`` frames are joined per encoder step: by default 3, or 2 for ``asr``,
        whose frames are already 20 ms. The decoder is as wide as the encoder."""
        if asr_model is not None and features != "asr":
            raise ConfigError("--asr-model is for --features asr")
        if features == "asr":
            from ..pretrained import DEFAULT_MODEL
            frontend = asr_frontend_config(asr_model or DEFAULT_MODEL)
        elif features in ("fbank", "mfcc"):
            frontend = FrontendConfig(features=FeatureConfig(kind=features, n_mels=40,
                                                             n_mfcc=13))
        else:
            raise ConfigError(f"--features must be fbank, mfcc or asr, not {features!r}")
        return cls(frontend, AutoencoderConfig(
            input_dim=frontend.dim, stack=stack or (2 if features == "asr" else 3),
            hidden=hidden, layers=layers, dim=dim, decoder_hidden=hidden))


class FeatureFrontend(nn.Module):
    """Waveforms ``(batch, samples)`` → frames ``(batch, frames, feats)`` + lengths."""

    def __init__(self, config: FrontendConfig):
        super().__init__()
        self.config = config
        self.extractor = FeatureExtractor(config.features)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None):
        return self.extractor(waves, lengths)


class AsrFrontend(nn.Module):
    """Waveforms ``(batch, samples)`` → acoustic-model states ``(batch, frames, asr_dim)``
    + lengths. The acoustic model is not part of the embedder's weights (it is named
    and fingerprinted in the config), so it never trains and never bloats the file."""

    def __init__(self, config: FrontendConfig):
        super().__init__()
        from .asr_frontend import AcousticModelRef, load_referenced
        if not config.asr_model or not config.asr_fingerprint:
            raise ConfigError("an asr frontend needs asr_model and asr_fingerprint; build "
                              "its config with asr_frontend_config()")
        model = load_referenced(AcousticModelRef(config.asr_model, config.asr_fingerprint))
        if model.lstm.output_dim != config.asr_dim:
            raise ConfigError(f"asr_dim {config.asr_dim} does not match the acoustic "
                              f"model's {model.lstm.output_dim} states")
        self.config = config
        self._model = [model]  # in a list: nn.Module would register it as a submodule

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None):
        from .asr_frontend import hidden_states
        return hidden_states(self._model[0], waves, lengths)


def make_frontend(config: FrontendConfig) -> nn.Module:
    """The frame source named by ``config.kind``."""
    if config.kind == "features":
        return FeatureFrontend(config)
    if config.kind == "asr":
        return AsrFrontend(config)
    raise ConfigError(f"unknown embedder frontend {config.kind!r}; expected 'features' "
                      "or 'asr'")


class SequenceAutoencoder(nn.Module):
    """BiGRU encoder → vector → GRU decoder. Inputs are frontend frames."""

    def __init__(self, config: AutoencoderConfig, segment_mean: bool = True):
        super().__init__()
        self.config = config
        self.segment_mean = segment_mean
        c = config
        step_dim = c.input_dim * c.stack
        self.normalizer = Normalizer(c.input_dim)
        self.encoder = nn.GRU(step_dim, c.hidden, c.layers, batch_first=True,
                              bidirectional=True, dropout=c.dropout if c.layers > 1 else 0.0)
        self.project = nn.Linear(2 * c.hidden, c.dim)
        self.decoder_init = nn.Linear(c.dim, c.decoder_hidden)
        self.decoder = nn.GRU(c.dim + 1, c.decoder_hidden, batch_first=True)
        self.output = nn.Linear(c.decoder_hidden, step_dim)

    def prepare(self, feats: torch.Tensor, lengths: torch.Tensor):
        """Frames ``(batch, frames, feats)`` → normalised, stacked steps
        ``(batch, steps, feats * stack)`` and ``step_lengths (batch,)``; padding is zero."""
        return self.stack(self.normalize(feats, lengths), lengths)

    def normalize(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Segment mean removal (if configured) and global mean/variance normalisation of
        ``feats (batch, frames, feats)``; padding frames are set to zero."""
        mask = frame_mask(feats, lengths).unsqueeze(-1).float()  # (batch, frames, 1)
        if self.segment_mean:
            mean = (feats * mask).sum(1, keepdim=True) / lengths.view(-1, 1, 1).clamp(min=1)
            feats = feats - mean
        return self.normalizer(feats) * mask

    def stack(self, feats: torch.Tensor, lengths: torch.Tensor):
        """``(batch, frames, feats)`` → ``(batch, steps, feats * stack)``, ``(batch,)``."""
        s = self.config.stack
        feats = nn.functional.pad(feats, (0, 0, 0, (-feats.shape[1]) % s))
        steps = feats.reshape(feats.shape[0], feats.shape[1] // s, feats.shape[2] * s)
        return steps, (lengths + s - 1) // s

    def encode(self, steps: torch.Tensor, step_lengths: torch.Tensor) -> torch.Tensor:
        """Prepared ``steps (batch, steps, step_dim)`` → embeddings ``(batch, dim)``."""
        packed = pack_padded_sequence(steps, step_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, h = self.encoder(packed)  # h: (layers * 2, batch, hidden)
        return self.project(torch.cat([h[-2], h[-1]], dim=1))

    def decode(self, embeddings: torch.Tensor, step_lengths: torch.Tensor, steps: int,
               ) -> torch.Tensor:
        """``embeddings (batch, dim)`` → reconstructed ``(batch, steps, step_dim)``.

        The decoder sees only the vector and how far through the segment it is, so all
        content must pass through the vector."""
        t = torch.arange(steps, device=embeddings.device).unsqueeze(0)
        progress = (t / step_lengths.unsqueeze(1).clamp(min=1)).unsqueeze(-1)  # (batch, steps, 1)
        inputs = torch.cat([embeddings.unsqueeze(1).expand(-1, steps, -1), progress], dim=-1)
        h0 = torch.tanh(self.decoder_init(embeddings)).unsqueeze(0)
        out, _ = self.decoder(inputs, h0)
        return self.output(out)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        """Frames ``(batch, frames, feats)`` → ``embeddings (batch, dim)``,
        prepared ``steps (batch, steps, step_dim)``, ``step_lengths (batch,)``."""
        steps, step_lengths = self.prepare(feats, lengths)
        return self.encode(steps, step_lengths), steps, step_lengths


class Embedder(nn.Module):
    """Frontend + autoencoder: audio or frames in, unit-length vectors out."""

    def __init__(self, config: EmbedderConfig = EmbedderConfig()):
        super().__init__()
        if config.autoencoder.input_dim != config.frontend.dim:
            raise ConfigError(f"embedder input_dim {config.autoencoder.input_dim} does not "
                              f"match the frontend's {config.frontend.dim} features")
        self.config = config
        self.frontend = make_frontend(config.frontend)
        self.autoencoder = SequenceAutoencoder(config.autoencoder, config.frontend.segment_mean)
        self.info: dict = {}  # how the embedder was made (saved with it)
        self._numpy_weights = None  # cached for _embed_one; dropped when weights may change

    @property
    def dim(self) -> int:
        return self.config.autoencoder.dim

    @property
    def frames_per_second(self) -> float:
        return self.config.frontend.frames_per_second

    @torch.no_grad()
    def features(self, wave: np.ndarray) -> torch.Tensor:
        """One waveform ``(samples,)`` → frontend frames ``(frames, feats)``."""
        wave_t = torch.as_tensor(np.asarray(wave, dtype=np.float32)).unsqueeze(0)
        feats, _ = self.frontend(wave_t)
        return feats[0]

    @torch.no_grad()
    def embed_frames(self, seqs: Sequence[torch.Tensor]) -> np.ndarray:
        """Frame sequences, each ``(frames, feats)`` → unit vectors ``(n, dim)`` float32.

        Sequences are grouped by length so a batch holds similar lengths; the result
        does not depend on the grouping beyond float rounding. A handful of sequences
        (queries) take the numpy encoder of :mod:`asrkit.search.gru`: same result, less latency."""
        if self.training:
            self.eval()
        if len(seqs) <= SMALL_BATCH:
            return np.stack([self._embed_one(s) for s in seqs]) if seqs else \
                np.zeros((0, self.dim), np.float32)
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        for b in range(0, len(order), INFERENCE_BATCH):
            idx = order[b:b + INFERENCE_BATCH]
            batch = pad_sequence([seqs[i] for i in idx], batch_first=True)
            lengths = torch.tensor([len(seqs[i]) for i in idx])
            emb, _, _ = self.autoencoder(batch, lengths)
            out[idx] = nn.functional.normalize(emb, dim=1).numpy()
        return out

    def _embed_one(self, feats: torch.Tensor) -> np.ndarray:
        """One ``(frames, feats)`` sequence → unit vector ``(dim,)`` via numpy."""
        if self._numpy_weights is None:
            ae = self.autoencoder
            self._numpy_weights = (GruWeights(ae.encoder),
                                   ae.project.weight.detach().numpy().T.copy(),
                                   ae.project.bias.detach().numpy().copy())
        gru, w, b = self._numpy_weights
        steps, _ = self.autoencoder.prepare(feats.unsqueeze(0), torch.tensor([len(feats)]))
        v = final_states(steps[0].numpy(), gru) @ w + b
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    def train(self, mode: bool = True) -> "Embedder":
        self._numpy_weights = None  # weights may change (training) or have changed
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._numpy_weights = None
        return super().load_state_dict(*args, **kwargs)

    def embed_spans(self, feats: torch.Tensor, spans: Sequence[tuple[float, float]],
                    ) -> np.ndarray:
        """Windows (start, end seconds) of one recording's frames ``(frames, feats)``
        → unit vectors ``(n, dim)``. Frames are cut, not recomputed, per window."""
        return self.embed_frames([feats[a:b] for a, b in self.frame_ranges(feats, spans)])

    def frame_ranges(self, feats: torch.Tensor, spans) -> list[tuple[int, int]]:
        """(start, end) seconds → frame index ranges, at least one frame each."""
        fps, n = self.frames_per_second, len(feats)
        seconds = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
        starts = np.minimum(np.rint(seconds[:, 0] * fps).astype(np.int64), n - 1)
        ends = np.maximum(starts + 1, np.minimum(np.rint(seconds[:, 1] * fps).astype(np.int64), n))
        return list(zip(starts.tolist(), ends.tolist()))

    def embed_waves(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Waveforms, each ``(samples,)`` → unit vectors ``(n, dim)``."""
        return self.embed_frames([self.features(w) for w in waves])

    def fingerprint(self) -> str:
        """SHA-256 over config and weights: equal fingerprints, equal vectors."""
        return fingerprint(self.config.to_dict(), self.state_dict())


def save_embedder(path: str | os.PathLike, embedder: Embedder, info: dict | None = None) -> None:
    """Write ``embedder`` atomically; ``info`` (JSON-compatible; default
    ``embedder.info``) records how it was made."""
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
               "config": embedder.config.to_dict(),
               "info": dict(embedder.info if info is None else info),
               "state_dict": {k: v.detach().cpu() for k, v in embedder.state_dict().items()}}
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)


def load_embedder(path: str | os.PathLike | None = None) -> Embedder:
    """Load an embedder file (default: the one shipped inside the package)."""
    path = Path(path) if path is not None else default_embedder_path()
    payload = read_embedder_file(path)
    try:
        config = EmbedderConfig.from_dict(payload["config"])
        embedder = Embedder(config)
        embedder.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, ConfigError) as e:
        raise ModelFileError(f"{path}: embedder config or weights do not fit together "
                             f"({str(e).splitlines()[0][:200]}); the file is damaged or "
                             "from an incompatible asrkit version") from e
    embedder.info = dict(payload.get("info", {}))
    return embedder.eval()


def read_embedder_file(path: Path) -> dict:
    """The checked payload dict of an embedder file (no code is unpickled)."""
    if not path.is_file():
        raise ModelFileError(f"{path}: no such embedder file; train one with "
                             "`asrkit embedder train` or omit --embedder for the default")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign or damaged files
        raise ModelFileError(f"{path}: not a readable embedder file ({type(e).__name__}); "
                             "it may be truncated or not an asrkit embedder") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not an asrkit embedder file (is it an ASR model "
                             "or a training checkpoint?)")
    check_format_version(path, "embedder", payload.get("version", 0), FORMAT_VERSION)
    return payload


