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
    """Make writes below ``folder`` fail with EROFS, as on a read-only mount (chmod does
    not stop root, so permission bits cannot simulate it): Python's file opens,
    renames and mkdir (FAISS files are written through Python too), and SQLite
    databases below it, which open read-only (SQLite writes from C)."""
    import sqlite3
    real_open, real_replace, real_mkdir = os.open, os.replace, os.mkdir
    real_connect = sqlite3.connect
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

    def ro_connect(target, *args, **kwargs):
        if isinstance(target, (str, os.PathLike)) and not str(target).startswith("file:") \
                and _inside(target, folder):
            # immutable: no -shm file either, which a read-only mount would not allow
            uri = "file:" + os.path.abspath(os.fsdecode(target)) + "?mode=ro&immutable=1"
            return real_connect(uri, *args, **{**kwargs, "uri": True})
        return real_connect(target, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(sqlite3, "connect", ro_connect)
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


# --- a disk that fills up -------------------------------------------------------------

def _used(folder: Path) -> int:
    """Bytes of every file below ``folder``: what the files there take on the disk."""
    total, stack = 0, [folder]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


class Disk:
    """The space below one folder as a disk with ``free`` bytes left (None: unlimited,
    only measured), for :func:`small_disk`. A write that would take the files below the
    folder past that size writes what fits, then fails with ENOSPC, as a full file
    system does; ``peak`` is the most the folder held at any write (what an
    uninterrupted run needs)."""

    def __init__(self, folder: Path, free: int | None):
        self.folder, self.free = Path(folder), free
        self.start = _used(self.folder)
        self.peak = 0

    def room(self) -> int | None:
        used = _used(self.folder) - self.start
        self.peak = max(self.peak, used)
        return None if self.free is None else max(0, self.free - used)


class _LimitedRaw(io.RawIOBase):
    """A raw file whose writes stop, with ENOSPC, where its :class:`Disk` is full."""

    def __init__(self, raw: io.FileIO, disk: Disk):
        self.raw, self.disk = raw, disk

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        room = self.disk.room()
        if room is not None:
            at, size = self.raw.tell(), os.fstat(self.raw.fileno()).st_size
            fits = max(0, size - at) + room  # overwriting takes no new space
            if len(data) > fits:
                self.raw.write(data[:fits])  # what fits reaches the disk, as it would
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.raw.name)
        written = self.raw.write(data)
        self.disk.room()  # note the new peak
        return written

    def readinto(self, buffer):
        return self.raw.readinto(buffer)

    def seek(self, *args):
        return self.raw.seek(*args)

    def tell(self):
        return self.raw.tell()

    def truncate(self, *args):
        return self.raw.truncate(*args)

    def fileno(self):
        return self.raw.fileno()

    def readable(self):
        return self.raw.readable()

    def writable(self):
        return self.raw.writable()

    def seekable(self):
        return self.raw.seekable()

    def close(self):
        self.raw.close()
        super().close()

    @property
    def name(self):
        return self.raw.name

    @property
    def mode(self):
        return self.raw.mode


def _target(file) -> str | None:
    """The path a file argument of open() writes to (an fd is looked up in /proc)."""
    if isinstance(file, int):
        try:
            return os.readlink(f"/proc/self/fd/{file}")
        except OSError:
            return None
    return os.fsdecode(file) if isinstance(file, (str, bytes, os.PathLike)) else None


def _limited_open(real_open, disk: Disk):
    def limited_open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
                     closefd=True, opener=None):
        path = _target(file)
        if not (set(mode) & set("wax+")) or path is None or not _inside(path, disk.folder):
            return real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
        binary = mode.replace("t", "").replace("b", "") + "b"
        raw = real_open(file, binary, 0, None, None, None, closefd, opener)
        limited = _LimitedRaw(raw, disk)
        if buffering == 0:
            return limited
        if "+" in mode:
            buffered = io.BufferedRandom(limited)
        else:
            buffered = io.BufferedWriter(limited)
        if "b" in mode:
            return buffered
        text = io.TextIOWrapper(buffered, encoding, errors, newline, line_buffering=buffering == 1)
        text.mode = mode
        return text
    return limited_open


@contextlib.contextmanager
def small_disk(monkeypatch, folder: Path, free: int | None):
    """Run the block as if ``folder`` were on a disk with ``free`` bytes left
    (None: as much as needed, only measuring; see :class:`Disk`).

    Every file Python opens for writing below the folder (``open``, ``io.open`` and so
    ``os.fdopen``, which :func:`asrkit.io.atomic_open` uses; torch, soundfile and FAISS
    write through those file objects) shares the space. An SQLite database below the
    folder gets, when opened, what is left as its ``max_page_count``, so it fills
    (SQLITE_FULL) where the disk would."""
    import sqlite3
    disk = Disk(folder, free)
    real_connect = sqlite3.connect

    def connect(target, *args, **kwargs):
        db = real_connect(target, *args, **kwargs)
        path = str(target).removeprefix("file:").split("?", 1)[0]
        room = disk.room()
        if room is not None and "mode=ro" not in str(target) and _inside(path, disk.folder):
            cursor = sqlite3.Cursor(db)
            pages, page_size = (cursor.execute(f"PRAGMA {name}").fetchone()[0]
                                for name in ("page_count", "page_size"))
            cursor.execute(f"PRAGMA max_page_count = {max(1, pages + room // page_size)}")
        return db

    limited_open = _limited_open(io.open, disk)
    with monkeypatch.context() as m:
        m.setattr(io, "open", limited_open)
        m.setattr(builtins, "open", limited_open)
        m.setattr(sqlite3, "connect", connect)
        yield disk


def free_space(seed: int, needed: int) -> int:
    """The free space for a seeded run: a random number of bytes below what an
    uninterrupted run needs, so the disk fills at a random point of the work."""
    import random
    assert needed > 0, "the uninterrupted run wrote nothing below the folder"
    return random.Random(seed).randrange(needed)
