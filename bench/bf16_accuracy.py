"""bf16 autocast on the CPU: training speed and accuracy against fp32, same run.

Trains the same small model twice on a generated "tone language" corpus (each letter a
tone of its own pitch; see tests/tones.py), identical but for ``train.precision``, and
prints the median optimiser-step time of each (validation excluded), their ratio and
the final validation CER/WER. Both runs are made in one process, one after the other,
so they share the machine's load; ``--rounds`` repeats the pair to show the spread.

    python bench/bf16_accuracy.py [--utterances 160] [--epochs 8] [--hidden 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tones import make_tone_corpus  # noqa: E402  (the test suite's corpus generator)

from asrkit.asr.config import load_config  # noqa: E402
from asrkit.manifest import read_manifest  # noqa: E402
from asrkit.asr.training import TrainCallbacks, train  # noqa: E402


def step_seconds() -> tuple[TrainCallbacks, list[float]]:
    """Callbacks recording the time between optimiser steps of one epoch (the first
    step of an epoch follows a validation pass and is left out)."""
    times: list[float] = []
    last = {"t": None}

    def on_step(info) -> None:
        now = time.perf_counter()
        if last["t"] is not None and info.batch > 1:
            times.append(now - last["t"])
        last["t"] = now

    return TrainCallbacks(on_step=on_step), times


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 3) -> float:
    x = torch.randn(n, n).to(dtype)
    x @ x
    start = time.perf_counter()
    for _ in range(repeats):
        x @ x
    return repeats * 2 * n ** 3 / (time.perf_counter() - start) / 1e9


def run(precision: str, corpus, out: Path, args) -> dict:
    settings = [f"model.layers={args.layers}", f"model.hidden={args.hidden}",
                "model.dropout=0.0", "features.n_mels=40", "train.batch_seconds=8",
                "train.warmup_steps=10", "train.lr=0.005", f"train.threads={args.threads}",
                f"train.epochs={args.epochs}", "train.patience=100", "train.seed=1",
                "train.spec_augment=false", "train.speed_perturb=false",
                f"train.precision={precision}"]
    callbacks, times = step_seconds()
    result = train(*corpus, out, load_config(None, settings), callbacks=callbacks)
    last = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    return {"precision": precision, "step_ms": 1000 * statistics.median(times),
            "steps": result.steps,
            "final_cer": last["valid_cer"], "final_wer": last["valid_wer"],
            "best_wer": result.best_wer}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--utterances", type=int, default=160)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    from asrkit.asr.distributed import cpu_has_bf16
    if not cpu_has_bf16():
        fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
        print(f"this CPU has no bfloat16 instructions (avx512_bf16/AMX): 1024x1024 matmul "
              f"{fp32:.1f} GFLOP/s fp32, {bf16:.2f} bf16 ({fp32 / bf16:.0f}x slower), and "
              "the LSTM cannot run in bf16; asrkit refuses train.precision=bf16 here. "
              "Nothing to compare.")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = (read_manifest(make_tone_corpus(root / "train", args.utterances, seed=1)),
                  read_manifest(make_tone_corpus(root / "valid", 32, seed=2, prefix="v")))
        rows = [run(precision, corpus, root / f"{precision}{i}", args)
                for i in range(args.rounds) for precision in ("fp32", "bf16")]
    print(f"{'precision':9} {'step ms':>8} {'steps':>5} {'final CER':>9} {'final WER':>9}")
    for r in rows:
        print(f"{r['precision']:9} {r['step_ms']:8.1f} {r['steps']:5d} "
              f"{100 * r['final_cer']:8.2f}% {100 * r['final_wer']:8.2f}%")
    fp32 = statistics.median(r["step_ms"] for r in rows if r["precision"] == "fp32")
    bf16 = statistics.median(r["step_ms"] for r in rows if r["precision"] == "bf16")
    print(f"bf16 speed-up (fp32 step time / bf16 step time): {fp32 / bf16:.2f}x")


if __name__ == "__main__":
    main()
