"""Test conditions: seeded, the SNR and band they name, unlike training, and scored per
condition from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from asrkit.asr.checkpoint import save_model
from asrkit.asr.evaluation import evaluate
from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.augment import TRAIN_ROOMS
from asrkit.cli.main import app
from asrkit.conditions import TEST_ROOMS, parse_conditions, evaluation_rooms
from asrkit.errors import ConfigError
from asrkit.manifest import read_manifest
from asrkit.text import Vocabulary
from test_augment import energy_above, speechlike
from tones import make_tone_corpus


def test_parse_names_and_values():
    conds = parse_conditions("clean, 8k,telephone,noise10,noise-5,reverb,reverb0.8")
    assert [(c.kind, c.value) for c in conds] == [
        ("clean", 0.0), ("narrowband", 0.0), ("telephone", 0.0), ("noise", 10.0),
        ("noise", -5.0), ("reverb", 0.5), ("reverb", 0.8)]


@pytest.mark.parametrize("text", ["loud", "noise", "reverb5", "clean,clean", "8k,,noise0"])
def test_bad_names_are_errors(text):
    with pytest.raises(ConfigError):
        parse_conditions(text)


@pytest.mark.parametrize("snr", [0.0, 10.0])
def test_noise_condition_snr_and_seeding(snr):
    (cond,) = parse_conditions(f"noise{snr:g}")
    wave = speechlike()
    a, b, other = cond.apply(wave, "utt1"), cond.apply(wave, "utt1"), cond.apply(wave, "utt2")
    assert np.array_equal(a, b) and not np.array_equal(a, other)
    added = a.astype(np.float64) - wave
    measured = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(added ** 2))
    assert abs(measured - snr) < 0.5


def test_8k_condition_is_band_limited():
    (cond,) = parse_conditions("8k")
    assert energy_above(cond.apply(speechlike(), "x"), 4500) < 1e-3


def test_evaluation_rooms_are_not_training_rooms():
    for (train_lo, train_hi), (test_lo, test_hi) in zip(TRAIN_ROOMS, TEST_ROOMS):
        assert test_lo > train_hi  # every test room is larger in every dimension
    rooms = evaluation_rooms(0.5)
    assert len({r.tobytes() for r in rooms}) == len(rooms)
    (cond,) = parse_conditions("reverb")
    wave = speechlike()
    out = cond.apply(wave, "a")
    assert len(out) == len(wave) and np.array_equal(out, cond.apply(wave, "a"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("conditions")
    manifest = make_tone_corpus(root / "test", 6, seed=5)
    model = AsrModel(Vocabulary.from_texts(u.text for u in read_manifest(manifest)),
                     ModelConfig(layers=1, hidden=16)).eval()
    save_model(root / "model.pt", model)
    return root, model, manifest


def test_evaluate_under_a_condition_is_seeded(tiny):
    _, model, manifest = tiny
    utts = read_manifest(manifest)
    (clean,) = parse_conditions("clean")
    (noisy,) = parse_conditions("noise0")
    hyps = lambda r: [u.hypothesis for u in r.utterances]  # noqa: E731
    assert hyps(evaluate(model, utts, condition=clean)) == hyps(evaluate(model, utts))
    first = evaluate(model, utts, condition=noisy)
    assert hyps(first) == hyps(evaluate(model, utts, condition=noisy))
    assert len(first.utterances) == 6


def test_cli_rows_json_and_plot(tiny):
    root, _, manifest = tiny
    runner = CliRunner()
    args = ["evaluate", str(root / "model.pt"), str(manifest), "--condition", "clean,8k,noise0"]
    result = runner.invoke(app, args + ["--json", "--plot", str(root / "c.png")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["condition"] for r in rows] == ["clean", "8k", "noise0"]
    assert all(r["utterances"] == 6 and 0 <= r["cer"] for r in rows)
    assert (root / "c.png").read_bytes()[:4] == b"\x89PNG"
    again = runner.invoke(app, args + ["--json"])
    assert json.loads(again.stdout) == rows  # seeded: the same audio every run
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and table.stdout.splitlines()[0].split()[:3] == [
        "condition", "WER", "CER"]
    bad = runner.invoke(app, ["evaluate", str(root / "model.pt"), str(manifest),
                              "--condition", "underwater"])
    assert bad.exit_code != 0 and "unknown condition" in bad.output
