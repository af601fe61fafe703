"""Bounded memory: peak RSS of `asrkit transcribe` and `asrkit index build` over
1,000 and 10,000 tiny files, and the ratio of the two, measured in the same run.

Streaming commands should need about the same memory for ten times the files: the
ratio should stay near 1.0 (the 10,000-file index holds ten times the vectors, a few
MB). The files (0.25 s tones with noise) are written once into --work and reused.
Transcription uses a small random-weight model: memory, not accuracy, is measured.
Each measurement runs in a fresh process, since peak RSS is per process.

    nice -n 10 python bench/stream_memory.py [--files 1000,10000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FILE_SECONDS = 0.25
RATE = 16_000


def make_files(folder: Path, n: int) -> list[Path]:
    """``n`` short WAV files in subfolders of 1,000 (written once; reused if present)."""
    import soundfile as sf
    rng = np.random.default_rng(0)
    t = np.arange(int(FILE_SECONDS * RATE)) / RATE
    paths = []
    for i in range(n):
        path = folder / f"{i // 1000:03d}" / f"f{i:05d}.wav"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 800) * t) * np.hanning(len(t))
            wave += 0.01 * rng.standard_normal(len(t))
            sf.write(path, wave.astype(np.float32), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def write_manifest(path: Path, files: list[Path]) -> Path:
    from asrkit.manifest import Utterance, write_manifest as write
    write(path, (Utterance(p.stem, str(p)) for p in files))
    return path


def make_model(path: Path) -> Path:
    import torch
    from asrkit.asr.checkpoint import save_model
    from asrkit.asr.model import AsrModel, ModelConfig
    from asrkit.text import Vocabulary
    torch.manual_seed(0)
    save_model(path, AsrModel(Vocabulary(tuple(" ABCDEFGH")), ModelConfig(layers=2, hidden=64)))
    return path


def child(args: list[str]) -> None:
    """Run one asrkit command in this process; print its peak RSS and time as JSON."""
    from asrkit.cli.main import app
    start = time.perf_counter()
    try:
        app(args, standalone_mode=False)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": time.perf_counter() - start,
                      "exit": code}))


def measure(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith('{"peak_rss_mb"')]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", default="1000,10000", help="File counts, comma-separated.")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "asrkit-stream")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    counts = sorted(int(x) for x in args.files.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = make_files(args.work / "audio", counts[-1])
    print(f"{len(files)} files of {FILE_SECONDS} s in {args.work / 'audio'} "
          f"({time.perf_counter() - t0:.0f} s to prepare)", flush=True)
    model = make_model(args.work / "model.pt")
    rows = []
    for n in counts:
        m = write_manifest(args.work / f"files{n}.jsonl", files[:n])
        runs = {
            "transcribe": ["transcribe", "-m", str(model), str(m), "-f", "jsonl",
                           "-o", str(args.work / f"out{n}.jsonl")],
            "index build": ["index", "build", str(m), "--out", str(args.work / f"idx{n}"),
                            "--threads", str(args.threads), "--json"],
        }
        for name, cli_args in runs.items():
            if name == "index build":
                _remove_tree(args.work / f"idx{n}")
            r = measure(cli_args)
            rows.append((name, n, r))
            print(f"{name:12s} {n:6,d} files: peak RSS {r['peak_rss_mb']:7.1f} MB, "
                  f"{r['seconds']:6.1f} s ({1000 * r['seconds'] / n:.1f} ms/file)", flush=True)
    print("\nratio of peak RSS, most files / fewest (1.0 = flat):")
    for name in ("transcribe", "index build"):
        small = next(r for c, n, r in rows if c == name and n == counts[0])
        large = next(r for c, n, r in rows if c == name and n == counts[-1])
        print(f"  {name:12s} {large['peak_rss_mb'] / small['peak_rss_mb']:.3f} "
              f"(+{large['peak_rss_mb'] - small['peak_rss_mb']:.1f} MB for "
              f"{counts[-1] - counts[0]:,d} more files)")


def _remove_tree(path: Path) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
