"""Helpers shared by the fault tests: run the CLI as a user types it, check that a
failure is one error line, and inject faults (read-only locations, a full disk)."""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asrkit.cli.main import app

runner = CliRunner()


def invoke(*args, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def assert_one_line_error(result, *fragments: str, code: int = 1) -> str:
    """The command failed with exit ``code`` and exactly one ``error:`` line holding
    every fragment, and no traceback; return that line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = re.findall(r"error: .*", result.stderr)  # a progress bar may precede it
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative name → bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _inside(path, folder: Path) -> bool:
    try:
        return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(folder.resolve())
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def read_only_folder(monkeypatch, folder: Path):
    """Make Python-level writes below ``folder`` fail with EROFS, as on a read-only
    mount (chmod does not stop root, so permission bits cannot simulate it). SQLite
    and FAISS write from C and are not stopped; tests check the folder is unchanged."""
    real_open, real_replace, real_mkdir = os.open, os.replace, os.mkdir
    real_io_open = io.open
    folder = Path(folder)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def ro_open(path, flags, *args, **kwargs):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)
        if writing and _inside(path, folder):
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def ro_replace(src, dst, *args, **kwargs):
        if _inside(dst, folder):
            refuse(dst)
        return real_replace(src, dst, *args, **kwargs)

    def ro_mkdir(path, *args, **kwargs):
        if _inside(path, folder):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def ro_io_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") \
                and _inside(file, folder):
            refuse(file)
        return real_io_open(file, mode, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(io, "open", ro_io_open)
        m.setattr(builtins, "open", ro_io_open)
        m.setattr(os, "open", ro_open)
        m.setattr(os, "replace", ro_replace)
        m.setattr(os, "mkdir", ro_mkdir)
        yield folder


@contextlib.contextmanager
def reported_seed(seed: int):
    """Name ``seed`` in any failure inside the block, so a random fault point that
    broke something can be replayed."""
    try:
        yield seed
    except BaseException as e:
        e.add_note(f"random fault point from seed {seed}: replay with this seed")
        raise


def random_seed() -> int:
    """A fresh seed, or the one in ASRKIT_FAULT_SEED to replay a failure."""
    import random
    return int(os.environ.get("ASRKIT_FAULT_SEED") or random.SystemRandom().randrange(2**32))


@pytest.fixture(autouse=True, scope="module")
def keep_thread_counts():
    """`--threads N` run in this process sets torch's and FAISS's thread counts for the
    whole process; put them back, so later modules compute exactly as they expect."""
    import faiss
    import torch
    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    yield
    torch.set_num_threads(before[0])
    faiss.omp_set_num_threads(before[1])
