"""One error family for the whole package.

Every error a user can cause (bad audio, bad manifest line, wrong model file) is an
:class:`AsrkitError`. Its message says what was wrong, where, and what to do; the CLI
prints it on one line and exits non-zero, without a traceback.
"""

from __future__ import annotations


class AsrkitError(Exception):
    """Base class of every error asrkit raises on purpose."""

    exit_code = 1


class ConfigError(AsrkitError, ValueError):
    """A configuration value or override is invalid."""

    exit_code = 2


class AudioError(AsrkitError):
    """An audio file is missing, unreadable, empty, or holds non-finite samples."""


class ManifestError(AsrkitError):
    """A manifest (or imported data directory) is malformed."""


class VocabularyError(AsrkitError):
    """Text holds symbols the model's vocabulary cannot represent."""


class ModelFileError(AsrkitError):
    """A model/checkpoint file is missing, corrupt, untrusted or of an unknown format."""


class DecodingError(AsrkitError):
    """Decoder input or decoder resources (LM, lexicon) are invalid."""


class AlignmentError(AsrkitError):
    """A transcript cannot be aligned to its recording: the audio is too short for it,
    or a long recording offers no recognised words to cut it at."""


class DecodingOptionError(ConfigError, DecodingError):
    """A decoder option is invalid (``beam_size`` 0, NaN ``alpha``, an LM for greedy):
    invalid configuration, so a usage error (exit 2)."""


def where(path, line: int | None = None) -> str:
    """Format a location for an error message: ``path`` or ``path:line``."""
    return f"{path}:{line}" if line is not None else str(path)


# errno values by what the user can do about them
_READ_ONLY = {30, 13, 1}  # EROFS, EACCES, EPERM
_FULL = {28, 122}  # ENOSPC, EDQUOT
_MISSING = {2, 20, 21}  # ENOENT, ENOTDIR, EISDIR


def as_user_error(e: BaseException) -> AsrkitError | None:
    """The :class:`AsrkitError` for a failure of the user's files or disk that reached
    the top of a command unconverted (an ``OSError``, a damaged SQLite file, text that
    is not UTF-8), naming the file where known and what to do; None for anything else,
    which is a bug and keeps its traceback."""
    import sqlite3
    if isinstance(e, OSError) and e.errno is not None:
        name = e.filename if e.filename is not None else "a file"
        what = f"{name}: {e.strerror or e}"
        if e.errno in _READ_ONLY:
            return AsrkitError(f"{what}; the location is read-only or not yours: choose a "
                               "writable folder (finished outputs are kept)")
        if e.errno in _FULL:
            return AsrkitError(f"{what}; free disk space and run the command again "
                               "(finished outputs are kept)")
        if e.errno in _MISSING:
            return AsrkitError(f"{what}; check the path")
        return AsrkitError(f"{what}; check the file and the device it is on")
    if isinstance(e, sqlite3.DatabaseError):
        return AsrkitError(f"an index database is damaged or not an asrkit index ({e}); "
                           "rebuild it with `asrkit index build`")
    if isinstance(e, UnicodeDecodeError):
        return AsrkitError(f"a text file is not UTF-8 (byte {e.object[e.start]:#04x} at "
                           f"offset {e.start}); save it as UTF-8")
    return None
