"""SQLite connections of a search index whose every error names the database file.

Python's ``sqlite3`` errors name neither the file nor a remedy ("file is not a
database", "database disk image is malformed", "attempt to write a readonly
database"), and some only appear while rows are fetched, long after the file was
opened. Every statement and fetch here turns them into an :class:`AsrkitError` that
says which index and what to do, by the kind of failure: damaged, not writable, full.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import AsrkitError


class _Cursor(sqlite3.Cursor):
    """A cursor whose SQLite errors (also while fetching rows) name the database file."""

    path: Path

    def execute(self, *args):
        return _guarded(self.path, super().execute, *args)

    def executemany(self, *args):
        return _guarded(self.path, super().executemany, *args)

    def executescript(self, *args):
        return _guarded(self.path, super().executescript, *args)

    def fetchone(self):
        return _guarded(self.path, super().fetchone)

    def fetchmany(self, *args):
        return _guarded(self.path, super().fetchmany, *args)

    def fetchall(self):
        return _guarded(self.path, super().fetchall)

    def __next__(self):
        return _guarded(self.path, super().__next__)


class _Connection(sqlite3.Connection):
    path: Path

    def cursor(self, factory=_Cursor):
        cursor = super().cursor(factory)
        cursor.path = self.path
        return cursor

    def execute(self, *args):
        return self.cursor().execute(*args)

    def executemany(self, *args):
        return self.cursor().executemany(*args)

    def executescript(self, *args):
        return self.cursor().executescript(*args)


def _guarded(path: Path, fn, *args):
    try:
        return fn(*args)
    except sqlite3.Error as e:
        raise storage_error(path, e) from None


def connect(target: str, path: Path, uri: bool = False) -> _Connection:
    try:
        db = sqlite3.connect(target, timeout=30.0, isolation_level=None, uri=uri,
                             factory=_Connection)
    except sqlite3.Error as e:
        raise storage_error(path, e) from None
    db.path = path
    return db


def connect_read_only(path: Path) -> _Connection:
    """Open without writing anything, not even SQLite's -shm file. Without a -wal file
    every commit is in the database file itself, so it is opened as immutable (read as
    it is on disk); a -wal file left by a writer holds commits too, and needs the
    ordinary read-only mode (with its -shm file)."""
    if not path.is_file():
        raise AsrkitError(f"{path}: no such index database; create the index with "
                          "`asrkit index build`")
    uri = "file:" + os.path.abspath(path).replace("%", "%25").replace("?", "%3f") \
        .replace("#", "%23")
    wal = path.with_name(path.name + "-wal")
    db = connect(uri + ("?mode=ro" if wal.exists() else "?mode=ro&immutable=1"), path,
                 uri=True)
    db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # a damaged header fails now
    return db


_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_NOT_WRITABLE = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM,
                 sqlite3.SQLITE_AUTH)


def storage_error(path: Path, e: sqlite3.Error) -> AsrkitError:
    """The error a user sees: what happened to which file, and what to do about it."""
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _DAMAGED:
        return AsrkitError(f"{path.parent}: not an asrkit index or damaged ({e}); rebuild it "
                           "with `asrkit index build` into a new folder")
    if code in _NOT_WRITABLE:
        return AsrkitError(f"{path}: cannot open or write the index database ({e}); make the "
                           "folder writable (commands that only read, such as search and "
                           "index info, work on a read-only index)")
    return AsrkitError(f"{path}: cannot write the index database ({e}); it keeps every "
                       "recording finished so far. Free disk space or make the folder "
                       "writable, then run the command again to resume")
