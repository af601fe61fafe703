"""The recognition commands exactly as a user types them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from asrkit.cli.main import app
from tones import make_tone_corpus

runner = CliRunner()
TINY = ["--set", "model.layers=1", "--set", "model.hidden=32", "--set", "features.n_mels=40",
        "--set", "train.batch_seconds=4", "--set", "train.epochs=2", "--set", "train.threads=2"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    train_m = make_tone_corpus(root / "train", 24, seed=3)
    valid_m = make_tone_corpus(root / "valid", 6, seed=4, prefix="v")
    result = invoke("train", "--train", train_m, "--valid", valid_m, "--out", root / "run", *TINY)
    assert result.exit_code == 0, result.output
    return root, valid_m


def test_help_lists_every_command_and_version():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "transcribe", "evaluate", "models"):
        assert command in result.output
    assert invoke("--version").output.startswith("asrkit ")


def test_train_writes_self_describing_outputs(trained):
    run = trained[0] / "run"
    for name in ("best.pt", "last.pt", "config.yaml", "metrics.jsonl", "curve.png"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert "hidden: 32" in (run / "config.yaml").read_text()


def test_transcribe_formats(trained):
    root, valid_m = trained
    out = invoke("transcribe", root / "run", root / "valid", "--format", "jsonl")
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 6 and {"id", "text", "words"} <= set(records[0])
    out = invoke("transcribe", root / "run", valid_m, "--format", "srt", "--output-dir",
                 root / "srt")
    assert out.exit_code == 0, out.output
    assert len(list((root / "srt").glob("*.srt"))) == 6


def test_transcribe_skips_bad_files_keeps_the_rest_and_resumes(trained, tmp_path):
    root, _ = trained
    folder = tmp_path / "in"
    shutil.copytree(root / "valid", folder, ignore=shutil.ignore_patterns("*.jsonl"))
    (folder / "broken.wav").write_text("not audio")
    sf.write(folder / "nan.wav", np.full(1600, np.nan, np.float32), 16_000, subtype="FLOAT")
    out_file = tmp_path / "out.jsonl"
    result = invoke("transcribe", root / "run", folder, "-f", "jsonl", "-o", out_file)
    assert result.exit_code == 3
    assert "broken.wav: not a readable audio file" in result.stderr
    assert "NaN" in result.stderr
    assert "Traceback" not in result.output
    assert len(out_file.read_text().splitlines()) == 6
    again = invoke("transcribe", root / "run", folder, "-f", "jsonl", "-o", out_file,
                   "--skip-done")
    assert "(6 already done)" in again.stderr
    assert len(out_file.read_text().splitlines()) == 6


def test_evaluate_reports_counts_and_per_utterance_results(trained, tmp_path):
    root, valid_m = trained
    result = invoke("evaluate", root / "run", valid_m, "--json", "--results", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    words = summary["words"]
    assert summary["utterances"] == 6
    assert words["rate"] == pytest.approx(
        (words["substitutions"] + words["deletions"] + words["insertions"])
        / words["reference_length"], abs=1e-6)
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 6


def test_user_errors_are_one_line_without_traceback(trained, tmp_path):
    root, valid_m = trained
    result = invoke("evaluate", tmp_path / "missing.pt", valid_m)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "no such model file" in result.stderr
    result = invoke("train", "--train", valid_m, "--valid", valid_m, "--out", tmp_path / "x",
                    "--set", "train.lrr=1")
    assert result.exit_code == 2 and "unknown key" in result.stderr
    result = invoke("transcribe", root / "run", valid_m, "--lm", "lm.arpa")
    assert result.exit_code == 2 and "greedy decoder takes no lm" in result.stderr  # usage


def test_bundled_model_is_listed_and_used_without_a_model_argument(trained):
    root, _ = trained
    listed = json.loads(invoke("models", "--json").stdout)
    an4 = next(m for m in listed if m["name"] == "an4")
    assert 0 < an4["test_wer"] < 0.5 and "AN4" in an4["trained_on"]
    result = invoke("transcribe", root / "valid" / "v0000.wav", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == "v0000"


def test_bundled_fp16_copy_matches_the_trained_model(trained, tmp_path):
    from asrkit.asr.checkpoint import bundle_record, load_model, load_record, save_record
    run = trained[0] / "run"
    save_record(tmp_path / "small.pt", bundle_record(load_record(run / "best.pt"), {"x": 1}))
    assert (tmp_path / "small.pt").stat().st_size < 0.6 * (run / "best.pt").stat().st_size
    full, small = load_model(run / "best.pt"), load_model(tmp_path / "small.pt")
    wave = torch.randn(1, 16_000)
    torch.testing.assert_close(small(wave)[0], full(wave)[0], atol=2e-2, rtol=0)
    assert small.info["x"] == 1
