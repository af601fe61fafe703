"""Self-describing model files.

A model file is a plain dictionary of tensors, numbers and strings, readable with
``torch.load(..., weights_only=True)`` — so a file from a stranger cannot run code::

    {"format": "asrkit-model", "format_version": 1, "asrkit_version": "...",
     "model_config": {...}, "feature_config": {...}, "vocabulary": {...},
     "state_dict": {...}, "info": {...}}

A calibrated model file adds ``"calibration"``: the word-confidence map of
:class:`asrkit.asr.calibration.Calibration` as plain numbers (``asrkit calibrate``
writes it; files without it load with raw confidences).

Training checkpoints add a ``"training"`` entry: the experiment config and the
optimiser, scheduler, loss-scaler (and weight-average) state and the loop's progress.
They hold no random-generator state; training seeds each batch from its position
instead (see :mod:`asrkit.asr.training`).

Versions follow the rule of :mod:`asrkit.io`: files of ``FORMAT_VERSION`` or older load,
newer ones are refused with a message to upgrade.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import torch

from .. import __version__
from ..errors import AsrkitError, ModelFileError
from ..features import FeatureConfig
from ..io import atomic_open, check_format_version
from ..pretrained import resolve_model
from .model import AsrModel, ModelConfig
from ..text import Vocabulary
from .calibration import Calibration

FORMAT = "asrkit-model"
FORMAT_VERSION = 1


def model_record(model: AsrModel, info: dict | None = None) -> dict:
    """Everything needed to rebuild ``model``, as a weights-only-loadable dict."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "asrkit_version": __version__,
        "model_config": dataclasses.asdict(model.config),
        "feature_config": dataclasses.asdict(model.feature_config),
        "vocabulary": model.vocab.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "info": dict(info or {}),
    }


def save_model(path: str | os.PathLike, model: AsrModel, info: dict | None = None) -> None:
    """Write a model file atomically."""
    save_record(path, model_record(model, info))


def save_record(path: str | os.PathLike, record: dict) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(record, f)


def load_record(path: str | os.PathLike) -> dict:
    """Load a model or checkpoint file safely; raise :class:`ModelFileError` if it is
    missing, corrupt, executable (pickled objects) or not an asrkit model."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFileError(f"{path}: refused: the file holds Python objects that would run "
                             "code when loaded; only plain asrkit model files are accepted "
                             f"({str(e).splitlines()[0][:160]})") from None
    except Exception as e:  # noqa: BLE001 - any parse failure of an untrusted file
        # (torch raises KeyError, IndexError, zipfile errors... on garbage input)
        raise ModelFileError(f"{path}: not a readable model file ({str(e)[:160]}); "
                             "it may be truncated — use another copy") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an asrkit model file")
    check_format_version(path, "model", record.get("format_version", 0), FORMAT_VERSION)
    return record


def model_from_record(record: dict, path: str | os.PathLike = "<model>") -> AsrModel:
    try:
        model = AsrModel(Vocabulary.from_dict(record["vocabulary"]),
                         ModelConfig(**record["model_config"]),
                         FeatureConfig(**record["feature_config"]))
        model.load_state_dict(record["state_dict"])
    except (KeyError, TypeError, RuntimeError, AsrkitError) as e:  # AsrkitError: bad config
        raise ModelFileError(f"{path}: model file is inconsistent ({str(e)[:200]})") from None
    model.eval()
    return model


def load_model(path: str | os.PathLike) -> AsrModel:
    """Load an :class:`AsrModel` from a model file or a training checkpoint.

    ``path`` may also name the folder a training run wrote (``best.pt`` is used) or a
    bundled model by name (see ``asrkit models``); :func:`asrkit.pretrained.resolve_model`
    gives the rule.
    """
    path = resolve_model(path)
    record = load_record(path)
    model = model_from_record(record, path)
    model.info = record.get("info", {})
    model.calibration = record_calibration(record, path)
    return model


def record_calibration(record: dict, path: str | os.PathLike = "<model>") -> Calibration | None:
    """The word-confidence calibration a model record carries, or None."""
    if record.get("calibration") is None:
        return None
    try:
        return Calibration.from_dict(record["calibration"])
    except (TypeError, ValueError, AsrkitError) as e:
        raise ModelFileError(f"{path}: its confidence calibration is damaged "
                             f"({str(e)[:200]}); calibrate the model again") from None


def calibrated_record(record: dict, calibration: Calibration) -> dict:
    """A copy of a model record (training state dropped) carrying ``calibration``."""
    out = {k: v for k, v in record.items() if k != "training"}
    out["calibration"] = calibration.to_dict()
    return out


def bundle_record(record: dict, info: dict) -> dict:
    """A compact copy of a model record for shipping: float weights stored as fp16
    (half the size; they are cast back to fp32 on load) and no training state."""
    out = {k: v for k, v in record.items() if k != "training"}
    out["state_dict"] = {k: v.half() if v.is_floating_point() else v
                         for k, v in record["state_dict"].items()}
    out["info"] = {**record.get("info", {}), **info}
    return out
