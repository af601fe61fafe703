"""The models shipped inside the package, and the one rule that turns a user's model
argument into a file.

``resolve_model(name_or_path)`` is used wherever a recognition model is named: loading,
export, the acoustic front end and word segments of search, ``asrkit models``. The rule:

1. an existing file is the model file;
2. an existing folder holding ``best.pt`` (else ``last.pt``) is a training run;
3. a bare bundled name (``an4``, no folder part) is the bundled model — even when the
   working folder holds a folder of that name without a model in it, which
   ``asrkit data prepare an4`` creates by default;
4. anything else is an error that names both ways to reach a model.

``EXAMPLE_CLIPS`` is a manifest of six short real recordings (AN4 and speechocean762
test speakers) to try a model on: ``asrkit evaluate MODEL EXAMPLE_CLIPS --worst 6``.

``embedder.pt`` is the search embedder, not a recognition model; it is found by
:func:`default_embedder_path`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ModelFileError

PRETRAINED_DIR = Path(__file__).parent
DEFAULT_MODEL = "an4"  # the recogniser used when none is named
EMBEDDER_FILE = "embedder.pt"
RUN_FILES = ("best.pt", "last.pt")  # what a training folder holds, preferred first
# Real recordings by speakers no bundled model heard, with reference text (clips/README.md)
EXAMPLE_CLIPS = PRETRAINED_DIR / "clips" / "clips.jsonl"


@dataclass(frozen=True)
class BundledModel:
    """A recognition model shipped with asrkit, as ``asrkit models`` lists it."""

    name: str
    path: str
    size_mb: float
    vocabulary: str
    trained_on: str | None = None
    train_hours: float | None = None
    test_wer: float | None = None
    test_cer: float | None = None
    streams: bool = False  # forward-only: `asrkit transcribe --stream` takes it

    def to_dict(self) -> dict:
        """JSON-ready; facts the model file does not record are left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def bundled_names() -> list[str]:
    """Names of the bundled recognition models, sorted."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt") if p.name != EMBEDDER_FILE)


def bundled_path(name: str) -> Path | None:
    """The file of bundled model ``name`` (``"an4"`` or ``"an4.pt"``), or None."""
    stem = name.removesuffix(".pt")
    if stem not in bundled_names():
        return None
    return PRETRAINED_DIR / f"{stem}.pt"


def is_bundled(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of the bundled recognition model files."""
    p = Path(path)
    return p.parent.resolve() == PRETRAINED_DIR.resolve() and p.name != EMBEDDER_FILE


def run_model(folder: Path) -> Path | None:
    """The model a training folder holds (``best.pt``, else ``last.pt``), or None."""
    for name in RUN_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def is_bare_name(name: str | os.PathLike) -> bool:
    """A name with no folder part (``an4``, not ``./an4`` or ``runs/an4``)."""
    text = os.fspath(name)
    return bool(text) and os.sep not in text and "/" not in text and text not in (".", "..")


def names_model(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` clearly names a model rather than audio: a ``.pt`` file,
    a training folder, or a bare bundled name. Used to read ``transcribe MODEL INPUT...``."""
    p = Path(name_or_path)
    if p.is_file():
        return p.suffix == ".pt"
    if p.is_dir() and run_model(p) is not None:
        return True
    return is_bare_name(name_or_path) and bundled_path(os.fspath(name_or_path)) is not None


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The model file ``name_or_path`` names (see the module docstring for the rule).

    Raises :class:`~asrkit.errors.ModelFileError` saying how to reach a model when it
    names none."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir() and (found := run_model(p)) is not None:
        return found
    bundled = bundled_path(os.fspath(name_or_path)) if is_bare_name(name_or_path) else None
    if bundled is not None:
        return bundled
    raise ModelFileError(_not_found(name_or_path, p))


def _not_found(given, p: Path) -> str:
    names = bundled_names()
    listed = f"bundled: {', '.join(names)}" if names else "none are bundled"
    stem = p.name.removesuffix(".pt")
    if stem in names:  # a path whose last part is a bundled name: say how to reach both
        other = f"the bundled model {stem!r} is reached by its bare name `{stem}`"
    else:
        other = f"no bundled model is named {os.fspath(given)!r} ({listed}; see `asrkit models`)"
    shown = os.fspath(given)
    if p.is_dir():
        return (f"{shown.rstrip('/')}/ holds no {' or '.join(RUN_FILES)}, and {other}; give a model file, "
                "a training folder or a bundled name")
    return (f"{shown}: no such model file or folder, and {other}; give a model file, a "
            "training folder or a bundled name")


def default_embedder_path() -> Path:
    """The search embedder shipped with asrkit."""
    return PRETRAINED_DIR / EMBEDDER_FILE


def list_models() -> list[BundledModel]:
    """The bundled recognition models with what they were trained on and their test
    error rates (read from each file's ``info``)."""
    import torch  # only here: resolving names must not load torch

    from ..asr.model import ModelConfig

    rows = []
    for name in bundled_names():
        path = PRETRAINED_DIR / f"{name}.pt"
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
            vocabulary = "".join(record["vocabulary"]["symbols"])
        except Exception as e:  # noqa: BLE001 - a damaged install must say which file
            raise ModelFileError(f"{path}: bundled model file is unreadable "
                                 f"({str(e)[:160]}); reinstall asrkit") from None
        info = record.get("info", {})
        rows.append(BundledModel(
            name=name, path=str(path), size_mb=round(path.stat().st_size / 1e6, 2),
            vocabulary=vocabulary,
            streams=ModelConfig(**record["model_config"]).streams,
            **{k: info[k] for k in ("trained_on", "train_hours", "test_wer", "test_cer")
               if k in info}))
    return rows
