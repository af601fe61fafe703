"""The recogniser's CTC posteriors of an indexed archive, kept beside the index.

Search by typed word (:mod:`asrkit.search.text_query`) scores a word's labels against
every recording's log-posteriors ``(frames, vocab)``. Computing them takes a pass of the
acoustic model over the whole archive, so they are computed once and kept in the index
folder, in a SQLite file of their own::

    posteriors.sqlite   posteriors (source name, content digest, model fingerprint,
                        offset, frame seconds, frames, vocab, float16 log-probs)

A row is used only while its recording's content (the index's file stamp) and the
model's fingerprint are the ones it was made from; anything else is computed again.
Float16 keeps an hour of the bundled model (28 outputs, 50 frames a second) near 10 MB; its
rounding (under 0.02 at log-probability -30) is far below what tells words apart.
An index folder that cannot be written still searches: what is missing is computed
in memory each time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import AsrkitError
from ..manifest import Utterance
from .asr_frontend import AcousticModelRef
from .database import connect, connect_read_only

FILE = "posteriors.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS posteriors (
    name TEXT PRIMARY KEY,      -- the recording's source name in the index
    digest TEXT NOT NULL,       -- its content when computed (file stamp digest or path)
    model TEXT NOT NULL,        -- fingerprint of the acoustic model
    offset_s REAL NOT NULL,     -- frame 0 is this many seconds into the audio file
    frame_seconds REAL NOT NULL,
    frames INTEGER NOT NULL,
    vocab INTEGER NOT NULL,
    log_probs BLOB NOT NULL     -- float16 little-endian, frames x vocab
);
"""


@dataclass(frozen=True)
class PosteriorProgress:
    """Reported after each recording whose posteriors had to be computed."""

    done: int
    total: int
    source: str


@dataclass(frozen=True)
class Posteriors:
    """One recording's log-posteriors ``(frames, vocab)``; frame ``i`` starts at
    ``offset + i * frame_seconds`` seconds into ``audio``."""

    source: str
    audio: str
    offset: float
    frame_seconds: float
    log_probs: np.ndarray


def archive_posteriors(index, model, ref: AcousticModelRef,
                       progress: Callable[[PosteriorProgress], None] | None = None,
                       ) -> Iterator[Posteriors]:
    """Every indexed recording's posteriors under ``model`` (whose reference is
    ``ref``): kept ones read back, missing or stale ones computed (and kept when the
    index folder is writable). ``progress`` is told of each computed recording."""
    from ..asr.transcription import compute_log_probs  # torch: only when computing
    folder = Path(index.folder)
    identities = index.store.source_identities()
    sources = [s for s in index.sources() if s.status == "indexed"]
    keys = {s.name: _content_key(identities.get(s.name), s.audio) for s in sources}
    db = _open(folder)
    try:
        audio = {s.name: s.audio for s in sources}
        kept = _read_kept(db, keys, audio, ref.fingerprint) if db is not None else {}
        yield from kept.values()
        todo = [Utterance(s.name, s.audio, offset=identities[s.name].offset,
                          duration=s.duration) for s in sources if s.name not in kept]
        for done, (utt, lp) in enumerate(compute_log_probs(model, todo), 1):
            got = Posteriors(utt.id, utt.audio, utt.offset, model.frame_seconds,
                             lp.numpy().astype(np.float32))
            if db is not None:
                _keep(db, got, keys[utt.id], ref.fingerprint)
            if progress:
                progress(PosteriorProgress(done, len(todo), utt.id))
            yield got
    finally:
        if db is not None:
            db.close()


def _content_key(identity, audio: str) -> str:
    stamp = identity.stamp if identity is not None else None
    return stamp.digest if stamp is not None else f"path:{audio}"


def _open(folder: Path):
    """The posteriors database, created if missing; read-only, or None when there is
    none and the folder cannot be written."""
    path = folder / FILE
    try:
        db = connect(str(path), path)
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(_SCHEMA)
        return db
    except AsrkitError:
        if path.is_file():
            try:
                return connect_read_only(path)
            except AsrkitError:
                return None
        return None


def _read_kept(db, keys: dict[str, str], audio: dict[str, str], model: str,
               ) -> dict[str, Posteriors]:
    """The kept rows still valid for the recordings named in ``keys``."""
    out = {}
    rows = db.execute("SELECT name, digest, model, offset_s, frame_seconds, frames, vocab, "
                      "log_probs FROM posteriors")
    for name, digest, fp, offset, fs, frames, vocab, blob in rows:
        if keys.get(name) == digest and fp == model:
            lp = np.frombuffer(blob, dtype="<f2").reshape(frames, vocab).astype(np.float32)
            out[name] = Posteriors(name, audio[name], offset, fs, lp)
    return out


def _keep(db, p: Posteriors, digest: str, model: str) -> None:
    blob = np.ascontiguousarray(p.log_probs, dtype="<f2").tobytes()
    try:
        db.execute("INSERT OR REPLACE INTO posteriors (name, digest, model, offset_s, "
                   "frame_seconds, frames, vocab, log_probs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (p.source, digest, model, p.offset, p.frame_seconds, *p.log_probs.shape,
                    blob))
    except AsrkitError:
        pass  # a read-only or full folder: the search goes on with what it computed


def posteriors_path(index_dir: str | os.PathLike) -> Path:
    return Path(index_dir) / FILE
