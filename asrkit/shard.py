"""Splitting one archive across machines.

A shard ``i/n`` is every ``n``-th input of the archive sorted by name, starting at
the ``i``-th: a deterministic split, so ``n`` machines given the same archive and
``--shard 1/n`` … ``--shard n/n`` each take a different part, and every input is in
exactly one shard. Interleaving (rather than cutting the list into blocks) spreads
folders of long or short recordings evenly over the machines.

The search indexes of the shards combine with :func:`asrkit.search.merge.merge_indexes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from .errors import ConfigError

T = TypeVar("T")
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """The ``index``-th of ``count`` parts (1-based, as typed: ``--shard 2/4``)."""

    index: int
    count: int

    def __post_init__(self):
        if not 1 <= self.index <= self.count:
            raise ConfigError(f"shard {self.index}/{self.count} does not exist; give I/N "
                              "with 1 <= I <= N, e.g. --shard 1/4 for the first of four")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def to_dict(self) -> dict:
        return {"index": self.index, "count": self.count}


def parse_shard(text: str) -> Shard:
    """``"2/4"`` → ``Shard(2, 4)``; :class:`ConfigError` for anything else."""
    match = _SPEC.fullmatch(text or "")
    if not match:
        raise ConfigError(f"--shard {text!r} is not understood; give I/N, e.g. --shard 1/4 "
                          "for the first of four machines")
    return Shard(int(match[1]), int(match[2]))


def select_shard(items: Sequence[T], shard: Shard | None, key: Callable[[T], object],
                 ) -> list[T]:
    """The items of ``shard`` (all items if None): sort by ``key``, take every
    ``count``-th from position ``index - 1``. Independent of the input order."""
    if shard is None:
        return list(items)
    return sorted(items, key=key)[shard.index - 1::shard.count]


def shard_setting(shard: Shard, archive_size: int, shard_size: int) -> dict:
    """What a shard index records about its part, so a merge can tell it is complete."""
    return {**shard.to_dict(), "archive_sources": archive_size, "sources": shard_size}
