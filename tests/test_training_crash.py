"""A training run killed with SIGKILL resumes to the same weights as an unbroken run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys

import pytest
import torch

from asrkit.asr.checkpoint import load_record
from asrkit.asr.config import load_config
from asrkit.manifest import read_manifest
from asrkit.asr.training import train
from tones import make_tone_corpus

# Picks the kill step; change it to try another step. Every failure message names it,
# so a failure is reproduced by running with the same seed.
SEED = 20261202
SETTINGS = ["model.layers=1", "model.hidden=32", "features.n_mels=40", "train.threads=1",
            "train.batch_seconds=4", "train.epochs=2", "train.checkpoint_every=3"]


# The child kills itself with SIGKILL right after optimiser step `kill_at`: a crash at an
# exact step drawn from SEED, however fast or slow the machine is.
_KILLED_CHILD = """
import os, signal, sys
from torch.optim.optimizer import register_optimizer_step_post_hook
kill_at, steps = int(sys.argv.pop(1)), [0]
def _hook(optimizer, args, kwargs):
    steps[0] += 1
    if steps[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
register_optimizer_step_post_hook(_hook)
from asrkit.cli.main import main
main()
"""


def _cli(*args) -> list[str]:
    return [sys.executable, "-c", "from asrkit.cli.main import main; main()", *map(str, args)]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    train_m = make_tone_corpus(tmp_path / "train", 40, seed=5)
    valid_m = make_tone_corpus(tmp_path / "valid", 4, seed=6, prefix="v")
    straight = train(read_manifest(train_m), read_manifest(valid_m), tmp_path / "straight",
                     load_config(None, SETTINGS))
    total = straight.steps

    out = tmp_path / "killed"
    sets = [x for s in SETTINGS for x in ("--set", s)]
    kill_at = random.Random(SEED).randint(4, total - 1)  # past the first checkpoint, not the end
    where = f"SEED={SEED}: killed after step {kill_at} of {total}"
    killed = subprocess.run([sys.executable, "-c", _KILLED_CHILD, str(kill_at), "train",
                             "--train", str(train_m), "--valid", str(valid_m), "--out", str(out),
                             *sets], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, f"{where}\n{killed.stderr}"
    killed_at = load_record(out / "last.pt")["training"]["state"]["step"]
    assert 0 < killed_at <= kill_at < total, f"{where}; last checkpoint at step {killed_at}"

    resumed = subprocess.run(_cli("train", "--train", train_m, "--valid", valid_m, "--out", out,
                                  "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, f"{where}\n{resumed.stderr}"
    a = load_record(tmp_path / "straight" / "last.pt")
    b = load_record(out / "last.pt")
    assert b["training"]["state"]["step"] == total, where
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], rtol=1e-5, atol=1e-6,
                                   msg=lambda m, key=key: f"{where}: {key}: {m}")
    # The resumed epoch's training loss covers the batches before the kill too.
    losses = [[json.loads(line)["train_loss"] for line in
               (run / "metrics.jsonl").read_text().splitlines()]
              for run in (tmp_path / "straight", out)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4), where
