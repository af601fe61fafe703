"""Word-confidence calibration: ECE on synthetic sets whose calibration is known, the
two fits, the model file, and `calibrate` / `transcribe --min-confidence` as typed."""

from __future__ import annotations

import json

import jiwer
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asrkit.asr.calibration import (Calibration, fit_calibration, fit_isotonic,
                                    fit_temperature, label_words, reliability)
from asrkit.asr.checkpoint import (calibrated_record, load_model, load_record, save_model,
                                   save_record)
from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.cli.main import app
from asrkit.errors import ConfigError
from asrkit.manifest import Utterance, write_manifest
from asrkit.text import Vocabulary
from tones import make_tone_corpus

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def synthetic(n: int = 20_000, power: float = 1.0, seed: int = 0):
    """Confidences uniform on 0..1; each word right with probability ``c ** power``
    (power 1: calibrated; power 3: over-confident)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.0, 1.0, n)
    return c, rng.uniform(0.0, 1.0, n) < c ** power


def test_ece_is_near_zero_when_calibrated_and_large_when_over_confident():
    assert reliability(*synthetic()).ece < 0.02
    curve = reliability(*synthetic(power=3.0))
    # E|c - c^3| over uniform c is 1/4
    assert curve.ece == pytest.approx(0.25, abs=0.02)
    assert curve.words == 20_000 and len(curve.bins) == 10
    assert sum(b.count for b in curve.bins) == curve.words


def test_isotonic_fit_is_monotone_and_lowers_ece_on_its_own_data():
    c, right = synthetic(2_000, power=3.0, seed=1)
    xs, ys = fit_isotonic(c, right)
    assert np.all(np.diff(xs) >= 0) and np.all(np.diff(ys) >= 0)
    calibration = Calibration("isotonic", xs=xs, ys=ys)
    grid = calibration.apply(np.linspace(0, 1, 101))
    assert np.all(np.diff(grid) >= 0)
    assert reliability(calibration.apply(c), right).ece < 0.5 * reliability(c, right).ece


def test_pool_adjacent_violators_matches_a_hand_worked_example():
    xs, ys = fit_isotonic([0.1, 0.2, 0.3, 0.4], [True, False, False, True])
    # 1, 0, 0 pool to 1/3 over 0.1..0.3; then 1
    assert ys == pytest.approx((1 / 3, 1.0)) and xs == pytest.approx((0.2, 0.4))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_fit_recovers_a_known_temperature(temperature):
    rng = np.random.default_rng(2)
    c = rng.uniform(0.05, 1.0, 20_000)
    right = rng.uniform(0.0, 1.0, len(c)) < np.exp(np.log(c) / temperature)
    assert fit_temperature(c, right) == pytest.approx(temperature, rel=0.05)


def test_auto_fit_reports_held_out_ece_and_needs_both_outcomes():
    c, right = synthetic(4_000, power=2.0, seed=3)
    calibration = fit_calibration(c, right)
    assert calibration.words == 4_000
    assert calibration.ece_after < 0.03 < calibration.ece_before
    # c^2 is exactly temperature 0.5, which the one-parameter fit finds
    if calibration.method == "temperature":
        assert calibration.temperature == pytest.approx(0.5, rel=0.1)
    with pytest.raises(ConfigError, match="right and wrong"):
        fit_calibration([0.5, 0.9], [True, True])


@pytest.mark.parametrize("ref,hyp", [("A B C D", "A X C D E"), ("A B", "B"), ("A", "C D"),
                                     ("", "A B"), ("A B", "")])
def test_words_marked_right_are_jiwers_hits(ref, hyp):
    right = label_words(ref, hyp)
    assert len(right) == len(hyp.split())
    if ref and hyp:
        assert sum(right) == jiwer.process_words(ref, hyp).hits
    assert label_words("A B C D", "A X C D E") == [True, False, True, True, False]


def tiny_model(path):
    torch.manual_seed(0)
    model = AsrModel(Vocabulary(tuple(" ABCD")), ModelConfig(layers=1, hidden=8))
    save_model(path, model)
    return path


def test_model_file_keeps_its_calibration_and_old_files_load_without(tmp_path):
    path = tiny_model(tmp_path / "old.pt")
    assert load_model(path).calibration is None
    assert load_model("an4").calibration is None  # the bundled file, made before calibration
    calibration = Calibration("isotonic", xs=(0.2, 0.6), ys=(0.1, 0.9), words=10)
    save_record(tmp_path / "cal.pt", calibrated_record(load_record(path), calibration))
    assert load_model(tmp_path / "cal.pt").calibration == calibration
    assert load_record(tmp_path / "cal.pt")["state_dict"].keys() == \
        load_record(path)["state_dict"].keys()


@pytest.fixture
def labelled(tmp_path):
    """A random tiny model, and a manifest whose references are the model's own output
    for half the utterances (right words) and another word for the rest (wrong)."""
    model = tiny_model(tmp_path / "model.pt")
    manifest = make_tone_corpus(tmp_path / "audio", 8, seed=5)
    out = tmp_path / "raw.jsonl"
    assert invoke("transcribe", "-m", model, manifest, "-f", "jsonl", "-o", out).exit_code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    utts = [Utterance(r["id"], r["audio"], r["text"] if i % 2 else "NOWORD")
            for i, r in enumerate(records)]
    write_manifest(tmp_path / "valid.jsonl", utts)
    return model, tmp_path / "valid.jsonl", records


def test_cli_calibrate_writes_a_model_whose_transcripts_are_calibrated(labelled, tmp_path):
    model, manifest, raw = labelled
    result = invoke("calibrate", model, manifest, "--out", tmp_path / "cal.pt",
                    "--plot", tmp_path / "rel.png", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["words"] == sum(len(r["words"]) for r in raw)
    assert (tmp_path / "rel.png").stat().st_size > 0
    calibration = load_model(tmp_path / "cal.pt").calibration
    assert calibration.method == summary["method"]
    out = tmp_path / "cal.jsonl"
    assert invoke("transcribe", "-m", tmp_path / "cal.pt", manifest, "-f", "jsonl",
                  "-o", out).exit_code == 0
    new = [json.loads(line) for line in out.read_text().splitlines()]
    raw_conf = [w["confidence"] for r in raw for w in r["words"]]
    new_conf = [w["confidence"] for r in new for w in r["words"]]
    assert new_conf == pytest.approx(calibration.apply(raw_conf), abs=2e-4)
    # evaluate reports the calibrated confidences' ECE
    result = invoke("evaluate", tmp_path / "cal.pt", manifest, "--json")
    assert json.loads(result.stdout)["confidence"]["words"] == len(raw_conf)


def test_min_confidence_drops_exactly_the_words_below_it(labelled, tmp_path):
    model, manifest, raw = labelled
    confidences = sorted(w["confidence"] for r in raw for w in r["words"])
    assert len(set(confidences)) > 2, "the tiny model should give varied confidences"
    threshold = confidences[len(confidences) // 2]  # a word's own: ties are kept
    out = tmp_path / "kept.jsonl"
    result = invoke("transcribe", "-m", model, manifest, "-f", "jsonl", "-o", out,
                    "--min-confidence", threshold)
    assert result.exit_code == 0, result.output
    for before, after in zip(raw, map(json.loads, out.read_text().splitlines())):
        assert [w["word"] for w in after["words"]] == [w["word"] for w in before["words"]]
        assert [w.get("dropped", False) for w in after["words"]] == \
            [w["confidence"] < threshold for w in before["words"]]
        assert after["text"] == " ".join(w["word"] for w in before["words"]
                                         if w["confidence"] >= threshold)
    result = invoke("transcribe", "-m", model, manifest, "--min-confidence", 1.5)
    assert result.exit_code == 2 and "--min-confidence" in result.output
