"""Crash-safe file writing (write to a temporary file beside the target, then rename),
and reading the text files users give us with errors that name the file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import AsrkitError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` only once the block succeeds.

    A crash or exception inside the block leaves any previous ``path`` untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _mode_for(path))  # mkstemp makes 0600; users expect open()'s mode
    except OSError as e:
        raise AsrkitError(f"{path.parent}: cannot write here ({e.strerror}); "
                          "choose a writable output folder") from e
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        raise AsrkitError(f"{path}: write failed ({e.strerror}); the previous file, "
                          "if any, is intact. Free disk space or choose another folder") from e
    except BaseException:
        _remove_quietly(tmp)
        raise


def read_user_text(path: str | os.PathLike, error: type[AsrkitError] = AsrkitError) -> str:
    """The UTF-8 text of a file the user gave (a transcript, lexicon, word list...).
    Raises ``error`` naming the file, and for text that is not UTF-8 the line and the
    byte, with the fix; a byte-order mark is dropped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x} at offset "
                    f"{e.start}); save the file as UTF-8") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _mode_for(path: Path) -> int:
    """The existing file's permissions, or those a plain open() would give under the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
