"""`asrkit data validate`: every problem found at once, each at its line, with a fix."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import typer
from typer.testing import CliRunner

from asrkit.asr.checkpoint import save_model
from asrkit.cli import data
from asrkit.errors import ManifestError
from asrkit.features import FeatureConfig
from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.text import Vocabulary
from asrkit.asr.validation import read_manifest_tolerant, validate_manifest

SR = 16_000


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def tone(path: Path, seconds: float, rate: int = SR, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * rate))) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate,
             subtype=subtype)
    return path


def manifest(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                            for x in lines), encoding="utf-8")
    return path


def run(*args):
    app = typer.Typer()
    app.add_typer(data.app, name="data")
    return CliRunner().invoke(app, ["data", *map(str, args)])


@pytest.fixture
def clean(tmp_path) -> Path:
    tone(tmp_path / "a.wav", 1.0)
    tone(tmp_path / "b.wav", 2.0)
    tone(tmp_path / "c.flac", 0.5)
    return manifest(tmp_path / "clean.jsonl", [
        {"id": "a", "audio": "a.wav", "text": "yes"},
        {"id": "b1", "audio": "b.wav", "text": "go left", "offset": 0.0, "duration": 1.5},
        {"id": "b2", "audio": "b.wav", "text": "no", "offset": 1.5},
        {"id": "c", "audio": "c.flac", "text": "Stop"}])


def test_clean_manifest(clean):
    report = validate_manifest(clean)
    assert report.ok and report.problems == () and report.warnings == ()
    assert (report.lines, report.utterances, report.audio_files) == (4, 4, 3)
    assert report.sample_rates == ((SR, 4),)
    d = report.durations
    assert (d.count, d.min, d.median, d.max) == (4, 0.5, 0.75, 1.5)
    assert d.total_hours == pytest.approx(3.5 / 3600, abs=1e-4)
    assert dict(report.characters) == {"Y": 1, "E": 2, "S": 2, "G": 1, "O": 3, " ": 1,
                                       "L": 1, "F": 1, "T": 2, "N": 1, "P": 1}
    assert report.vocabulary is None and report.subsample == ModelConfig().subsample


def test_clean_manifest_cli(clean):
    result = run("validate", clean)
    assert result.exit_code == 0, result.output
    assert "4 utterances on 4 lines, 3 audio files" in result.stdout
    assert "16000 Hz (4)" in result.stdout and result.stdout.rstrip().endswith("OK")
    as_json = run("validate", clean, "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["ok"] is True


def broken_corpus(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A manifest with one problem per line; returns it and {line: expected problem}."""
    tone(tmp_path / "ok.wav", 1.0)
    (tmp_path / "text.wav").write_text("not audio at all\n" * 20)
    sf.write(tmp_path / "header_only.wav", np.zeros(0, np.float32), SR)
    cut = tone(tmp_path / "cut.wav", 2.0)
    cut.write_bytes(cut.read_bytes()[:20000])
    nan = np.full(8000, 0.1, np.float32)
    nan[4000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, SR, subtype="FLOAT")
    lines = [
        {"id": "good", "audio": "ok.wav", "text": "fine"},  # 1
        '{"id": "broken", "audio": ',  # 2
        {"id": "good", "audio": "ok.wav", "text": "again"},  # 3
        {"id": "missing", "audio": "missing.wav", "text": "x"},  # 4
        {"id": "text", "audio": "text.wav", "text": "x"},  # 5
        {"id": "empty", "audio": "header_only.wav", "text": "x"},  # 6
        {"id": "cut", "audio": "cut.wav", "text": "x"},  # 7
        {"id": "nan", "audio": "nan.wav", "text": "x"},  # 8
        {"id": "late", "audio": "ok.wav", "text": "x", "offset": 3.0},  # 9
        {"id": "long", "audio": "ok.wav", "text": "x", "offset": 0.5, "duration": 1.0},  # 10
        {"id": "chatty", "audio": "ok.wav", "text": "a b c d e " * 10},  # 11
        {"id": "zw", "audio": "ok.wav", "text": "zero\u200bwidth"},  # 12
        {"id": "neg", "audio": "ok.wav", "duration": -1},  # 13
    ]
    expected = {2: "not valid JSON", 3: "duplicate id (first used on line 1)",
                4: "no such file", 5: "not a readable audio file", 6: "holds no audio samples",
                7: "truncated", 8: "NaN", 9: "offset 3.000 s is past the end",
                10: "segment ends at 1.500 s but the file is only 1.000 s long",
                11: "CTC cannot align it", 12: "invisible or control characters U+200B",
                13: "'duration' must be a non-negative number"}
    return manifest(tmp_path / "m.jsonl", lines), expected


def test_every_problem_is_found_at_its_line(tmp_path):
    path, expected = broken_corpus(tmp_path)
    report = validate_manifest(path)
    assert not report.ok
    found = {int(i.location.rsplit(":", 1)[1]): i for i in report.problems}
    assert sorted(found) == sorted(expected)  # one per broken line, nothing else
    for line, text in expected.items():
        assert text in found[line].problem, (line, found[line])
        assert found[line].fix  # every problem says what to do
    assert found[4].id == "missing" and found[2].id is None
    assert (report.lines, report.utterances) == (13, 10)  # 2, 3 and 13 are not utterances
    assert [w.id for w in report.warnings] == []  # every line has a transcript


def test_cli_lists_problems_and_fails(tmp_path):
    path, expected = broken_corpus(tmp_path)
    result = run("validate", path)
    assert result.exit_code == 1
    assert f"{len(expected)} problems:" in result.stdout
    assert "m.jsonl:4 [missing]:" in result.stdout and "fix:" in result.stdout
    assert result.stdout.rstrip().endswith(f"FAILED: {len(expected)} problem(s)")
    limited = run("validate", path, "--limit", "2")
    assert f"... and {len(expected) - 2} more" in limited.stdout
    as_json = json.loads(run("validate", path, "--json").stdout)
    assert as_json["ok"] is False and len(as_json["problems"]) == len(expected)
    assert {p["location"] for p in as_json["problems"]} == \
        {f"{path}:{line}" for line in expected}


def test_headers_only_skips_decoding(tmp_path):
    path, _ = broken_corpus(tmp_path)
    problems = {i.id for i in validate_manifest(path, read_samples=False).problems}
    assert "nan" not in problems  # finding NaN needs the samples
    assert {"cut", "empty", "text", "missing"} <= problems  # headers are enough for these


def test_non_utf8_line_does_not_stop_the_check(tmp_path):
    tone(tmp_path / "ok.wav", 1.0)
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"id": "\xff", "audio": "ok.wav"}\n'
                     b'{"id": "b", "audio": "missing.wav", "text": "x"}\n')
    report = validate_manifest(path)
    assert [(i.location.rsplit(":", 1)[1], i.problem.split(":")[0]) for i in report.problems] \
        == [("1", "line is not valid UTF-8"), ("2", f"{(tmp_path / 'missing.wav')}")]


def test_tolerant_reader(tmp_path):
    path = manifest(tmp_path / "m.jsonl", [{"id": "a", "audio": "x.wav"}, "[]", "",
                                           {"id": "a", "audio": "y.wav"},
                                           {"id": "b", "audio": "z.wav"}])
    entries, issues = read_manifest_tolerant(path)
    assert [(e.lineno, e.utt.id) for e in entries] == [(1, "a"), (5, "b")]
    assert [i.location for i in issues] == [f"{path}:2", f"{path}:4"]
    with pytest.raises(ManifestError):
        read_manifest_tolerant(tmp_path / "nope.jsonl")


def test_warnings_do_not_fail_unless_strict(tmp_path):
    tone(tmp_path / "a.wav", 1.0)
    tone(tmp_path / "b.wav", 1.0)
    tone(tmp_path / "low.wav", 1.0, rate=8000)
    path = manifest(tmp_path / "m.jsonl", [
        {"id": "a", "audio": "a.wav", "text": "yes"}, {"id": "b", "audio": "b.wav"},
        {"id": "low", "audio": "low.wav", "text": " "}])
    report = validate_manifest(path)
    assert report.ok and report.sample_rates == ((SR, 2), (8000, 1))
    problems = [w.problem for w in report.warnings]
    assert problems == ["no transcript", "empty transcript",
                        "mixed sample rates: 16000 Hz (2), 8000 Hz (1)",
                        "audio at 8000 Hz is below the model's 16000 Hz"]
    assert report.durations.count == 3  # 8 kHz audio is timed at its own rate
    assert run("validate", path).exit_code == 0
    strict = run("validate", path, "--strict")
    assert strict.exit_code == 1 and "4 warnings:" in strict.stdout


def test_progress_callback(clean):
    calls = []
    validate_manifest(clean, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


# --- against a model: vocabulary and the frames CTC needs ---

VOCAB = Vocabulary(tuple(" ABC"))


def tiny_model(subsample: int) -> AsrModel:
    torch.manual_seed(0)
    return AsrModel(VOCAB, ModelConfig(layers=1, hidden=8, subsample=subsample),
                    FeatureConfig(n_mels=16)).eval()


def cyclic(n: int) -> str:
    """``n`` symbols with no equal neighbours ("ABCABC..."): needs exactly n frames."""
    return ("ABC" * n)[:n]


@pytest.mark.parametrize("subsample", [1, 2, 3])
def test_ctc_length_check_matches_the_model(tmp_path, subsample):
    model = tiny_model(subsample)
    tone(tmp_path / "half.wav", 0.5)
    wave = torch.from_numpy(sf.read(tmp_path / "half.wav", dtype="float32")[0])[None]
    with torch.no_grad():
        log_probs, lengths = model(wave)
    frames = int(lengths[0])  # what the model really emits for this audio
    texts = {"fits": cyclic(frames), "one_over": cyclic(frames + 1),
             "repeats": "AA" + cyclic(frames - 2)}  # the repeat needs a blank between
    path = manifest(tmp_path / "m.jsonl", [{"id": k, "audio": "half.wav", "text": v}
                                           for k, v in texts.items()])
    report = validate_manifest(path, model)
    assert [i.id for i in report.problems] == ["one_over", "repeats"]
    assert f"give only {frames} (subsample {subsample})" in report.problems[0].problem
    # The same verdicts from CTC itself: finite loss exactly when the check passes.
    for name, text in texts.items():
        labels = torch.tensor([VOCAB.encode(text)])
        loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), labels, lengths,
                                            torch.tensor([labels.shape[1]]), reduction="sum")
        assert math.isfinite(float(loss)) == (name == "fits")


def test_vocabulary_check_with_a_model(tmp_path):
    tone(tmp_path / "a.wav", 2.0)
    path = manifest(tmp_path / "m.jsonl", [
        {"id": "ok", "audio": "a.wav", "text": "abc cab"},
        {"id": "bad", "audio": "a.wav", "text": "A-B! c"}])
    report = validate_manifest(path, tiny_model(2))
    (problem,) = report.problems
    assert problem.id == "bad" and "'!', '-' are not in the model's vocabulary" in \
        problem.problem
    assert report.vocabulary == VOCAB.symbols


def test_cli_with_a_model_file(tmp_path):
    model = tiny_model(3)
    save_model(tmp_path / "model.pt", model)
    tone(tmp_path / "a.wav", 0.3)
    path = manifest(tmp_path / "m.jsonl", [{"id": "x", "audio": "a.wav", "text": "ABC A"},
                                           {"id": "y", "audio": "a.wav", "text": "ABCD"}])
    result = run("validate", path, "--model", tmp_path / "model.pt", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["vocabulary"] == list(" ABC") and report["subsample"] == 3
    assert [p["id"] for p in report["problems"]] == ["y"]


def test_cli_errors(tmp_path, clean):
    missing = run("validate", tmp_path / "nope.jsonl")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: ")
    assert "no such manifest" in missing.stderr and "Traceback" not in missing.output
    bad_model = run("validate", clean, "--model", tmp_path / "nope.pt")
    assert bad_model.exit_code == 1 and "no such model file" in bad_model.stderr
    assert run("validate", clean, "--case", "title").exit_code == 2
