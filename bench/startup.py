"""Wall time of real `asrkit` commands as a user types them, cold and warm.

Commands (each a fresh process, output discarded):
- ``asrkit --help``
- ``asrkit search INDEX query.wav`` on a 1-hour index (``--hours``): a few AN4 test
  recordings are indexed with the bundled embedder, then the index is grown to the size
  with jittered copies of their vectors (as bench/search_query_time.py does) and its FAISS
  file brought in sync, so the command opens a ready index of that many segments. The
  query is a held-out AN4 single word.
- ``asrkit transcribe one.wav`` with the bundled ``an4`` model (an AN4 test recording).

*Cold* is the first run with an empty compiled-kernel cache (``NUMBA_CACHE_DIR`` pointed
at a fresh folder); *warm* is the median of ``--runs`` further runs. References measured
in the same run, interleaved with the commands so machine load hits all alike:
``python -c pass`` (interpreter start) and ``python -c "import torch"``.
Targets (issue 18): search <= 1 s, transcribe <= 2 s.

    python bench/startup.py [--hours 1] [--runs 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _an4 import heldout_audio, word_sets
from search_query_time import GrowingIndex, Recording
from asrkit.search.index import build_index
from asrkit.search.segments import Span
from asrkit.search.store import IndexStore
from asrkit.search.vector_index import sync_vectors

BIN = Path(sys.executable).parent
SEED_RECORDINGS = 12  # real recordings indexed; the rest of the hour is copies
TARGETS = {"search": 1.0, "transcribe": 2.0}


def one_hour_index(folder: Path, hours: float) -> tuple[int, float]:
    """Build the index at ``folder``; return (segments, audio hours)."""
    build_index(heldout_audio()[:SEED_RECORDINGS], folder)
    with IndexStore(folder / IndexStore.FILE) as store:
        ids, vectors = map(np.concatenate, zip(*store.iter_vectors()))
        spans = store.segment_spans(ids)
        recordings = [Recording(s.name, s.audio, s.duration,
                                tuple(Span(a, b) for a, b in spans[spans[:, 0] == s.id, 1:]),
                                vectors[spans[:, 0] == s.id], np.zeros((0, 13)))
                      for s in store.sources() if s.status == "indexed"]
    grower = GrowingIndex(folder, recordings, np.random.default_rng(0))
    try:
        grower.grow_to(hours * 3600)
        sync_vectors(grower.store, folder)  # the commands find FAISS ready, as after a build
        return grower.store.segment_count(), grower.seconds / 3600
    finally:
        grower.close()


def wall(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="keep the index here")
    args = parser.parse_args()
    held, _ = word_sets()
    query = sorted(held, key=lambda u: u.id)[0].audio
    speech = sorted(u.audio for u in heldout_audio() if len(u.text.split()) > 3)[0]
    with tempfile.TemporaryDirectory() as tmp:
        index = (args.work or Path(tmp)) / "index"
        started = time.perf_counter()
        segments, hours = one_hour_index(index, args.hours)
        print(f"index: {hours:.2f} h, {segments:,} segments "
              f"(built in {time.perf_counter() - started:.0f} s)")
        py, cli = str(BIN / "python"), str(BIN / "asrkit")
        commands = {"python -c pass": [py, "-c", "pass"],
                    "python -c 'import torch'": [py, "-c", "import torch"],
                    "asrkit --help": [cli, "--help"],
                    "search": [cli, "search", str(index), query],
                    "transcribe": [cli, "transcribe", speech]}
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp) / "numba-cache"))
        cold = {name: wall(argv, env) for name, argv in commands.items()}
        warm: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                warm[name].append(wall(argv, env))
    report(cold, {k: statistics.median(v) for k, v in warm.items()}, args.runs)


def report(cold: dict, warm: dict, runs: int) -> None:
    torch_s, pass_s = warm["python -c 'import torch'"], warm["python -c pass"]
    print(f"wall seconds; warm = median of {runs}; ratios against the same run's references")
    print(f"{'command':28} {'cold':>7} {'warm':>7} {'/ import torch':>15} {'target':>8}")
    for name in cold:
        target = TARGETS.get(name)
        verdict = "" if target is None else \
            f"{'<=' if warm[name] <= target else '>'} {target:g} s"
        print(f"{name:28} {cold[name]:7.2f} {warm[name]:7.2f} {warm[name] / torch_s:15.2f} "
              f"{verdict:>8}")
    print(f"(python -c pass alone: {pass_s:.2f} s warm)")


if __name__ == "__main__":
    main()
