"""SQLite metadata of a search index: settings, recordings, segments and their vectors.

Every change is one transaction, so the database is always in a committed state: a
recording is either fully present (all its segments and vectors) or absent. Settings
are JSON text; vectors are little-endian float32 blobs. ``revision`` counts changes to
the set of vectors, so a derived FAISS file can tell whether it is up to date.
Each recording also keeps a stamp of its file's content (size, modification time,
hash; see :mod:`asrkit.search.identity`), so a changed recording is re-indexed.

A store opened with ``read_only=True`` never writes (not even SQLite's journal files
when the folder does not allow them), so a read-only index can still be searched.
Any SQLite error becomes an :class:`AsrkitError` that names the file and says what to
do: a damaged file is rebuilt, a full disk or read-only folder needs space or rights.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import AsrkitError, ConfigError
from ..manifest import Utterance
from .database import connect, connect_read_only, storage_error
from .identity import FileStamp
from .segments import Span

FORMAT_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,          -- manifest id, or path relative to the archive folder
    audio TEXT NOT NULL,                -- absolute path of the audio file
    offset_s REAL NOT NULL DEFAULT 0,   -- where the indexed part starts in the file
    duration_s REAL,                    -- seconds indexed
    status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped')),
    reason TEXT,                        -- why it was skipped
    segments INTEGER NOT NULL DEFAULT 0,
    size INTEGER, mtime_ns INTEGER, digest TEXT  -- the audio file's FileStamp when indexed
);
-- AUTOINCREMENT: ids of removed segments are never reused, so a stale FAISS
-- entry can never be mistaken for a new segment.
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    start_s REAL NOT NULL,              -- seconds from the start of the audio file
    end_s REAL NOT NULL,
    vector BLOB NOT NULL                -- float32 × dim, unit length
);
CREATE INDEX IF NOT EXISTS segments_by_source ON segments(source_id);
"""
# Columns added after format 1 was first released; older databases gain them on open.
_ADDED_COLUMNS = {"sources": ("size INTEGER", "mtime_ns INTEGER", "digest TEXT")}


@dataclass(frozen=True)
class SourceRecord:
    id: int
    name: str
    audio: str
    status: str  # "indexed" or "skipped"
    reason: str | None
    segments: int
    duration: float | None


@dataclass(frozen=True)
class SourceIdentity:
    """What the store knows of a recording's identity (see :mod:`.identity`)."""

    status: str
    audio: str
    offset: float
    stamp: FileStamp | None  # None for recordings indexed before stamps were kept


@dataclass(frozen=True)
class SegmentRecord:
    id: int
    source: str  # source name
    audio: str  # audio file path
    start: float  # seconds in the audio file
    end: float


class IndexStore:
    """The SQLite database of one index folder."""

    FILE = "index.sqlite"

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self.db = connect_read_only(self.path) if read_only else self._connect()
        version = self.setting("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ConfigError(f"{self.path}: index format {version} is not supported by this "
                              f"asrkit (reads {FORMAT_VERSION}); rebuild the index")

    def _connect(self) -> sqlite3.Connection:
        db = connect(str(self.path), self.path)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS)
            for table, columns in _ADDED_COLUMNS.items():
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        except AsrkitError:
            db.close()
            raise
        return db

    def transaction(self):
        return _Transaction(self.db, self.path)

    def is_new(self) -> bool:
        row = self.db.execute("SELECT name FROM sqlite_master WHERE name = 'settings'").fetchone()
        return row is None or self.setting("embedder_fingerprint") is None

    def initialise(self, fingerprint: str, dim: int, embedder_config: dict,
                   segment_config: dict, factory: str | None) -> None:
        """Record what made the vectors; ``factory`` None = FAISS type chosen by size."""
        with self.transaction():
            for key, value in (("format_version", FORMAT_VERSION), ("dim", dim),
                               ("embedder_fingerprint", fingerprint),
                               ("embedder_config", embedder_config),
                               ("segment_config", segment_config), ("factory", factory),
                               ("revision", 0), ("faiss_revision", -1)):
                self._set(key, value)

    def setting(self, key: str, default=None):
        try:  # unguarded: a missing table means "not set", not a damaged file
            row = sqlite3.Connection.execute(
                self.db, "SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return default
            raise storage_error(self.path, e) from None
        except sqlite3.Error as e:
            raise storage_error(self.path, e) from None
        return json.loads(row[0]) if row else default

    def set_settings(self, **values) -> None:
        """Change several settings in one transaction."""
        with self.transaction():
            for key, value in values.items():
                self._set(key, value)

    def _set(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                        (key, json.dumps(value)))

    def _bump_revision(self) -> None:
        self._set("revision", self.setting("revision", 0) + 1)

    def add_source(self, utt: Utterance, duration: float, spans: Sequence[Span],
                   vectors: np.ndarray, stamp: FileStamp | None = None) -> None:
        """One recording with its segments and ``vectors (segments, dim)``, atomically;
        an earlier recording of the same name goes with all its segments."""
        blobs = np.ascontiguousarray(vectors, dtype="<f4")
        with self.transaction():
            self.db.execute("DELETE FROM sources WHERE name = ?", (utt.id,))
            cur = self.db.execute(
                "INSERT INTO sources (name, audio, offset_s, duration_s, status, segments, "
                "size, mtime_ns, digest) VALUES (?, ?, ?, ?, 'indexed', ?, ?, ?, ?)",
                (utt.id, utt.audio, utt.offset, duration, len(spans), *_stamp_row(stamp)))
            self.db.executemany(
                "INSERT INTO segments (source_id, start_s, end_s, vector) VALUES (?, ?, ?, ?)",
                ((cur.lastrowid, s.start, s.end, blobs[i].tobytes())
                 for i, s in enumerate(spans)))
            self._bump_revision()

    def copy_sources(self, sources: Iterable[tuple["IndexStore", int]],
                     progress: Callable[[int], None] | None = None) -> None:
        """Copy recordings, each given as (store, source id), with their segments, in
        one transaction. New ids follow the order given (segments keep their order)."""
        with self.transaction():
            for done, (other, source_id) in enumerate(sources, 1):
                row = other.db.execute(
                    "SELECT name, audio, offset_s, duration_s, status, reason, segments, "
                    "size, mtime_ns, digest FROM sources WHERE id = ?",
                    (source_id,)).fetchone()
                cur = self.db.execute(
                    "INSERT INTO sources (name, audio, offset_s, duration_s, status, reason, "
                    "segments, size, mtime_ns, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row)
                self.db.executemany(
                    "INSERT INTO segments (source_id, start_s, end_s, vector) VALUES (?, ?, ?, ?)",
                    ((cur.lastrowid, *r) for r in other.db.execute(
                        "SELECT start_s, end_s, vector FROM segments WHERE source_id = ? "
                        "ORDER BY id", (source_id,))))
                if progress:
                    progress(done)
            self._bump_revision()

    def record_skipped(self, utt: Utterance, reason: str,
                       stamp: FileStamp | None = None) -> None:
        """``utt`` could not be indexed; an earlier recording of that name is removed."""
        with self.transaction():
            removed = self.db.execute("DELETE FROM sources WHERE name = ? AND segments > 0",
                                      (utt.id,)).rowcount
            self.db.execute("DELETE FROM sources WHERE name = ?", (utt.id,))
            self.db.execute("INSERT INTO sources (name, audio, offset_s, status, reason, "
                            "size, mtime_ns, digest) VALUES (?, ?, ?, 'skipped', ?, ?, ?, ?)",
                            (utt.id, utt.audio, utt.offset, reason, *_stamp_row(stamp)))
            if removed:
                self._bump_revision()

    def update_identity(self, name: str, audio: str, stamp: FileStamp) -> None:
        """Record where a recording is now and its file's stamp, its content unchanged
        (the file was moved, copied or touched)."""
        with self.transaction():
            self.db.execute("UPDATE sources SET audio = ?, size = ?, mtime_ns = ?, digest = ? "
                            "WHERE name = ?", (audio, *_stamp_row(stamp), name))

    def remove_sources(self, ids: Sequence[int]) -> None:
        with self.transaction():
            self.db.executemany("DELETE FROM sources WHERE id = ?", ((i,) for i in ids))
            self._bump_revision()

    def resolve_sources(self, names: Sequence[str]) -> tuple[list[SourceRecord], list[str]]:
        """Sources matching each name (source name or audio path) → (found, missing)."""
        by_name = {s.name: s for s in self.sources()}
        by_audio: dict[str, list[SourceRecord]] = {}
        for s in by_name.values():
            by_audio.setdefault(str(Path(s.audio).resolve()), []).append(s)
        found, missing = {}, []
        for name in names:
            hits = ([by_name[name]] if name in by_name
                    else by_audio.get(str(Path(name).resolve()), []))
            missing += [] if hits else [name]
            found.update((s.id, s) for s in hits)
        return list(found.values()), missing

    def source_status(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT name, status FROM sources"))

    def source_identities(self) -> dict[str, SourceIdentity]:
        rows = self.db.execute("SELECT name, status, audio, offset_s, size, mtime_ns, digest "
                               "FROM sources")
        return {r[0]: SourceIdentity(r[1], r[2], r[3], None if r[6] is None
                                     else FileStamp(r[4], r[5], r[6])) for r in rows}

    def sources(self) -> list[SourceRecord]:
        rows = self.db.execute("SELECT id, name, audio, status, reason, segments, duration_s "
                               "FROM sources ORDER BY id")
        return [SourceRecord(*r) for r in rows]

    def segment_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]

    def segment_ids(self) -> np.ndarray:
        """All segment ids ``(n,)`` int64, ascending."""
        rows = self.db.execute("SELECT id FROM segments ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def iter_vectors(self, ids: np.ndarray | None = None, batch: int = 50_000,
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids (b,), vectors (b, dim))`` batches in id order (all, or only ``ids``)."""
        dim = self.setting("dim")
        wanted = None if ids is None else set(int(i) for i in ids)
        if wanted is not None and not wanted:
            return
        # New segments have the largest ids, so an id range keeps the scan short.
        low, high = (min(wanted), max(wanted)) if wanted else (0, 2**63 - 1)
        cursor = self.db.execute("SELECT id, vector FROM segments WHERE id BETWEEN ? AND ? "
                                 "ORDER BY id", (low, high))
        while rows := cursor.fetchmany(batch):
            if wanted is not None:
                rows = [r for r in rows if r[0] in wanted]
            if rows:
                vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
                yield (np.array([r[0] for r in rows], dtype=np.int64),
                       vecs.reshape(len(rows), dim).astype(np.float32))

    def segments(self, ids: Iterable[int]) -> dict[int, SegmentRecord]:
        ids = [int(i) for i in ids if i >= 0]
        out: dict[int, SegmentRecord] = {}
        for b in range(0, len(ids), 500):
            chunk = ids[b:b + 500]
            rows = self.db.execute(
                "SELECT g.id, s.name, s.audio, g.start_s, g.end_s FROM segments g "
                "JOIN sources s ON s.id = g.source_id "
                f"WHERE g.id IN ({','.join('?' * len(chunk))})", chunk)
            out.update((r[0], SegmentRecord(*r)) for r in rows)
        return out

    def segment_spans(self, ids: np.ndarray) -> np.ndarray:
        """``(n, 3)`` float array of (source id, start, end) for ``ids (n,)``, in order;
        source -1 for ids not in the store."""
        out = np.full((len(ids), 3), -1.0)
        ids = [int(i) for i in ids]
        where_ = {}
        for b in range(0, len(ids), 500):
            chunk = ids[b:b + 500]
            rows = self.db.execute("SELECT id, source_id, start_s, end_s FROM segments "
                                   f"WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            where_.update((r[0], r[1:]) for r in rows)
        for n, i in enumerate(ids):
            if i in where_:
                out[n] = where_[i]
        return out

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "IndexStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception). A full disk or a
    read-only folder becomes an :class:`AsrkitError`; the database keeps its last commit."""

    def __init__(self, db: sqlite3.Connection, path: Path):
        self.db, self.path = db, path

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")  # errors name the file (see _Connection)
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except AsrkitError:
                if self.db.in_transaction:
                    sqlite3.Connection.execute(self.db, "ROLLBACK")
                raise
        if self.db.in_transaction:  # SQLite has already rolled back after SQLITE_FULL
            sqlite3.Connection.execute(self.db, "ROLLBACK")


def _stamp_row(stamp: FileStamp | None) -> tuple:
    return (None, None, None) if stamp is None else (stamp.size, stamp.mtime_ns, stamp.digest)
