"""Training on several processes (torchrun, gloo on the CPU) equals one process taking
the same global batches, and a run resumes with another number of processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from asrkit.asr.checkpoint import load_record
from asrkit.asr.config import load_config
from asrkit.asr.dataset import bucket_batches, shard_batches
from asrkit.asr.distributed import Cluster, detect_cluster
from asrkit.errors import ConfigError
from asrkit.asr.evaluation import validate
from asrkit.manifest import read_manifest
from asrkit.asr.training import train

from tones import make_tone_corpus

# No dropout or augmentation is needed for the equality (randomness is seeded by batch
# position), but they are kept on to show it: dropout and SpecAugment draw the same.
SETTINGS = ["model.layers=1", "model.hidden=32", "features.n_mels=40", "train.threads=1",
            "train.batch_seconds=4", "train.epochs=3", "train.warmup_steps=2",
            "train.checkpoint_every=100"]
STEPS = 6  # three steps an epoch with a global batch of two: crosses a validation
CLI = "from asrkit.cli.main import main; main()"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return (make_tone_corpus(root / "train", 40, seed=11),
            make_tone_corpus(root / "valid", 6, seed=12, prefix="v"))


def torchrun(corpus, out, processes: int, *settings: str) -> subprocess.CompletedProcess:
    """``asrkit train`` under torchrun, exactly as a user starts it."""
    script = out.parent / "asrkit_cli.py"
    script.write_text(CLI)
    sets = [x for s in SETTINGS + list(settings) for x in ("--set", s)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={processes}", str(script), "train", "--train", str(corpus[0]),
         "--valid", str(corpus[1]), "--out", str(out), *sets],
        capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def in_process(corpus, out, *settings: str, resume: bool = False):
    train_utts, valid_utts = read_manifest(corpus[0]), read_manifest(corpus[1])
    return train(train_utts, valid_utts, out, load_config(None, SETTINGS + list(settings)),
                 resume=resume)


def assert_same_weights(a, b) -> None:
    ra, rb = load_record(a / "last.pt"), load_record(b / "last.pt")
    assert ra["training"]["state"]["step"] == rb["training"]["state"]["step"]
    for key, value in ra["state_dict"].items():
        torch.testing.assert_close(value, rb["state_dict"][key], rtol=1e-4, atol=1e-5)


def history(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_processes(corpus, tmp_path_factory):
    """A 2-process run of ``STEPS`` steps."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = torchrun(corpus, out, 2, f"train.max_steps={STEPS}")
    # Rank 0 alone reports.
    said = done.stdout + done.stderr
    assert [said.count(x) for x in ("training on ", "epoch 1: train", "best validation")] \
        == [1, 1, 1]
    return out


def test_two_processes_equal_one_process_over_the_same_global_batch(
        corpus, two_processes, tmp_path, one_thread):
    single = tmp_path / "single"
    in_process(corpus, single, "train.accumulate=2", f"train.max_steps={STEPS}")
    assert_same_weights(two_processes, single)
    # Validation shared out over two processes gives the figures of the whole set.
    (a,), (b,) = history(two_processes), history(single)
    assert a["valid_cer"] == pytest.approx(b["valid_cer"])
    assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-4)
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    # Rank 0 alone wrote the outputs: one line per epoch, no stray files.
    assert sorted(p.name for p in two_processes.iterdir()) == \
        ["best.pt", "config.yaml", "curve.png", "last.pt", "metrics.jsonl"]


def test_a_two_process_run_resumes_on_one_process(corpus, two_processes, tmp_path, one_thread):
    out = tmp_path / "resumed"
    torchrun(corpus, out, 2, "train.max_steps=3")
    # One process accumulating two batches keeps the global batch: the same run.
    in_process(corpus, out, "train.accumulate=2", f"train.max_steps={STEPS}", resume=True)
    assert_same_weights(two_processes, out)
    # Without accumulation (half the global batch) it continues too, to the end.
    result = in_process(corpus, out, "train.max_steps=0", resume=True)
    assert result.epochs_run == 3 and result.steps > STEPS


def test_shards_are_disjoint_equal_and_cover_whole_global_batches():
    durations = [0.5 + (i * 7919 % 23) / 10 for i in range(101)]
    batches = bucket_batches(durations, 6.0, epoch=3, seed=5)
    for world, accumulate, start in [(1, 1, 0), (2, 1, 0), (3, 2, 4), (4, 1, 7)]:
        group = world * accumulate
        shards = [shard_batches(batches, start, world, r, accumulate) for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # every process takes as many steps
        steps = len(shards[0])
        assert steps == (len(batches) - start) // group
        for k in range(steps):
            taken = [b for s in shards for b in s[k]]
            assert taken == batches[start + k * group: start + (k + 1) * group]
    assert shard_batches(batches, 0, 2, 1) == shard_batches(
        bucket_batches(durations, 6.0, epoch=3, seed=5), 0, 2, 1)  # seed + epoch decide


def test_sharded_validation_sums_to_the_whole(corpus, one_thread):
    from asrkit.asr.model import AsrModel, ModelConfig
    from asrkit.features import FeatureConfig
    from asrkit.asr.dataset import prepare_examples
    from asrkit.text import Vocabulary
    from asrkit.asr import evaluation
    utts = read_manifest(corpus[0])[:12]
    model = AsrModel(Vocabulary.from_texts(u.text for u in utts), ModelConfig(1, 16),
                     FeatureConfig(n_mels=20))
    examples, _ = prepare_examples(utts, model.vocab, lambda d: int(d * 50))
    whole = evaluation._validation_sums(model, examples, 2.0, 0, 1)
    parts = [evaluation._validation_sums(model, examples, 2.0, r, 3) for r in range(3)]
    assert [sum(p[i] for p in parts) for i in range(6)] == pytest.approx(whole)
    assert validate(model, examples, 2.0, Cluster()) == validate(model, examples, 2.0)


def test_cluster_from_torchrun_environment():
    c = detect_cluster({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                        "LOCAL_WORLD_SIZE": "2"})
    assert (c.rank, c.world_size, c.local_rank, c.local_world_size) == (3, 4, 1, 2)
    assert not c.is_main and c.distributed
    assert detect_cluster({}) == Cluster()
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        detect_cluster({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="environment variable"):
        detect_cluster({"RANK": "x", "WORLD_SIZE": "2"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is allowed on a GPU")
def test_fp16_on_the_cpu_is_a_config_error(corpus, tmp_path, one_thread):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        in_process(corpus, tmp_path / "run", "train.precision=fp16")
    assert not (tmp_path / "run").exists()


def test_bf16_on_a_cpu_without_bf16_instructions_is_a_config_error(corpus, tmp_path,
                                                                   one_thread, monkeypatch):
    from asrkit.asr import distributed
    monkeypatch.setattr(distributed, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="bf16 needs a CPU with bfloat16 instructions"):
        in_process(corpus, tmp_path / "run", "train.precision=bf16")
    assert not (tmp_path / "run").exists()


def test_accumulate_must_be_positive(corpus, tmp_path, one_thread):
    with pytest.raises(ConfigError, match="train.accumulate"):
        in_process(corpus, tmp_path / "run", "train.accumulate=0")


def test_loss_scaling_changes_nothing_and_resumes_exactly(corpus, tmp_path, one_thread,
                                                          monkeypatch):
    """The fp16 path's GradScaler, run on the CPU with autocast left off (oneDNN has no
    fp16 LSTM): power-of-two loss scaling leaves the updates as they were, and its
    state travels through a checkpoint."""
    import contextlib
    from asrkit.asr import training, training_loop
    fp32 = in_process(corpus, tmp_path / "fp32", "train.max_steps=4")
    monkeypatch.setattr(training, "check_precision", lambda precision, device: None)
    monkeypatch.setattr(training_loop, "autocast",
                        lambda precision, device: contextlib.nullcontext())
    in_process(corpus, tmp_path / "scaled", "train.precision=fp16", "train.max_steps=2")
    in_process(corpus, tmp_path / "scaled", "train.precision=fp16", "train.max_steps=4",
               resume=True)
    assert fp32.steps == 4
    assert_same_weights(tmp_path / "fp32", tmp_path / "scaled")
    scaler = load_record(tmp_path / "scaled" / "last.pt")["training"]["scaler"]
    assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == 4  # restored at 2


def test_audio_found_unusable_on_any_process_is_reported(corpus, tmp_path, one_thread):
    """Each process reads its own share of the batches, so each finds its own bad audio
    mid-epoch; the final list (rank 0's), last.pt and metrics.jsonl hold every process's,
    as one process finds them."""
    import numpy as np
    import soundfile as sf
    from asrkit.manifest import Utterance, write_manifest
    utts = read_manifest(corpus[0])
    bad = {u.id for u in utts[::5]}  # eight, spread over both processes' batches
    for u in utts:
        if u.id in bad:
            wave = sf.read(u.audio, dtype="float32")[0]
            wave[len(wave) // 2:] = np.nan  # the header is fine: found only when read
            sf.write(tmp_path / f"{u.id}.wav", wave, 16000, subtype="FLOAT")
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [Utterance(u.id, str(tmp_path / f"{u.id}.wav"), u.text)
                              if u.id in bad else u for u in utts])
    out = tmp_path / "two"
    done = torchrun((manifest, corpus[1]), out, 2, "train.epochs=1")
    final = done.stderr.rsplit("skipped ", 1)[1].splitlines()
    reported = {line.split(":")[0].strip() for line in final[1:] if line.startswith("  ")}
    assert final[0] == f"{len(reported)} utterance(s):", done.stderr[-3000:]
    # Rank 0 alone logs as it goes: what it found itself. The rest came from rank 1.
    found_by_rank0 = set(re.findall(r"WARNING: skipped (\S+):", done.stderr))
    assert found_by_rank0 and reported - found_by_rank0, done.stderr[-3000:]
    single = in_process((manifest, corpus[1]), tmp_path / "one", "train.epochs=1",
                        "train.accumulate=2")  # the same global batches on one process
    assert reported == {s.id for s in single.skipped} and reported <= bad
    assert set(load_record(out / "last.pt")["training"]["state"]["unusable"]) == reported
    assert history(out)[-1]["unusable"] == len(reported)
