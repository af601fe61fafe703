"""Crash-safe file writing (a temporary file beside the target, then rename), the rules
every asrkit file format shares (fingerprints and format versions), and reading the text
files users give us, with errors that name the file and line.

Versioned formats (model files, embedders) follow one rule: a file of this asrkit's
format version or older loads (older versions are read as they were written); a newer
one is refused with a message to upgrade asrkit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Mapping

from .errors import AsrkitError, ModelFileError, where


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
    except Exception as e:
        _remove_quietly(tmp)
        failed = _os_error_in(e)
        if failed is None:
            raise
        raise AsrkitError(f"{path}: write failed ({failed.strerror}); the previous file, "
                          "if any, is intact. Free disk space or choose another folder") from e
    except BaseException:
        _remove_quietly(tmp)
        raise


def _os_error_in(e: BaseException) -> OSError | None:
    """The OSError behind ``e``: itself, or one it was raised while handling. A writer
    may hide the disk's error: torch's zip writer, closing after a failed write, raises
    a RuntimeError about its file position whose context is the ENOSPC."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str, hint: str) -> Iterator[None]:
    """Hold an exclusive lock on an existing ``folder`` (on the folder itself: no lock file
    is written, and the lock dies with its process, however that ends). A second holder
    is refused with an :class:`AsrkitError` saying ``folder`` is in use by ``what``, and
    ``hint`` (what to do instead)."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AsrkitError(f"{folder}: in use by {what} still running; {hint}") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fingerprint(meta: dict, tensors: Mapping) -> str:
    """SHA-256 (hex) of ``meta`` (as sorted-key JSON), then of each tensor in name order
    (its name, then its bytes). Floating-point tensors are hashed as float32, so a
    half-precision copy of a model that loads as float32 gives the same fingerprint."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name, tensor in sorted(tensors.items()):
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        h.update(name.encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


def check_format_version(path, what: str, version, supported: int) -> None:
    """Apply the format-version rule (module docstring): raise :class:`ModelFileError`
    unless ``version`` is an integer no newer than ``supported``."""
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: {what} format version {version!r} is not a number; "
                             "the file is damaged or not an asrkit file")
    if version > supported:
        raise ModelFileError(f"{path}: {what} format version {version} is newer than this "
                             f"asrkit understands ({supported}); upgrade asrkit")


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


def decode_line(raw: bytes, path: Path, lineno: int, error: type[AsrkitError] = AsrkitError,
                what: str = "file") -> str:
    """One line of a user's text file as text, without the byte-order mark that starts
    files (and lines of files made by concatenation); bytes that are not UTF-8 raise
    ``error`` naming the file, line, byte and column."""
    try:
        return raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise error(f"{where(path, lineno)}: not valid UTF-8 (byte {raw[e.start]:#04x} at "
                    f"column {e.start + 1}); save the {what} as UTF-8") from None


def read_text_lines(path: str | os.PathLike, error: type[AsrkitError] = AsrkitError,
                    ) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file made by a user or another tool:
    byte-order marks starting a line and CR/LF line ends are dropped; bytes that are not
    UTF-8, NUL bytes and an unreadable file raise ``error`` naming the file (and line)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                line = decode_line(raw, path, lineno, error)
                if "\0" in line:
                    raise error(f"{where(path, lineno)}: holds a NUL byte; is this a text "
                                "file?")
                yield lineno, line.rstrip("\r\n")
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None
