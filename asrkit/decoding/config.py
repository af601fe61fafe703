"""Decoding-config files: the decoder and its options as JSON, written by
``asrkit lm tune`` and read by ``--decoding-config``.

A config is one JSON object: ``decoder`` (``"greedy"`` or ``"beam"``, default beam),
any :func:`asrkit.decoding.make_decoder` option, and an optional ``tuning`` record
(kept for people, ignored on load). The ``lm`` and ``lexicon`` paths are stored
relative to the config's folder when they lie inside it, so the folder can move.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write_json

CONFIG_KEYS = {"decoder", "beam_size", "lm", "alpha", "beta", "lexicon", "hotwords",
               "hotword_weight", "nbest", "beam_size_token", "beam_threshold"}


def save_decoding_config(path: str | Path, options: dict, tuning: dict | None = None) -> None:
    """Write decoder options (``decoder`` plus :func:`make_decoder` options) as JSON,
    atomically; file paths are stored relative to the config's folder when inside it."""
    path = Path(path)
    out = {}
    for k, v in options.items():
        if k not in CONFIG_KEYS:
            raise ConfigError(f"{k!r} is not a decoding option")
        if k in ("lm", "lexicon") and v is not None:
            v = _relative(Path(v), path.parent)
        out[k] = list(v) if isinstance(v, tuple) else v
    if tuning is not None:
        out["tuning"] = tuning
    atomic_write_json(path, out)


def load_decoding_config(path: str | Path) -> dict:
    """Options from a decoding config JSON: ``decoder`` ("greedy"/"beam") and the
    :func:`~asrkit.decoding.make_decoder` options. File paths are resolved against
    the config's folder; the ``tuning`` record is left out."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: decoding config not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a decoding config JSON file ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a decoding config is a JSON object")
    raw.pop("tuning", None)
    unknown = set(raw) - CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown decoding option(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(CONFIG_KEYS))}")
    for k in ("lm", "lexicon"):
        if raw.get(k) is not None:
            raw[k] = str((path.parent / raw[k]).resolve())
    raw.setdefault("decoder", "beam")
    return raw


def _relative(p: Path, folder: Path) -> str:
    try:
        return p.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(p.resolve())
