"""The query side of search in plain numpy: features, GRU encoder and projection.

A search from the shell should answer in well under a second, but importing torch
alone takes about two seconds. A query is one short recording, so its embedding needs
none of torch's batching: this module recomputes exactly what
:meth:`asrkit.search.embedding.Embedder.embed_waves` computes for it (log-mel or MFCC
frames, segment mean, normalisation, frame stacking, bidirectional GRU, projection,
unit length), from arrays exported once from the embedder.

The arrays live next to the embedder in an index folder::

    query_encoder.npz   window, mel filterbank, [dct], mean, std, GRU and projection
                        weights, settings (JSON), and the SHA-256 of embedder.pt

It is derived from ``embedder.pt`` the way ``vectors.faiss`` is derived from SQLite:
written atomically when the index is built, rebuilt when missing or when the embedder
file's hash no longer matches, and never trusted over its source. Loaded with
``allow_pickle=False``. Embedders whose frames come from an acoustic model
(frontend ``asr``) need torch anyway and have no numpy encoder.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import atomic_open, file_digest

FILE = "query_encoder.npz"
FORMAT_VERSION = 1
LOG_FLOOR = 1e-6  # as asrkit.features.LOG_FLOOR (not imported: that module loads torch)


@dataclass(frozen=True)
class QueryEncoder:
    """Arrays of one embedder's query path. Shapes: ``window (n_fft,)``, ``mel (bins,
    n_mels)``, ``dct (n_mels, n_mfcc)`` or None, ``mean``/``std (feats,)``; per GRU layer
    and direction ``(w_ih (in, 3h), b_ih (3h,), w_hh (h, 3h), b_hh (3h,))``;
    ``project_w (2h, dim)``, ``project_b (dim,)``."""

    source_sha256: str  # of the embedder file the arrays came from
    hop: int  # samples between frames
    segment_mean: bool
    stack: int
    window: np.ndarray
    mel: np.ndarray
    dct: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray
    layers: tuple[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]], ...]
    project_w: np.ndarray
    project_b: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.project_b)

    def features(self, wave: np.ndarray) -> np.ndarray:
        """``wave (samples,)`` → frames ``(frames, feats)`` float32, as the torch frontend
        computes them (no centre padding; a too-short wave is zero-padded to one frame)."""
        n_fft = len(self.window)
        wave = np.asarray(wave, dtype=np.float32)
        if len(wave) < n_fft:
            wave = np.pad(wave, (0, n_fft - len(wave)))
        frames = 1 + (len(wave) - n_fft) // self.hop
        idx = np.arange(n_fft)[None, :] + self.hop * np.arange(frames)[:, None]
        spec = np.fft.rfft(wave[idx] * self.window, axis=1)  # (frames, bins)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        feats = np.log(power @ self.mel + np.float32(LOG_FLOOR))
        return feats @ self.dct if self.dct is not None else feats

    def embed(self, wave: np.ndarray) -> np.ndarray:
        """``wave (samples,)`` → unit vector ``(dim,)`` float32."""
        feats = self.features(wave)
        if self.segment_mean:
            feats = feats - feats.mean(axis=0)
        feats = (feats - self.mean) / self.std
        pad = (-len(feats)) % self.stack  # padding frames are zero after normalising
        feats = np.concatenate([feats, np.zeros((pad, feats.shape[1]), np.float32)])
        steps = feats.reshape(len(feats) // self.stack, -1)
        v = _final_states(steps, self.layers) @ self.project_w + self.project_b
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    def embed_waves(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Waveforms, each ``(samples,)`` → unit vectors ``(n, dim)``."""
        if not waves:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.embed(w) for w in waves])


def _final_states(x: np.ndarray, layers) -> np.ndarray:
    """``x (steps, in)`` → the top layer's last forward and first backward states
    ``(2 * hidden,)``, what ``h_n[-2:]`` of a bidirectional ``nn.GRU`` holds."""
    out = np.ascontiguousarray(x, dtype=np.float32)
    for fwd, bwd in layers:
        forward = _run(out, *fwd)
        backward = _run(out[::-1], *bwd)[::-1]
        out = np.concatenate([forward, backward], axis=1)
    return np.concatenate([forward[-1], backward[0]])


def _run(x, w_ih, b_ih, w_hh, b_hh) -> np.ndarray:
    """One direction of one layer with PyTorch's GRU equations: ``(steps, in)`` →
    ``(steps, hidden)``. A query has ~20 steps, so a Python loop costs ~1 ms."""
    hidden = w_hh.shape[0]
    gx = x @ w_ih + b_ih  # (steps, 3 * hidden): reset, update, new
    h = np.zeros(hidden, np.float32)
    states = np.empty((len(x), hidden), np.float32)
    for t in range(len(x)):
        gh = h @ w_hh + b_hh
        rz = 1.0 / (1.0 + np.exp(-(gx[t, :2 * hidden] + gh[:2 * hidden])))
        n = np.tanh(gx[t, 2 * hidden:] + rz[:hidden] * gh[2 * hidden:])
        h = n + rz[hidden:] * (h - n)
        states[t] = h
    return states


def export_query_encoder(embedder, source_sha256: str) -> QueryEncoder | None:
    """The numpy arrays of a torch :class:`~asrkit.search.embedding.Embedder`
    (None for an ``asr`` frontend, which needs its acoustic model)."""
    if embedder.config.frontend.kind != "features":
        return None
    mel = embedder.frontend.extractor.mel
    n_fft, win = mel.n_fft, mel.spectrogram.window.numpy()
    window = np.zeros(n_fft, np.float32)  # torch.stft centres a shorter window
    left = (n_fft - len(win)) // 2
    window[left:left + len(win)] = win
    dct = getattr(embedder.frontend.extractor, "dct", None)
    ae = embedder.autoencoder

    def arr(t):
        return np.ascontiguousarray(t.detach().float().numpy())

    layers = tuple(
        tuple((arr(getattr(ae.encoder, f"weight_ih_{s}").T), arr(getattr(ae.encoder, f"bias_ih_{s}")),
               arr(getattr(ae.encoder, f"weight_hh_{s}").T), arr(getattr(ae.encoder, f"bias_hh_{s}")))
              for s in (f"l{k}", f"l{k}_reverse"))
        for k in range(ae.encoder.num_layers))
    return QueryEncoder(source_sha256, int(mel.hop_length), bool(ae.segment_mean),
                        int(ae.config.stack), window, arr(mel.mel_scale.fb),
                        None if dct is None else arr(dct), arr(ae.normalizer.mean),
                        arr(ae.normalizer.std), layers, arr(ae.project.weight.T),
                        arr(ae.project.bias))


def save_query_encoder(path: str | os.PathLike, enc: QueryEncoder) -> None:
    """Write ``enc`` atomically as an ``.npz`` (no pickled objects)."""
    settings = {"version": FORMAT_VERSION, "source_sha256": enc.source_sha256,
                "hop": enc.hop, "segment_mean": enc.segment_mean, "stack": enc.stack,
                "layers": len(enc.layers)}
    arrays = {"settings": np.frombuffer(json.dumps(settings).encode(), np.uint8),
              "window": enc.window, "mel": enc.mel, "mean": enc.mean, "std": enc.std,
              "project_w": enc.project_w, "project_b": enc.project_b}
    if enc.dct is not None:
        arrays["dct"] = enc.dct
    for k, dirs in enumerate(enc.layers):
        for d, params in enumerate(dirs):
            for p, a in enumerate(params):
                arrays[f"gru_{k}_{d}_{p}"] = a
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_query_encoder(path: str | os.PathLike, source_sha256: str) -> QueryEncoder | None:
    """The encoder at ``path`` if it exists, is readable and was derived from the
    embedder file whose hash is ``source_sha256``; otherwise None (rebuild it)."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            settings = json.loads(bytes(z["settings"]).decode())
            if settings.get("version") != FORMAT_VERSION or \
                    settings.get("source_sha256") != source_sha256:
                return None
            layers = tuple(tuple(tuple(z[f"gru_{k}_{d}_{p}"] for p in range(4))
                                 for d in range(2)) for k in range(settings["layers"]))
            return QueryEncoder(source_sha256, int(settings["hop"]),
                                bool(settings["segment_mean"]), int(settings["stack"]),
                                z["window"], z["mel"], z["dct"] if "dct" in z else None,
                                z["mean"], z["std"], layers, z["project_w"], z["project_b"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):  # missing, damaged or foreign
        return None
