"""Index build throughput (audio-hours per hour) read together with archive MAP.

1. Archives of ``--hours`` (default 1 and 8) hours: AN4 recordings concatenated, in
   order and repeated as needed, into 10-minute WAV files of dense speech. Each is
   indexed as ``asrkit index build`` does now (default candidate windows, one-thread
   worker processes, one per core) and its rate printed; the first size is built
   ``--repeats`` times (the median is printed: a 20-second build varies by ±10 %).
2. The previous method in the same run: the earlier default windows (six lengths,
   one every 0.1 s) embedded in one process with torch's threads, timed on the first
   ``--old-minutes`` of the 1-hour archive (its rate does not depend on the archive's
   length); the ratio new / old is printed.
3. Archive MAP of both (held-out AN4 speakers' archive; each held-out single word
   queries it; see bench/search_quality.py), so speed and quality are read together.
4. ``--busy``: steps 1-2 for the 1-hour archive again while one other process spins on
   a core, as on a machine shared with another job.

    python bench/index_build_speed.py [--hours 1,8] [--repeats 3] [--old-minutes 15] [--busy]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _an4 import an4_utterances, heldout_audio, word_sets
from asrkit.audio import SAMPLE_RATE, load_audio, write_audio
from asrkit.search.embedding import load_embedder
from asrkit.search.evaluation import load_word_segments
from asrkit.search.index import build_index
from asrkit.search.segments import SegmentConfig
from search_variants import archive_map

FILE_SECONDS = 600  # the archive's recordings are 10 minutes long
OLD_SEGMENTS = SegmentConfig(durations=(0.3, 0.5, 0.7, 0.9, 1.2, 1.5), hop=0.1)


def make_archive(folder: Path, hours: float) -> Path:
    """``hours`` of AN4 speech as 10-minute WAV files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    utts, need = an4_utterances(), int(hours * 3600 * SAMPLE_RATE)
    buffer, written, n, i = [], 0, 0, 0
    while written < need:
        buffer.append(load_audio(utts[i % len(utts)].audio))
        i += 1
        if sum(map(len, buffer)) >= FILE_SECONDS * SAMPLE_RATE or \
                written + sum(map(len, buffer)) >= need:
            wave = np.concatenate(buffer)[:need - written]
            write_audio(folder / f"part{n:04d}.wav", wave)
            written, n, buffer = written + len(wave), n + 1, []
    return folder


def rate(archive, out: Path, embedder, config: SegmentConfig, workers: int) -> float:
    """Audio-hours indexed per hour of wall time."""
    started = time.perf_counter()
    summary = build_index(archive, out, embedder, config, workers=workers)
    return (summary.audio_seconds / 3600) / ((time.perf_counter() - started) / 3600)


def old_sample(archive: Path, minutes: float) -> list[Path]:
    files = sorted(archive.glob("*.wav"))
    return files[:max(1, int(round(minutes * 60 / FILE_SECONDS)))]


def compare(work: Path, archive: Path, embedder, args, tag: str,
            ) -> tuple[float, float, list[float]]:
    """(median new rate, old rate, every new rate) on ``archive``."""
    from asrkit.manifest import Utterance
    runs = [rate(archive, work / f"new{tag}-{i}", embedder, SegmentConfig(), args.workers)
            for i in range(args.repeats)]
    sample = [Utterance(p.name, str(p)) for p in old_sample(archive, args.old_minutes)]
    old = rate(sample, work / f"old{tag}", embedder, OLD_SEGMENTS, 1)
    return float(np.median(runs)), old, runs


def each(runs: list[float]) -> str:
    return f" (median of {', '.join(f'{r:.0f}' for r in runs)})" if len(runs) > 1 else ""


def spin(parent: int) -> None:
    """Keep one core busy while the benchmark (``parent``) lives: a killed benchmark
    must not leave it spinning."""
    while os.getppid() == parent:
        for _ in range(1_000_000):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", default="1,8", help="archive sizes, comma-separated")
    parser.add_argument("--old-minutes", type=float, default=15.0,
                        help="audio the previous method is timed on")
    parser.add_argument("--repeats", type=int, default=3,
                        help="builds of the first archive size (median printed)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--busy", action="store_true", help="also measure beside a busy process")
    parser.add_argument("--skip-map", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.workers)  # the previous method used every core's thread
    embedder = load_embedder()
    hours = [float(h) for h in args.hours.split(",")]
    print(f"{args.workers} workers; new windows {SegmentConfig().durations} every "
          f"{SegmentConfig().hop} s; previous {OLD_SEGMENTS.durations} every {OLD_SEGMENTS.hop} s",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_map:
            held, _ = word_sets()
            words, archive = load_word_segments(held), heldout_audio()
            for name, config in (("new", SegmentConfig()), ("previous", OLD_SEGMENTS)):
                r = archive_map(embedder, words, archive, config, work / f"map-{name}")
                print(f"archive MAP ({name} windows, {len(words)} queries, "
                      f"{r['segments']} segments): {r['map']:.3f}", flush=True)
        for h in hours:
            archive = make_archive(work / f"archive{h:g}", h)
            if h == hours[0]:
                new, old, runs = compare(work, archive, embedder, args, f"{h:g}")
                print(f"{h:g} h archive: {new:.0f} audio-hours per hour{each(runs)}; "
                      f"previous method {old:.0f} (on {args.old_minutes:g} min) → "
                      f"×{new / old:.2f}", flush=True)
            else:
                new = rate(archive, work / f"new{h:g}", embedder, SegmentConfig(), args.workers)
                print(f"{h:g} h archive: {new:.0f} audio-hours per hour", flush=True)
        if args.busy:
            busy = multiprocessing.get_context("spawn").Process(target=spin,
                                                                args=(os.getpid(),), daemon=True)
            busy.start()
            try:
                new, old, runs = compare(work, work / f"archive{hours[0]:g}", embedder, args,
                                         "busy")
            finally:
                busy.terminate()
                busy.join()
            print(f"with one busy process: {new:.0f} audio-hours per hour{each(runs)}; "
                  f"previous method {old:.0f} → ×{new / old:.2f}", flush=True)


if __name__ == "__main__":
    main()
