"""A searchable index of an audio archive: one folder, SQLite + FAISS + the embedder.

Layout of an index folder::

    index.sqlite   sources (one row per recording, indexed or skipped with a reason),
                   segments (id → source, start, end, unit vector), settings
    vectors.faiss  FAISS index over the same vectors with the same 64-bit ids
    embedder.pt    the embedder that made the vectors (so a query is embedded alike)
    query_encoder.npz  its query path as numpy arrays, derived from embedder.pt so a
                   search needs no torch (see :mod:`asrkit.search.query_encoder`)

SQLite is the record of truth: each recording's segments and vectors are committed in
one transaction, so a build killed half-way resumes at the next recording and loses no
finished work. A recording is known by its name *and* its content: when ``index add``
or a resumed build finds a name already indexed whose file now holds other audio, the
recording is re-indexed (its old segments replaced in the same transaction) and counted
as ``reindexed`` in the summary. The FAISS file is derived from it and always replaced atomically (write
to a temporary file, then rename); a stale or damaged FAISS file is rebuilt from SQLite
(see :mod:`asrkit.search.vector_index`). Nothing is pickled.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from ..audio import audio_info, load_audio
from . import query_encoder
from .identity import content_changed, file_stamp
from ..errors import AsrkitError, AudioError, ConfigError, ManifestError
from ..manifest import Utterance, find_audio_files, read_manifest
from .segments import SegmentConfig, with_asr_model
from ..shard import Shard, select_shard, shard_setting
from .store import IndexStore, SegmentRecord, SourceIdentity, SourceRecord
from .vector_index import VectorIndex, make_index, sync_vectors

if TYPE_CHECKING:  # torch loads only where an embedder is built or run
    from .embedding import Embedder

EMBEDDER_FILE = "embedder.pt"


@dataclass(frozen=True)
class BuildProgress:
    """Reported after each recording."""

    done: int  # recordings handled so far in this run
    total: int  # recordings to handle in this run
    source: str
    segments: int  # segments added for this recording
    audio_seconds: float  # duration of this recording
    skipped: str | None = None  # why it was skipped, if it was


@dataclass(frozen=True)
class BuildSummary:
    indexed: int  # recordings embedded in this run
    skipped: tuple[tuple[str, str], ...]  # (source, reason) for recordings left out
    already: int  # recordings found finished from an earlier run (resume)
    segments: int  # segments added in this run
    audio_seconds: float
    seconds: float  # wall time
    total_segments: int  # segments in the index now
    index_type: str  # FAISS factory string in use
    reindexed: int = 0  # of ``indexed``: recordings whose content changed since indexed


def build_index(
    archive: str | os.PathLike | Sequence[Utterance], out_dir: str | os.PathLike,
    embedder: Embedder | str | os.PathLike | None = None,
    segment_config: SegmentConfig | None = None, factory: str | None = None,
    progress: Callable[[BuildProgress], None] | None = None, shard: Shard | None = None,
    workers: int = 1,
) -> BuildSummary:
    """Embed every candidate segment of ``archive`` (a folder, a manifest, or utterances)
    into a new index at ``out_dir``; rerunning on an unfinished index resumes it.

    ``shard``: index only that part of the archive (see :mod:`asrkit.shard`); the
    shard indexes of all parts combine with :func:`asrkit.search.merge.merge_indexes`.

    ``embedder``: an :class:`Embedder`, a path, or None for the packaged default.
    ``factory``: a FAISS factory string (e.g. ``"HNSW32"``, ``"IVF1024,Flat"``); by
    default exact search up to :data:`asrkit.search.vector_index.FLAT_MAX` segments, IVF above.
    ``workers``: embed in that many one-thread processes (see
    :mod:`asrkit.search.embed_workers`); 1 embeds here, with torch's thread setting.
    """
    out = Path(out_dir)
    from .embedding import Embedder, load_embedder, save_embedder
    embedder = embedder if isinstance(embedder, Embedder) else load_embedder(embedder)
    segment_config = with_asr_model(segment_config or SegmentConfig())
    whole = archive_sources(archive)
    sources = select_shard(whole, shard, key=lambda u: u.id)
    part = shard and shard_setting(shard, len(whole), len(sources))
    if factory is not None:
        make_index(factory, embedder.dim)  # a typo fails now, not after hours of embedding
    out.mkdir(parents=True, exist_ok=True)
    with IndexStore(out / IndexStore.FILE) as store:
        if store.is_new():
            store.initialise(embedder.fingerprint(), embedder.dim, embedder.config.to_dict(),
                             asdict(segment_config), factory)
            store.set_settings(shard=part)
        else:
            _check_same_settings(store, out, embedder, segment_config, factory)
            _check_same_shard(store, out, part)
        if not (out / EMBEDDER_FILE).exists():
            save_embedder(out / EMBEDDER_FILE, embedder)
        _query_encoder(out, store, embedder)
        return _index_sources(store, out, embedder, segment_config, sources, progress,
                              retry_skipped=False, workers=workers)


def add_to_index(index_dir: str | os.PathLike,
                 archive: str | os.PathLike | Sequence[Utterance],
                 progress: Callable[[BuildProgress], None] | None = None,
                 workers: int = 1) -> BuildSummary:
    """Index recordings not yet in the index, re-index those whose audio changed since
    (same name, other content), and retry ones skipped before; ``workers`` as for
    :func:`build_index`."""
    folder = _existing(index_dir)
    sources = archive_sources(archive)
    with IndexStore(folder / IndexStore.FILE) as store:
        embedder = _load_index_embedder(folder, store)
        config = SegmentConfig.from_dict(store.setting("segment_config"))
        return _index_sources(store, folder, embedder, config, sources, progress,
                              retry_skipped=True, workers=workers)


def remove_from_index(index_dir: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """Remove recordings (by source name or audio path) with all their segments;
    return the names removed. Raises :class:`ConfigError` for names not in the index."""
    folder = _existing(index_dir)
    with IndexStore(folder / IndexStore.FILE) as store:
        found, missing = store.resolve_sources(list(names))
        if missing:
            raise ConfigError(f"{folder}: not in the index: {', '.join(missing[:5])}"
                              f"{' ...' if len(missing) > 5 else ''}; see `asrkit index info`")
        store.remove_sources([s.id for s in found])
        sync_vectors(store, folder)
        return [s.name for s in found]


def rebuild_index(index_dir: str | os.PathLike, factory: str | None = None,
                  search_params: str | None = None) -> str:
    """Change the FAISS index type (None = chosen by size) and/or its search settings
    (e.g. ``"nprobe=64"``, ``"efSearch=256"``) without re-embedding; return the type."""
    folder = _existing(index_dir)
    with IndexStore(folder / IndexStore.FILE) as store:
        if search_params is not None:
            _check_search_params(search_params)
        store.set_settings(factory=factory, faiss_factory=None,
                           search_params=search_params or store.setting("search_params"))
        return sync_vectors(store, folder)


def archive_sources(archive: str | os.PathLike | Sequence[Utterance],
                    root: str | os.PathLike | None = None) -> list[Utterance]:
    """The recordings of an archive: a folder (every audio file below it, named by its
    relative path), a JSON Lines manifest (named by id), or utterances as given. With
    ``root``, a manifest naming audio outside that folder is refused."""
    if not isinstance(archive, (str, os.PathLike)):
        return list(archive)
    path = Path(archive)
    if path.is_dir():
        return [Utterance(p.relative_to(path).as_posix(), str(p.resolve()))
                for p in find_audio_files(path)]
    if path.is_file():
        return read_manifest(path, root=root)
    raise ManifestError(f"{path}: no such folder or manifest; give the archive as a folder "
                        "of recordings or a JSON Lines manifest")


def _index_sources(store: IndexStore, folder: Path, embedder: Embedder,
                   config: SegmentConfig, sources: Sequence[Utterance], progress,
                   retry_skipped: bool, workers: int = 1) -> BuildSummary:
    started = time.perf_counter()
    _check_unique(sources)
    todo, changed = _to_index(store, sources, retry_skipped)
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers}")
    skipped, n_segments, seconds = [], 0, 0.0
    # Stamped before reading: a change made while indexing shows next time.
    stamps = {u.id: file_stamp(u.audio) for u in todo}
    from .embed_workers import embed_recordings  # torch: only where embedding happens
    results = embed_recordings(embedder, todo, config, workers, folder / EMBEDDER_FILE)
    for done, (utt, got) in enumerate(results, 1):
        if got.error is not None:
            store.record_skipped(utt, got.error, stamps[utt.id])
            skipped.append((utt.id, got.error))
            if progress:
                progress(BuildProgress(done, len(todo), utt.id, 0, 0.0, got.error))
            continue
        store.add_source(utt, got.seconds, got.spans, got.vectors, stamps[utt.id])
        n_segments += len(got.spans)
        seconds += got.seconds
        if progress:
            progress(BuildProgress(done, len(todo), utt.id, len(got.spans), got.seconds))
    index_type = sync_vectors(store, folder)
    return BuildSummary(len(todo) - len(skipped), tuple(skipped), len(sources) - len(todo),
                        n_segments, seconds, time.perf_counter() - started,
                        store.segment_count(), index_type,
                        reindexed=len(changed - {name for name, _ in skipped}))


def _to_index(store: IndexStore, sources: Sequence[Utterance], retry_skipped: bool,
              ) -> tuple[list[Utterance], set[str]]:
    """The recordings to (re-)index, in archive order, and the names among them that
    were in the index with other content (or another offset into their file)."""
    known = store.source_identities()
    todo, changed = [], set()
    for utt in sources:
        old = known.get(utt.id)
        if old is None or (retry_skipped and old.status == "skipped"):
            todo.append(utt)
        elif _changed(store, old, utt):
            todo.append(utt)
            changed.add(utt.id)
    return todo, changed


def _changed(store: IndexStore, old: SourceIdentity, utt: Utterance) -> bool:
    """Whether ``utt`` is other audio than the recording of its name in the index. A
    moved archive (new path, same bytes) is not: the index then records the new path."""
    if old.offset != utt.offset:
        return True
    if old.stamp is None:  # indexed before stamps were kept: only the path can tell
        return old.audio != utt.audio
    differs, now = content_changed(old.stamp, utt.audio)
    if not differs and (now is not None or old.audio != utt.audio):
        store.update_identity(utt.id, utt.audio, now or old.stamp)
    return differs


def _check_same_settings(store: IndexStore, folder: Path, embedder: Embedder,
                         config: SegmentConfig, factory: str | None) -> None:
    if store.setting("embedder_fingerprint") != embedder.fingerprint():
        raise ConfigError(f"{folder}: this index was started with another embedder; "
                          "resume with the same --embedder or build into a new folder")
    if SegmentConfig.from_dict(store.setting("segment_config")) != config:
        raise ConfigError(f"{folder}: this index was started with other segment settings; "
                          "resume with the same settings or build into a new folder")
    if factory is not None and factory != store.setting("factory"):
        raise ConfigError(f"{folder}: this index was started with index type "
                          f"{store.setting('factory') or 'auto'!r}, not {factory!r}")


def _check_same_shard(store: IndexStore, folder: Path, part: dict | None) -> None:
    started = store.setting("shard")
    if started == part:
        return
    def name(p):
        return f"shard {p['index']}/{p['count']} of {p['archive_sources']} recordings" \
            if p else "the whole archive"
    raise ConfigError(f"{folder}: this index was started on {name(started)}, not "
                      f"{name(part)}; resume with the same --shard and archive, or build "
                      "into a new folder")


def _check_search_params(params: str) -> None:
    for part in filter(None, params.split(",")):
        name, _, value = part.partition("=")
        if name.strip() not in ("nprobe", "efSearch") or not value.strip().isdigit():
            raise ConfigError(f"search setting {part!r} is not understood; use nprobe=N "
                              "(IVF) or efSearch=N (HNSW)")


def _check_unique(sources: Sequence[Utterance]) -> None:
    seen = set()
    for u in sources:
        if u.id in seen:
            raise ManifestError(f"archive names {u.id!r} twice; names must be unique")
        seen.add(u.id)


def _existing(index_dir) -> Path:
    folder = Path(index_dir)
    if not (folder / IndexStore.FILE).is_file():
        raise ConfigError(f"{folder}: not an asrkit index (no {IndexStore.FILE}); "
                          "create one with `asrkit index build`")
    return folder


def _load_index_embedder(folder: Path, store: IndexStore) -> "Embedder":
    from .embedding import load_embedder
    embedder = load_embedder(folder / EMBEDDER_FILE)
    if embedder.fingerprint() != store.setting("embedder_fingerprint"):
        raise ConfigError(f"{folder / EMBEDDER_FILE}: does not match the vectors in the "
                          "index (it was replaced); rebuild the index")
    return embedder


def _query_encoder(folder: Path, store: IndexStore, embedder: "Embedder | None",
                   ) -> query_encoder.QueryEncoder | None:
    """The index's numpy query encoder: read from its file when that was derived from
    this embedder file for these vectors, else derived again (with torch) and saved if
    the folder is writable. None when the embedder has no numpy form."""
    key = (f"{query_encoder.file_digest(folder / EMBEDDER_FILE)}/"
           f"{store.setting('embedder_fingerprint')}")
    path = folder / query_encoder.FILE
    found = query_encoder.load_query_encoder(path, key)
    if found is not None:
        return found
    embedder = embedder or _load_index_embedder(folder, store)
    derived = query_encoder.export_query_encoder(embedder, key)
    if derived is not None:
        try:
            query_encoder.save_query_encoder(path, derived)
        except AsrkitError:
            pass  # a read-only index still searches; it derives the arrays each time
    return derived


def _writable(folder: Path) -> bool:
    """Whether this process may change the index in ``folder`` (a read-only mount, or
    a folder or database file without write permission, may not)."""
    probe = folder / f".write-test.{os.getpid()}"
    try:
        os.close(os.open(folder / IndexStore.FILE, os.O_RDWR))
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
        return True
    except OSError:
        return False


class SearchIndex:
    """An index folder opened for searching: embedder, settings, vectors, metadata.

    A folder this process cannot write is opened read-only: SQLite is read as it is,
    and a FAISS file that is missing or behind the database is rebuilt in memory
    instead of on disk, so an index on read-only media or shared read-only searches."""

    def __init__(self, index_dir: str | os.PathLike):
        self.folder = _existing(index_dir)
        self.store = IndexStore(self.folder / IndexStore.FILE,
                                read_only=not _writable(self.folder))
        try:
            if self.store.is_new():
                raise ConfigError(f"{self.folder}: not an asrkit index or never finished "
                                  "(no settings in its database); build it with `asrkit "
                                  "index build`")
            self._embedder = None
            self._query_encoder: query_encoder.QueryEncoder | None = None
            self.segment_config = SegmentConfig.from_dict(
                self.store.setting("segment_config"))
            self.vectors = VectorIndex.open(self.store, self.folder)
        except BaseException:
            self.store.close()
            raise

    @property
    def embedder(self) -> "Embedder":
        """The torch embedder (loaded on first use: queries do not need it)."""
        if self._embedder is None:
            self._embedder = _load_index_embedder(self.folder, self.store)
        return self._embedder

    def embed_queries(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Query waveforms, each ``(samples,)`` → unit vectors ``(n, dim)``, alike to the
        archive's. Uses the numpy query encoder (no torch) when the embedder has one."""
        if self._query_encoder is None:
            self._query_encoder = _query_encoder(self.folder, self.store, None)
        if self._query_encoder is None:  # an acoustic-model frontend: torch it is
            return self.embedder.embed_waves(waves)
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1, user_api="blas"):  # tiny products: threads only wait
            return self._query_encoder.embed_waves(waves)

    def __len__(self) -> int:
        return self.vectors.ntotal

    def nearest(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``queries (q, dim)`` unit vectors → ``scores (q, k)``, ``ids (q, k)``
        (cosine similarity, best first; id -1 where fewer than k exist)."""
        return self.vectors.search(queries, k)

    def segments(self, ids: Iterable[int]) -> dict[int, SegmentRecord]:
        return self.store.segments(ids)

    def spans(self, ids: np.ndarray) -> np.ndarray:
        """Segment ``ids (n,)`` → ``(n, 3)`` rows of source id, start, end (seconds);
        ids no longer in the index get source -1."""
        return self.store.segment_spans(ids)

    def sources(self) -> list[SourceRecord]:
        return self.store.sources()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "SearchIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class IndexInfo:
    """What an index folder holds, as ``asrkit index info`` shows it."""

    index: str  # the folder
    recordings: int  # recordings indexed
    segments: int  # vectors searchable
    audio_hours: float  # of the indexed recordings
    index_type: str  # FAISS factory string
    search_params: str  # FAISS search settings, e.g. nprobe=64 ("" for none)
    embedder: str  # first 16 hex digits of the embedder's fingerprint
    skipped: dict[str, str]  # recording → why it is not indexed

    def to_dict(self) -> dict:
        return asdict(self)


def index_info(index_dir: str | os.PathLike) -> IndexInfo:
    """Summarise the index in ``index_dir``."""
    with SearchIndex(index_dir) as idx:
        sources = idx.sources()
        indexed = [s for s in sources if s.status == "indexed"]
        return IndexInfo(
            index=str(index_dir), recordings=len(indexed), segments=len(idx),
            audio_hours=round(sum(s.duration or 0 for s in indexed) / 3600, 3),
            index_type=idx.vectors.factory, search_params=idx.vectors.params,
            embedder=idx.embedder.fingerprint()[:16],
            skipped={s.name: s.reason for s in sources if s.status == "skipped"})
