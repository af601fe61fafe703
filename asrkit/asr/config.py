"""Experiment configuration: YAML file + ``key=value`` overrides → frozen dataclasses.

A config file has one section per component::

    model:    {layers: 3, hidden: 256, subsample: 2}
    features: {kind: fbank, n_mels: 80}
    augment:  {time_masks: 2}
    train:    {epochs: 30, lr: 0.0015}

Unknown keys are errors (a typo must never be silently ignored). Values given with
``--set train.lr=0.002`` are parsed as YAML scalars.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from ..errors import ConfigError
from ..features import AugmentConfig, FeatureConfig
from .model import ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_seconds: float = 60.0  # padded audio per batch
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 1e-2
    warmup_steps: int = 300  # at most a tenth of all steps
    final_lr_ratio: float = 0.05  # cosine decay ends at lr * this
    grad_clip: float = 5.0
    ema: float = 0.0  # decay of an exponential moving average of the weights, used for
    # validation and best.pt (e.g. 0.998; 0 = off)
    patience: int = 10  # epochs without validation improvement (see select_by) before stopping
    select_by: Literal["wer", "cer", "loss"] = "wer"  # what makes an epoch best.pt: its
    # validation WER (ties: loss), CER (ties: loss) or loss. CER keeps choosing while WER
    # is still near 100 % on hard data.
    checkpoint_every: int = 100  # steps between checkpoints (plus one per epoch)
    seed: int = 0
    case: Literal["upper", "lower", "keep"] = "upper"  # transcript case policy
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast for the LSTM (fp16: CUDA
    # only, with loss scaling); CTC stays fp32
    accumulate: int = 1  # batches per process per optimiser step; the global batch of a
    # step is processes x accumulate bucketed batches
    speed_perturb: bool = True
    spec_augment: bool = True
    max_steps: int = 0  # stop after this many steps (0 = no limit); for quick runs
    freeze_epochs: int = 0  # with --init: train only the output layer for this many epochs
    threads: int = 0  # torch threads (0 = all cores)
    sortagrad: bool = False  # first epoch: batches in order of length, shortest first
    # (DeepSpeech 2's SortaGrad: short utterances give tamer gradients early on)


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(ExperimentConfig)}

_INF = math.inf
# Allowed range of each numeric value: (low, high, low excluded). A value outside it is
# refused when the config is read, not discovered epochs later; NaN and infinity never pass.
# Model values are checked by ModelConfig itself.
LIMITS: dict[str, tuple[float, float, bool]] = {
    "train.epochs": (1, _INF, False),
    "train.batch_seconds": (0, _INF, True),
    "train.lr": (0, _INF, True),
    "train.weight_decay": (0, _INF, False),
    "train.warmup_steps": (0, _INF, False),
    "train.final_lr_ratio": (0, 1, False),
    "train.grad_clip": (0, _INF, True),
    "train.ema": (0, 0.99999, False),
    "train.patience": (1, _INF, False),
    "train.checkpoint_every": (1, _INF, False),
    "train.seed": (0, 2**32 - 1, False),
    "train.accumulate": (1, _INF, False),
    "train.max_steps": (0, _INF, False),
    "train.threads": (0, 1024, False),
    "features.n_mels": (1, 512, False),
    "features.n_mfcc": (1, 512, False),
    "features.sample_rate": (1000, 192_000, False),
    "features.win_ms": (1, 1000, False),
    "features.hop_ms": (1, 1000, False),
    "augment.freq_masks": (0, _INF, False),
    "augment.freq_mask_width": (0, _INF, False),
    "augment.time_masks": (0, _INF, False),
    "augment.time_mask_width": (0, _INF, False),
    "augment.time_mask_max_ratio": (0, 1, False),
    "augment.speed_factors": (0.25, 4.0, False),  # each factor; resampling far beyond
    # this leaves too few samples (or too many frames) to learn from
}


def check_limits(config: ExperimentConfig, source: str = "config") -> ExperimentConfig:
    """Refuse values outside :data:`LIMITS`, naming the key, the value and the range."""
    for key, (low, high, open_low) in LIMITS.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        for v in value if isinstance(value, tuple) else (value,):
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and (v > low if open_low else v >= low) and v <= high)
            if not ok:
                allowed = (f"above {low:g}" if open_low else f"{low:g} or more"
                           if math.isinf(high) else f"{low:g} to {high:g}")
                raise ConfigError(f"{source}: {key}={v!r} is out of range; allowed: "
                                  f"{allowed}")
    if config.train.speed_perturb and not config.augment.speed_factors:
        raise ConfigError(f"{source}: augment.speed_factors is empty; give at least one "
                          "factor (e.g. [1.0]) or set train.speed_perturb=false")
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from an optional YAML file and overrides."""
    data: dict[str, dict] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    for item in overrides:
        section, key, value = _parse_override(item)
        data.setdefault(section, {})[key] = value
    return config_from_dict(data, source=str(path) if path else "--set")


def config_from_dict(data: dict, source: str = "config") -> ExperimentConfig:
    parts = {}
    for section, values in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section {section!r}; "
                              f"expected one of {', '.join(_SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping")
        parts[section] = _build(_SECTIONS[section](), values, f"{source}: {section}")
    return check_limits(ExperimentConfig(**parts), source)


def _build(default, values: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(default)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown key; known keys: {', '.join(known)}")
    hints = typing.get_type_hints(type(default))
    clean = {}
    for key, value in values.items():
        current = getattr(default, key)
        choices = typing.get_args(hints[key]) if typing.get_origin(hints[key]) is Literal else ()
        if choices and value not in choices:  # e.g. precision=fp64 must not mean fp32
            raise ConfigError(f"{where}.{key}: expected one of {', '.join(map(str, choices))}, "
                              f"got {value!r}")
        if isinstance(current, tuple) and typing.get_args(hints[key])[:1] == (str,):
            value = _text_tuple(value, f"{where}.{key}")
        elif isinstance(current, tuple):
            value = _number_tuple(value, f"{where}.{key}")
        elif isinstance(current, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
        elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(current, float) and isinstance(value, str):
            value = _float(value, f"{where}.{key}")  # YAML 1.1 reads 3e-3 as a string
        elif type(current) in (int, float, str) and (not isinstance(value, type(current))
                                                     or isinstance(value, bool)):
            raise ConfigError(f"{where}.{key}: expected {type(current).__name__}, "
                              f"got {value!r}")
        clean[key] = value
    try:
        return dataclasses.replace(default, **clean)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _number_tuple(value, where: str) -> tuple[float, ...]:
    """A list of numbers (a lone number is a list of one), as floats."""
    items = value if isinstance(value, (list, tuple)) else [value]
    numbers = []
    for v in items:
        if isinstance(v, str):
            v = _float(v, where)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}: expected a list of numbers such as [0.9, 1.0, 1.1], "
                              f"got {value!r}")
        numbers.append(float(v))
    return tuple(numbers)


def _text_tuple(value, where: str) -> tuple[str, ...]:
    """A list of names (a lone name, or names split by commas, is a list too)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{where}: expected a list of names such as [colored, babble], "
                          f"got {value!r}")
    return tuple(v.strip() for v in items)


def _float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {text!r}") from None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; save the config as UTF-8") \
            from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _parse_override(item: str) -> tuple[str, str, Any]:
    key, sep, raw = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.lr=0.001")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return section, name, value
