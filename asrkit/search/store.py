"""SQLite metadata of a search index: settings, recordings, segments and their vectors.

Every change is one transaction, so the database is always in a committed state: a
recording is either fully present (all its segments and vectors) or absent. Settings
are JSON text; vectors are little-endian float32 blobs. ``revision`` counts changes to
the set of vectors, so a derived FAISS file can tell whether it is up to date.
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
    segments INTEGER NOT NULL DEFAULT 0
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
class SegmentRecord:
    id: int
    source: str  # source name
    audio: str  # audio file path
    start: float  # seconds in the audio file
    end: float


class IndexStore:
    """The SQLite database of one index folder."""

    FILE = "index.sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            self.db.execute("PRAGMA synchronous = FULL")
            self.db.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS)
        except sqlite3.Error as e:
            raise _storage_error(self.path, e) from None
        version = self.setting("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ConfigError(f"{self.path}: index format {version} is not supported by this "
                              f"asrkit (reads {FORMAT_VERSION}); rebuild the index")

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
        try:
            row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return default
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
                   vectors: np.ndarray) -> None:
        """One recording with its segments and ``vectors (segments, dim)``, atomically."""
        blobs = np.ascontiguousarray(vectors, dtype="<f4")
        with self.transaction():
            self.db.execute("DELETE FROM sources WHERE name = ?", (utt.id,))
            cur = self.db.execute(
                "INSERT INTO sources (name, audio, offset_s, duration_s, status, segments) "
                "VALUES (?, ?, ?, ?, 'indexed', ?)",
                (utt.id, utt.audio, utt.offset, duration, len(spans)))
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
                    "SELECT name, audio, offset_s, duration_s, status, reason, segments "
                    "FROM sources WHERE id = ?", (source_id,)).fetchone()
                cur = self.db.execute(
                    "INSERT INTO sources (name, audio, offset_s, duration_s, status, reason, "
                    "segments) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                self.db.executemany(
                    "INSERT INTO segments (source_id, start_s, end_s, vector) VALUES (?, ?, ?, ?)",
                    ((cur.lastrowid, *r) for r in other.db.execute(
                        "SELECT start_s, end_s, vector FROM segments WHERE source_id = ? "
                        "ORDER BY id", (source_id,))))
                if progress:
                    progress(done)
            self._bump_revision()

    def record_skipped(self, utt: Utterance, reason: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM sources WHERE name = ?", (utt.id,))
            self.db.execute("INSERT INTO sources (name, audio, offset_s, status, reason) "
                            "VALUES (?, ?, ?, 'skipped', ?)",
                            (utt.id, utt.audio, utt.offset, reason))

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
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _storage_error(self.path, e) from None
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as e:
                exc = e
        if self.db.in_transaction:  # SQLite has already rolled back after SQLITE_FULL
            self.db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise _storage_error(self.path, exc) from None


def _storage_error(path: Path, e: sqlite3.Error) -> AsrkitError:
    return AsrkitError(f"{path}: cannot write the index database ({e}); it keeps every "
                       "recording finished so far. Free disk space or make the folder "
                       "writable, then run the command again to resume")
