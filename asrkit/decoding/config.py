"""Decoding-config files: the decoder and its options as JSON, written by
``asrkit lm tune`` and read by ``--decoding-config``.

A config is one JSON object: ``decoder`` (``"greedy"`` or ``"beam"``, default beam),
any :func:`asrkit.decoding.make_decoder` option, and an optional ``tuning`` record
(kept for people, ignored on load). The ``lm`` and ``lexicon`` paths are stored
relative to the config's folder when they lie inside it, so the folder can move.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DecodingOptionError
from ..io import atomic_write_json

CONFIG_KEYS = {"decoder", "beam_size", "lm", "alpha", "beta", "lexicon", "hotwords",
               "hotword_weight", "nbest", "beam_size_token", "beam_threshold",
               "token_min_logp", "unk_offset"}
# pruning and unknown-word defaults of the beam search (see BeamSearchDecoder)
BEAM_THRESHOLD = 10.0  # prefixes scoring this far below the best are dropped
TOKEN_MIN_LOGP = -5.0  # labels less likely than this at a frame are not tried (no lexicon)
UNK_OFFSET = -10.0  # LM score (natural log) of a word the LM does not know, on top of <unk>'s


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
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
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
    _check_config_values(raw, path)
    for k in ("lm", "lexicon"):
        if raw.get(k) is not None:
            raw[k] = str((path.parent / raw[k]).resolve())
    raw.setdefault("decoder", "beam")
    return raw


def _check_config_values(raw: dict, path: Path) -> None:
    """Refuse wrongly typed or out-of-range values, naming the file and the key."""
    for k in ("decoder", "lm", "lexicon"):
        if raw.get(k) is not None and not isinstance(raw[k], str):
            raise ConfigError(f"{path}: {k} must be a string, got {raw[k]!r}")
    hot = raw.get("hotwords")
    if hot is not None and not (isinstance(hot, list) and all(isinstance(h, str) for h in hot)):
        raise ConfigError(f"{path}: hotwords must be a list of strings, got {hot!r}")
    if raw.get("decoder", "beam") != "beam":
        return  # make_decoder refuses beam options given to greedy
    values = {"beam_size": 50, "nbest": 1, "alpha": 0.5, "beta": 1.0, "hotword_weight": 3.0,
              "beam_threshold": BEAM_THRESHOLD, "beam_size_token": None,
              "token_min_logp": None, "unk_offset": UNK_OFFSET}
    values.update({k: v for k, v in raw.items() if k in values})
    try:
        check_options(values["beam_size"], values["nbest"], values["alpha"], values["beta"],
                      values["hotword_weight"], values["beam_threshold"],
                      values["beam_size_token"], values["token_min_logp"],
                      values["unk_offset"])
    except DecodingOptionError as e:
        raise DecodingOptionError(f"{path}: {e}") from None


def check_options(beam_size, nbest, alpha, beta, hotword_weight, threshold, beam_size_token,
                  token_min_logp=None, unk_offset=UNK_OFFSET):
    """Refuse invalid beam-search options: a usage error (exit 2), like any bad config.
    ``threshold`` may be ``inf`` and ``token_min_logp`` ``-inf`` (no pruning)."""
    def whole(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    def number(v) -> bool:
        return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) \
            and math.isfinite(v)

    bad = DecodingOptionError
    if not whole(beam_size) or beam_size < 1:
        raise bad(f"beam_size must be a positive integer, got {beam_size!r}")
    if not whole(nbest) or not 1 <= nbest <= beam_size:
        raise bad(f"nbest must be between 1 and beam_size ({beam_size}), got {nbest!r}")
    for name, v in (("alpha", alpha), ("beta", beta), ("hotword_weight", hotword_weight),
                    ("unk_offset", unk_offset)):
        if not number(v):
            raise bad(f"{name} must be a finite number, got {v!r}")
    if alpha < 0 or hotword_weight < 0:
        raise bad("alpha and hotword_weight must not be negative")
    if not (number(threshold) or threshold == math.inf) or not threshold > 0:
        raise bad(f"beam_threshold must be positive (inf: no pruning), got {threshold!r}")
    if token_min_logp is not None and (
            not (number(token_min_logp) or token_min_logp == -math.inf) or token_min_logp > 0):
        raise bad(f"token_min_logp must be a log-probability (at most 0; -inf: every label "
                  f"tried), got {token_min_logp!r}")
    if beam_size_token is not None and (not whole(beam_size_token) or beam_size_token < 1):
        raise bad(f"beam_size_token must be a positive integer, got {beam_size_token!r}")


def _relative(p: Path, folder: Path) -> str:
    try:
        return p.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(p.resolve())
