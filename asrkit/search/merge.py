"""Merging the search indexes of shards (:mod:`asrkit.shard`) into one.

:func:`merge_indexes` combines shard indexes into one that answers exactly like an
index of the whole archive built on one machine: recordings are renumbered in name
order, so segment ids are unique, the same on every merge of the same shards, and equal
to a single-machine build of the name-sorted archive. The merged index is built in a
temporary folder beside the target and renamed into place only when complete.
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import ConfigError
from ..io import atomic_open
from .embedding import load_embedder
from .index import EMBEDDER_FILE
from .segments import SegmentConfig
from .store import IndexStore
from .vector_index import sync_vectors


@dataclass(frozen=True)
class MergeSummary:
    shards: int  # index folders merged
    recordings: int  # indexed recordings in the merged index
    skipped: int  # recordings the shards had skipped (kept, with their reasons)
    segments: int
    index_type: str  # FAISS factory string in use
    seconds: float


def merge_indexes(out_dir: str | os.PathLike, shard_dirs: Sequence[str | os.PathLike],
                  progress: Callable[[int, int], None] | None = None) -> MergeSummary:
    """Combine the indexes in ``shard_dirs`` into a new index at ``out_dir``.

    Refuses (:class:`ConfigError`, nothing written) indexes made with different
    embedders, segment settings or index types, an incomplete set of shards, a recording
    in two shards, and an ``out_dir`` that exists and is not empty. ``progress(done,
    total)`` is called per recording copied.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not empty; merge into a new folder")
    if not shard_dirs:
        raise ConfigError("no shard indexes to merge")
    stores = [_open(Path(d)) for d in shard_dirs]
    try:
        settings = _common_settings(stores)
        _check_complete(stores)
        order = _merged_order(stores)
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_merges(out)
        tmp = out.with_name(f".{out.name}.merging-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            counts = _write_merged(tmp, stores, settings, order, progress)
            os.rename(tmp, out)  # atomic; replaces only a missing or empty folder
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        for store in stores:
            store.close()
    return MergeSummary(len(stores), *counts, time.perf_counter() - started)


def _remove_abandoned_merges(out: Path) -> None:
    """Delete the half-written folders of earlier merges into ``out`` whose process is
    gone (killed before it could clean up); a merge still running keeps its own."""
    for folder in out.parent.glob(f".{glob.escape(out.name)}.merging-*"):
        pid = folder.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _open(folder: Path) -> IndexStore:
    if not (folder / IndexStore.FILE).is_file():
        raise ConfigError(f"{folder}: not an asrkit index (no {IndexStore.FILE})")
    store = IndexStore(folder / IndexStore.FILE)
    if store.is_new():
        store.close()
        raise ConfigError(f"{folder}: the index was never initialised; build it first")
    return store


def _folder(store: IndexStore) -> Path:
    return store.path.parent


def _common_settings(stores: list[IndexStore]) -> dict:
    """The settings every shard shares; :class:`ConfigError` naming the first that
    differs from the first shard."""
    first = stores[0]
    settings = {k: first.setting(k) for k in ("embedder_fingerprint", "dim", "embedder_config",
                                              "segment_config", "factory", "search_params")}
    for store in stores[1:]:
        if store.setting("embedder_fingerprint") != settings["embedder_fingerprint"]:
            raise ConfigError(f"{_folder(store)}: made with another embedder than "
                              f"{_folder(first)}; every shard must use the same --embedder")
        segments = SegmentConfig.from_dict(store.setting("segment_config"))
        if segments != SegmentConfig.from_dict(settings["segment_config"]):
            raise ConfigError(f"{_folder(store)}: made with other segment settings than "
                              f"{_folder(first)}; every shard must use the same "
                              "--durations and --hop")
        if store.setting("factory") != settings["factory"]:
            raise ConfigError(f"{_folder(store)}: index type {store.setting('factory')!r} "
                              f"differs from {settings['factory']!r} in {_folder(first)}; "
                              "use the same --factory (or `asrkit index rebuild`) first")
        if store.setting("search_params") != settings["search_params"]:
            settings["search_params"] = None  # differing tuning: fall back to the default
    return settings


def _check_complete(stores: list[IndexStore]) -> None:
    """Each set of shards of one split must be whole: 1/n … n/n, each finished."""
    groups: dict[tuple[int, int], dict[int, IndexStore]] = {}
    for store in stores:
        info = store.setting("shard")
        if info is None:
            continue  # an index of a whole archive: nothing to check
        group = groups.setdefault((info["count"], info["archive_sources"]), {})
        if info["index"] in group:
            raise ConfigError(f"{_folder(group[info['index']])} and {_folder(store)} are "
                              f"both shard {info['index']}/{info['count']}")
        group[info["index"]] = store
        have = len(store.source_status())
        if have < info["sources"]:
            raise ConfigError(f"{_folder(store)}: shard {info['index']}/{info['count']} is "
                              f"unfinished ({have} of {info['sources']} recordings); re-run "
                              "its `asrkit index build` to finish it")
    for (count, _), group in groups.items():
        missing = sorted(set(range(1, count + 1)) - set(group))
        if missing:
            raise ConfigError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} "
                              "missing; give every shard of the split")


def _merged_order(stores: list[IndexStore]) -> list[tuple[IndexStore, int]]:
    """(store, source id) of every recording, in name order; a name in two shards
    is refused."""
    where: dict[str, tuple[IndexStore, int]] = {}
    for store in stores:
        for source in store.sources():
            if source.name in where:
                raise ConfigError(f"recording {source.name!r} is in both "
                                  f"{_folder(where[source.name][0])} and {_folder(store)}; "
                                  "shards of one archive never share recordings")
            where[source.name] = (store, source.id)
    return [where[name] for name in sorted(where)]


def _write_merged(folder: Path, stores: list[IndexStore], settings: dict,
                  order: list[tuple[IndexStore, int]], progress) -> tuple[int, int, int, str]:
    """Write the merged index into ``folder``; return (recordings, skipped, segments,
    index type)."""
    embedder_file = _folder(stores[0]) / EMBEDDER_FILE
    if load_embedder(embedder_file).fingerprint() != settings["embedder_fingerprint"]:
        raise ConfigError(f"{embedder_file}: does not match the vectors of its index")
    with atomic_open(folder / EMBEDDER_FILE, "wb") as f:  # fsynced before the rename
        f.write(embedder_file.read_bytes())
    with IndexStore(folder / IndexStore.FILE) as store:
        store.initialise(settings["embedder_fingerprint"], settings["dim"],
                         settings["embedder_config"], settings["segment_config"],
                         settings["factory"])
        if settings["search_params"]:
            store.set_settings(search_params=settings["search_params"])
        store.copy_sources(order, progress and (lambda done: progress(done, len(order))))
        index_type = sync_vectors(store, folder)
        statuses = list(store.source_status().values())
        return (statuses.count("indexed"), statuses.count("skipped"), store.segment_count(),
                index_type)
