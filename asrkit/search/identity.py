"""What makes an indexed recording the same recording: its name, and its content.

A name alone is not enough: a folder re-synced from elsewhere can hold a different
recording under an old name, and skipping it would leave the new audio unsearchable
while the index answers with segments of audio that no longer exists. So the index
records a :class:`FileStamp` of every recording's file, and ``index add`` / a resumed
``index build`` re-index a recording whose content changed (its old segments are
replaced in the same transaction).

Comparing is cheap in the common case: size and modification time equal means
unchanged. When either differs the file is hashed, so a file that was only touched or
copied (new mtime, same bytes) is not embedded again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..io import file_digest



@dataclass(frozen=True)
class FileStamp:
    size: int  # bytes
    mtime_ns: int
    digest: str  # SHA-256 of the content, hex (asrkit.io.file_digest)


def file_stamp(path: str | os.PathLike) -> FileStamp | None:
    """The stamp of the file at ``path``, or None if it cannot be read (the indexer
    reports that file with its own error)."""
    try:
        st = os.stat(path)
        return FileStamp(st.st_size, st.st_mtime_ns, file_digest(path))
    except OSError:
        return None


def content_changed(old: FileStamp, path: str | os.PathLike) -> tuple[bool, FileStamp | None]:
    """Whether the file at ``path`` no longer holds the content ``old`` describes, and
    its current stamp (None when unchanged by size and time, or unreadable). A file
    that cannot be read now counts as unchanged: its indexed segments are kept and the
    user still finds them, rather than losing them to a passing error."""
    try:
        st = os.stat(path)
    except OSError:
        return False, None
    if st.st_size == old.size and st.st_mtime_ns == old.mtime_ns:
        return False, None
    now = file_stamp(path)
    if now is None:
        return False, None
    return now.digest != old.digest, now
