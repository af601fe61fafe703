"""A trained asrkit acoustic model as a front end for audio search.

Search can lean on a recogniser in two places: its CTC alignment gives candidate word
segments (:mod:`asrkit.search.segments`, ``kind="words"``), and its top recurrent states are
frames for the embedder that carry far less of the speaker than log-mel does
(:mod:`asrkit.search.embedding`, ``kind="asr"``).

Embedders and indexes name the model they used by an :class:`AcousticModelRef`: the
name as a user gives it (a bundled name such as ``"an4"``, or an absolute file path)
plus a fingerprint of its config and weights. Loading a reference re-checks the
fingerprint, so vectors are never made by another model than the one recorded.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass

import torch

from ..audio import peak_gain
from ..asr.checkpoint import load_model
from ..errors import ModelFileError
from ..features import frame_mask
from ..io import fingerprint
from ..asr.model import AsrModel
from ..pretrained import is_bundled, resolve_model


@dataclass(frozen=True)
class AcousticModelRef:
    """Which acoustic model: bundled name or absolute path, and its fingerprint."""

    name: str
    fingerprint: str


def model_fingerprint(model: AsrModel) -> str:
    """SHA-256 over config, vocabulary and weights (as loaded, float32): the same model
    gives the same fingerprint whichever file or folder it was read from."""
    meta = {"model": asdict(model.config), "features": asdict(model.feature_config),
            "vocabulary": model.vocab.to_dict()}
    return fingerprint(meta, model.state_dict())


def reference_model(model: str | os.PathLike) -> tuple[AsrModel, AcousticModelRef]:
    """Load ``model`` (file, training folder or bundled name) and say how to find it
    again: bundled models by name, anything else by its absolute file path."""
    path = resolve_model(model)
    name = path.stem if is_bundled(path) else str(path.resolve())
    loaded = _load(name)
    return loaded, AcousticModelRef(name, model_fingerprint(loaded))


def load_referenced(ref: AcousticModelRef, user: str = "this embedder") -> AsrModel:
    """The model ``ref`` names, after checking it is still the same model.

    ``user`` names what needs it, for the error messages."""
    try:
        model = _load(ref.name)
    except ModelFileError as e:
        raise ModelFileError(f"{user} was made with the acoustic model {ref.name!r}, which "
                             f"cannot be loaded ({e}); put that model file back or rebuild "
                             f"with another --asr-model") from None
    found = model_fingerprint(model)
    if found != ref.fingerprint:
        raise ModelFileError(
            f"{user} was made with the acoustic model {ref.name!r} fingerprinted "
            f"{ref.fingerprint[:12]}, but {ref.name!r} is now {found[:12]} (the model "
            "changed); use the original model file, or retrain / rebuild with this one")
    return model


@functools.lru_cache(maxsize=4)
def _load(name: str) -> AsrModel:
    """Loaded once per process: index builds and searches ask for it per recording."""
    return load_model(name).eval()


def gain_normalize(model: AsrModel, waves: torch.Tensor, lengths: torch.Tensor,
                   ) -> torch.Tensor:
    """``waves (batch, samples)`` scaled as the model saw its training audio (peak to
    :data:`~asrkit.audio.PEAK_TARGET`, each row by its own peak within its length)."""
    if not model.feature_config.gain_normalize:
        return waves
    peaks = (waves.abs() * frame_mask(waves, lengths)).amax(dim=1)  # (batch,)
    gains = torch.tensor([peak_gain(float(p)) for p in peaks], dtype=waves.dtype)
    return waves * gains[:, None]


@torch.no_grad()
def hidden_states(model: AsrModel, waves: torch.Tensor, lengths: torch.Tensor | None = None):
    """``waves (batch, samples)`` → top recurrent states ``(batch, frames,
    model.lstm.output_dim)`` (``2 * hidden`` for a bidirectional model)
    at ``1 / model.frame_seconds`` frames per second, and ``lengths (batch,)``."""
    if lengths is None:
        lengths = torch.full((waves.shape[0],), waves.shape[1], dtype=torch.long)
    feats, feat_lengths = model.features(gain_normalize(model, waves, lengths), lengths)
    return model.encode(feats, feat_lengths)


@torch.no_grad()
def wave_log_probs(model: AsrModel, wave) -> torch.Tensor:
    """One waveform ``(samples,)`` → CTC log-probs ``(frames, vocab)``."""
    waves = torch.as_tensor(wave, dtype=torch.float32).unsqueeze(0)
    lengths = torch.tensor([waves.shape[1]])
    log_probs, _ = model(gain_normalize(model, waves, lengths), lengths)
    return log_probs[0]
