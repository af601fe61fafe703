"""The FAISS side of a search index: nearest neighbours by cosine similarity.

Vectors are unit length, so inner product = cosine similarity. Every FAISS index is
wrapped in ``IndexIDMap2`` so it answers with the stable 64-bit segment ids of the
SQLite store. The kind is chosen by size (overridable with a FAISS factory string):

- up to :data:`FLAT_MAX` segments: ``Flat`` — exact search;
- above: ``IVF<nlist>,Flat`` — inverted lists; a query scans ``nprobe`` of them.
  ``nprobe`` is chosen when the index is built (:func:`tune_search_params`): the
  smallest that finds :data:`TUNE_RECALL` of the exact ten nearest neighbours of
  sample stored vectors, so a query scans no more lists than this archive needs.
  (``HNSW32`` is faster per query but slower to build and cannot delete, so an
  HNSW index is rebuilt from the store after removals.)

The FAISS file is a cache of the store: :func:`sync_vectors` brings it up to date
(adding and removing the difference, or rebuilding) and replaces it atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

from ..errors import AsrkitError, ConfigError
from ..io import atomic_open
from .store import IndexStore

FAISS_FILE = "vectors.faiss"
FLAT_MAX = 50_000  # exact search below this many segments (a few ms per query)
IVF_TRAIN_PER_LIST = 40  # training vectors per inverted list (FAISS warns below 39)
IVF_NPROBE_SHARE = 1 / 64  # share of inverted lists a query scans by default
HNSW_EF_SEARCH = 128
TUNE_RECALL = 0.97  # recall@10 the tuned settings must reach on the sample (target 0.95)
TUNE_QUERIES = 256  # stored vectors used as sample queries
TUNE_K = 10
ADD_BATCH = 50_000


def choose_factory(count: int) -> str:
    """The FAISS factory string used for ``count`` segments when none is given."""
    if count <= FLAT_MAX:
        return "Flat"
    nlist = 2 ** int(round(math.log2(4 * math.sqrt(count))))
    return f"IVF{nlist},Flat"


def default_search_params(factory: str) -> str:
    """FAISS ``ParameterSpace`` settings that give recall@10 ≳ 0.95 for this kind."""
    if factory.startswith("IVF"):
        nlist = int(factory[3:].split(",")[0].split("_")[0])
        return f"nprobe={max(8, int(nlist * IVF_NPROBE_SHARE))}"
    if "HNSW" in factory:
        return f"efSearch={HNSW_EF_SEARCH}"
    return ""


class VectorIndex:
    """A loaded FAISS index and the search settings to use with it."""

    def __init__(self, index: faiss.Index, factory: str, params: str = ""):
        self.index = index
        self.factory = factory
        self.params = params or default_search_params(factory)
        if self.params:
            try:
                faiss.ParameterSpace().set_index_parameters(index, self.params)
            except RuntimeError as e:
                raise ConfigError(f"search settings {self.params!r} do not apply to a "
                                  f"{factory!r} index; change them with `asrkit index "
                                  "rebuild --params`") from e

    @classmethod
    def open(cls, store: IndexStore, folder: Path) -> "VectorIndex":
        """Bring the FAISS file up to date with ``store`` (if needed) and load it. A
        read-only store leaves the folder as it is: an out-of-date or damaged FAISS
        file is then rebuilt in memory, for this process only."""
        if store.read_only:
            factory, index = _current_or_built(store, folder)
            return cls(index, factory, store.setting("search_params") or "")
        factory = sync_vectors(store, folder)
        index = _read_quietly(folder / FAISS_FILE)
        if index is None:  # damaged behind our back (disk error, manual edit): rebuild
            factory = sync_vectors(store, folder, force=True)
            index = faiss.read_index(str(folder / FAISS_FILE))
        params = store.setting("search_params") or store.setting("tuned_params") or ""
        return cls(index, factory, params)

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``queries (q, dim)`` → ``scores (q, k)`` cosine, ``ids (q, k)`` (-1 = none)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self.ntotal == 0 or k < 1:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        return self.index.search(q, min(k, self.ntotal))


def make_index(factory: str, dim: int) -> faiss.Index:
    """An empty ``IDMap2`` + ``factory`` index for ``dim``-dimensional unit vectors."""
    for prefix in ("IDMap2,", "IDMap,"):  # we always add the id map ourselves
        factory = factory.removeprefix(prefix)
    try:
        return faiss.index_factory(dim, f"IDMap2,{factory}", faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ConfigError(f"FAISS cannot build index type {factory!r} "
                          f"({str(e).splitlines()[-1][:160]}); see the FAISS index factory "
                          "documentation, e.g. 'Flat', 'HNSW32', 'IVF1024,Flat'") from e


def sync_vectors(store: IndexStore, folder: Path, force: bool = False) -> str:
    """Make ``folder/vectors.faiss`` hold exactly the store's vectors; return its factory.

    Cheap when already in sync (revision numbers match). Otherwise the difference is
    applied to the existing file, or the index is rebuilt when its kind should change,
    it cannot delete (HNSW), or the file is missing or unreadable (or ``force``).
    """
    path = folder / FAISS_FILE
    revision = store.setting("revision")
    factory = store.setting("factory") or choose_factory(store.segment_count())
    same_kind = store.setting("faiss_factory") == factory and not force
    if same_kind and store.setting("faiss_revision") == revision and path.exists():
        return factory
    index = _read_quietly(path) if same_kind else None
    if index is not None and not _apply_difference(index, store):
        index = None
    tuned = {}
    if index is None:
        index = _build(store, factory)
        if store.segment_count():  # an archive of silence has no vectors to tune on
            tuned = {"tuned_params": tune_search_params(index, *_tuning_sample(store))}
    _write_atomically(index, path)
    store.set_settings(faiss_revision=revision, faiss_factory=factory, **tuned)
    return factory


def tune_search_params(index: faiss.Index, sample: np.ndarray, sample_ids: np.ndarray,
                       target: float = TUNE_RECALL) -> str:
    """The smallest ``nprobe`` at which an IVF ``index`` finds ``target`` of the exact
    ten nearest neighbours of stored vectors ``sample (q, dim)`` (ids ``sample_ids``;
    each query's own vector is left out of both lists); the default for other kinds.
    The exact answers come from the same index searched exhaustively, so no second
    copy of the vectors is needed."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or index.ntotal <= TUNE_K + 1 or not len(sample):
        return ""
    space = faiss.ParameterSpace()
    space.set_index_parameters(index, f"nprobe={ivf.nlist}")
    truth = index.search(sample, TUNE_K + 1)[1]
    probes = [2 ** k for k in range(int(math.log2(ivf.nlist)) + 1)]
    for nprobe in probes:
        space.set_index_parameters(index, f"nprobe={nprobe}")
        if _recall(index.search(sample, TUNE_K + 1)[1], truth, sample_ids) >= target:
            return f"nprobe={nprobe}"
    return f"nprobe={ivf.nlist}"


def _recall(found: np.ndarray, truth: np.ndarray, own: np.ndarray) -> float:
    """Mean share of each query's exact ten nearest others (``truth (q, k + 1)``
    without the query's ``own`` id) that ``found (q, k + 1)`` holds."""
    hits = []
    for f, t, i in zip(found, truth, own):
        want = [x for x in t if x != i][:TUNE_K]
        hits.append(len(set(want) & set(f.tolist())) / len(want))
    return float(np.mean(hits))


def _tuning_sample(store: IndexStore) -> tuple[np.ndarray, np.ndarray]:
    """About :data:`TUNE_QUERIES` evenly spaced stored vectors and their ids."""
    step = max(1, store.segment_count() // TUNE_QUERIES)
    ids, vectors, seen = [], [], 0
    for batch_ids, batch in store.iter_vectors(batch=ADD_BATCH):
        first = (-seen) % step
        ids.append(batch_ids[first::step])
        vectors.append(batch[first::step])
        seen += len(batch)
    return np.ascontiguousarray(np.concatenate(vectors)), np.concatenate(ids)


def _current_or_built(store: IndexStore, folder: Path) -> tuple[str, faiss.Index]:
    """The FAISS file if it holds exactly the store's vectors, else a new index built
    in memory from the store; nothing is written."""
    factory = store.setting("factory") or choose_factory(store.segment_count())
    index = None
    if (store.setting("faiss_factory") == factory
            and store.setting("faiss_revision") == store.setting("revision")):
        index = _read_quietly(folder / FAISS_FILE)
    return factory, index if index is not None else _build(store, factory)


def _apply_difference(index: faiss.Index, store: IndexStore) -> bool:
    """Add/remove so ``index`` holds the store's ids; False if it cannot remove."""
    have = faiss.vector_to_array(index.id_map).astype(np.int64)
    want = store.segment_ids()
    remove = np.setdiff1d(have, want, assume_unique=True)
    add = np.setdiff1d(want, have, assume_unique=True)
    if len(remove):
        if "HNSW" in type(faiss.downcast_index(index.index)).__name__:
            return False
        index.remove_ids(remove)
    if len(add):
        for ids, vectors in store.iter_vectors(add):
            index.add_with_ids(vectors, ids)
    return True


def _build(store: IndexStore, factory: str) -> faiss.Index:
    index = make_index(factory, store.setting("dim"))
    if not index.is_trained:
        sample = _training_sample(store, index)
        index.train(sample)
    for ids, vectors in store.iter_vectors(batch=ADD_BATCH):
        index.add_with_ids(vectors, ids)
    return index


def _training_sample(store: IndexStore, index: faiss.Index) -> np.ndarray:
    """Evenly spaced vectors for k-means (deterministic, so rebuilds are identical)."""
    nlist = faiss.extract_index_ivf(index).nlist
    count = store.segment_count()
    if count < nlist:
        raise ConfigError(f"{count} segments are too few for {nlist} inverted lists; use "
                          "a smaller IVF, or 'Flat'")
    step = max(1, count // (nlist * IVF_TRAIN_PER_LIST))
    parts, seen = [], 0
    for _, vectors in store.iter_vectors(batch=ADD_BATCH):
        first = (-seen) % step
        parts.append(vectors[first::step])
        seen += len(vectors)
    return np.ascontiguousarray(np.concatenate(parts))


def _read_quietly(path: Path) -> faiss.Index | None:
    """The index at ``path``, or None if missing or unreadable (it will be rebuilt)."""
    if not path.exists():
        return None
    try:
        index = faiss.read_index(str(path))
    except RuntimeError:
        return None
    return index if isinstance(index, faiss.IndexIDMap2) else None


def _write_atomically(index: faiss.Index, path: Path) -> None:
    """Replace ``path`` by ``index`` through :func:`asrkit.io.atomic_open`, streamed
    through Python (not FAISS's own C file writer), so a full disk or a read-only folder
    fails like every other asrkit file: the previous file is kept, no temporary is left."""
    try:
        with atomic_open(path, "wb") as f:
            faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))
    except (AsrkitError, RuntimeError) as e:  # faiss reports its own failures as RuntimeError
        cause = e.__cause__ if isinstance(e, AsrkitError) else e
        raise AsrkitError(f"{path}: cannot write the FAISS index ({_reason(cause)}); the "
                          "previous file is intact and the database holds every vector, so "
                          "the next command rebuilds it. Free disk space or make the folder "
                          "writable") from None


def _reason(e: BaseException | None) -> str:
    return getattr(e, "strerror", None) or str(e).strip().splitlines()[-1][:200]
