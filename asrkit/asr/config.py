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
    patience: int = 10  # epochs without validation-WER improvement before stopping
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
    return ExperimentConfig(**parts)


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
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(current, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
        elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(current, float) and isinstance(value, str):
            value = _float(value, f"{where}.{key}")  # YAML 1.1 reads 3e-3 as a string
        elif type(current) in (int, float, str) and not isinstance(value, type(current)):
            raise ConfigError(f"{where}.{key}: expected {type(current).__name__}, "
                              f"got {value!r}")
        clean[key] = value
    try:
        return dataclasses.replace(default, **clean)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {text!r}") from None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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
