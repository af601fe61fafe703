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


class DecodingOptionError(ConfigError, DecodingError):
    """A decoder option is invalid (``beam_size`` 0, NaN ``alpha``, an LM for greedy):
    invalid configuration, so a usage error (exit 2)."""


def where(path, line: int | None = None) -> str:
    """Format a location for an error message: ``path`` or ``path:line``."""
    return f"{path}:{line}" if line is not None else str(path)
