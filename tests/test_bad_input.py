"""Bad input through the real CLI: every command handles each case or skips it with a
one-line reason naming the file, never a traceback, and keeps what it finished.

One corpus holds every bad file (plus a few good ones). Each command runs once over it
(module fixtures); the tests then check the outcome case by case. Exit codes are the
README's: 0 done, 1 error (nothing done), 3 partial (some inputs skipped, listed).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from asrkit.cli.main import app
from tones import make_tone_corpus

runner = CliRunner()
RATE = 16_000
TINY_TRAIN = ["--set", "model.layers=1", "--set", "model.hidden=32", "--set",
              "features.n_mels=40", "--set", "train.batch_seconds=30", "--set",
              "train.epochs=1", "--set", "train.threads=1"]
LONG_SECONDS = 3 * 3600


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def tone(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))
    wave = wave.astype(np.float32)
    return wave if channels == 1 else np.tile(wave[:, None], (1, channels))


def _truncate(path: Path, wave: np.ndarray, **kwargs) -> None:
    sf.write(path, wave, RATE, **kwargs)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _with_sample(value: float) -> np.ndarray:
    wave = tone(1.0)
    wave[4000:4100] = value
    return wave


def _long_silence(path: Path) -> None:
    """Three hours of 8 kHz digital silence, written a minute at a time (FLAC keeps
    it a few hundred kB, and nothing long is ever held in memory)."""
    with sf.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        block = np.zeros(8000 * 60, np.float32)
        for _ in range(LONG_SECONDS // 60):
            f.write(block)


@dataclass(frozen=True)
class Case:
    name: str
    file: str  # path inside the corpus folder
    make: Callable[[Path], None]
    problem: str | None  # regex of the skip reason; None = must be handled
    query_problem: str | None = None  # as a search query, when it differs
    transcribe_problem: str | None = None  # for transcribe/evaluate, when it differs


AUDIO_CASES = [
    Case("empty", "empty.wav", lambda p: p.write_bytes(b""), "not a readable audio file"),
    Case("header_only", "header_only.wav",
         lambda p: sf.write(p, np.zeros(0, np.float32), RATE, subtype="PCM_16"),
         "holds no audio samples"),
    Case("truncated_wav", "truncated.wav",
         lambda p: _truncate(p, tone(1.0), subtype="PCM_16"), "truncated WAV file"),
    Case("truncated_flac", "cut.flac", lambda p: _truncate(
        p, tone(2.0) + 0.01 * np.random.default_rng(0).standard_normal(2 * RATE)),
         "unreadable or truncated"),
    Case("text_as_wav", "notes.wav", lambda p: p.write_text("not audio\n"),
         "not a readable audio file"),
    Case("nan_samples", "nan.wav",
         lambda p: sf.write(p, _with_sample(np.nan), RATE, subtype="FLOAT"), "NaN or infinite"),
    Case("inf_samples", "inf.wav",
         lambda p: sf.write(p, _with_sample(np.inf), RATE, subtype="FLOAT"), "NaN or infinite"),
    Case("all_zero", "zeros.wav",
         lambda p: sf.write(p, np.zeros(RATE, np.float32), RATE, subtype="PCM_16"), None,
         "silent"),
    Case("one_sample", "one.wav",
         lambda p: sf.write(p, np.full(1, 0.5, np.float32), RATE, subtype="PCM_16"), None,
         "shorter than", "too short to transcribe"),
    Case("six_channel_24bit_96k", "multi.wav",
         lambda p: sf.write(p, tone(1.0, 96_000, 6), 96_000, subtype="PCM_24"), None),
    Case("eight_bit", "u8.wav", lambda p: sf.write(p, tone(1.0, 8000), 8000, subtype="PCM_U8"),
         None),
    Case("unicode_and_spaces", "données été/日本 語 file.wav",
         lambda p: sf.write(p, tone(1.0), RATE, subtype="PCM_16"), None),
]
BAD = [c for c in AUDIO_CASES if c.problem]
HANDLED = [c for c in AUDIO_CASES if not c.problem]
# Too short to give one output frame: indexed (as nothing) but not transcribed as a "word".
TRANSCRIBE_BAD = [c for c in AUDIO_CASES if c.problem or c.transcribe_problem]
TRANSCRIBE_HANDLED = [c for c in AUDIO_CASES if c not in TRANSCRIBE_BAD]


def ids(cases):
    return [c.name for c in cases]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Every audio case in one folder (with a space in its name), plus a symlink loop."""
    folder = tmp_path_factory.mktemp("bad") / "bad inputs"
    for case in AUDIO_CASES:
        path = folder / case.file
        path.parent.mkdir(parents=True, exist_ok=True)
        case.make(path)
    os.symlink(folder, folder / "loop")  # a folder that contains itself
    return folder


@pytest.fixture(scope="module")
def long_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "three hours.flac"
    _long_silence(path)
    return path


def manifest(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def audio_records(folder: Path, text: str = "AB") -> list[dict]:
    return [{"id": c.name, "audio": str(folder / c.file), "text": text} for c in AUDIO_CASES]


def assert_clean(result, exit_code: int) -> None:
    """The documented exit code, and no traceback anywhere."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output


def reason_line(stderr: str, name: str, problem: str) -> str | None:
    """The stderr line that names ``name`` and matches ``problem``, if any."""
    return next((line for line in stderr.splitlines()
                 if name in line and re.search(problem, line)), None)


# --- transcribe ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def transcribed(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("transcribe") / "out.jsonl"
    result = invoke("transcribe", corpus, "-f", "jsonl", "-o", out)  # bundled model
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return result, {r["id"]: r for r in records}


def test_transcribe_exit_code_and_no_repeats(transcribed):
    result, records = transcribed
    assert_clean(result, 3)
    assert not any(k.startswith("loop/") for k in records)  # the loop is not followed
    assert f"transcribed {len(TRANSCRIBE_HANDLED)} file(s)" in result.stderr


@pytest.mark.parametrize("case", TRANSCRIBE_BAD, ids=ids(TRANSCRIBE_BAD))
def test_transcribe_skips_with_a_reason(transcribed, case):
    result, records = transcribed
    problem = case.transcribe_problem or case.problem
    assert reason_line(result.stderr, case.file, problem), result.stderr
    assert Path(case.file).stem not in records


@pytest.mark.parametrize("case", TRANSCRIBE_HANDLED, ids=ids(TRANSCRIBE_HANDLED))
def test_transcribe_handles(transcribed, case):
    _, records = transcribed
    record = records[Path(case.file).with_suffix("").as_posix()]
    assert record["duration"] >= 0 and isinstance(record["text"], str)


# --- evaluate -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def evaluated(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    extra = [{"id": "missing", "audio": str(root / "gone.wav"), "text": "AB"},
             {"id": "out_of_vocabulary", "audio": str(corpus / "u8.wav"), "text": "AB ~€ ZQ"},
             {"id": "too_long_text", "audio": str(corpus / "u8.wav"), "text": "ABCD " * 60}]
    m = manifest(root / "m.jsonl", audio_records(corpus) + extra)
    result = invoke("evaluate", "an4", m, "--json", "--results", root / "r.jsonl")
    rows = [json.loads(line) for line in (root / "r.jsonl").read_text().splitlines()]
    return result, {r["id"]: r for r in rows}


def test_evaluate_scores_the_rest_and_lists_the_skipped(evaluated):
    result, rows = evaluated
    assert_clean(result, 3)
    summary = json.loads(result.stdout)
    assert summary["utterances"] == len(TRANSCRIBE_HANDLED) + 2
    assert summary["skipped"] == len(TRANSCRIBE_BAD) + 1
    assert reason_line(result.stderr, "gone.wav", "no such file")
    for case in TRANSCRIBE_BAD:
        assert reason_line(result.stderr, case.file, case.transcribe_problem or case.problem), \
            case.name
    # Characters the model lacks and texts longer than the audio are scored, not skipped.
    assert rows["out_of_vocabulary"]["word_errors"] >= 1
    assert rows["too_long_text"]["word_errors"] >= 55


# --- train --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(corpus, long_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    good = [json.loads(x) for x in make_tone_corpus(root / "t", 12, seed=3).read_text()
            .splitlines()]
    valid = [json.loads(x) for x in make_tone_corpus(root / "v", 4, seed=4, prefix="v")
             .read_text().splitlines()]
    good = [dict(r, audio=str(root / "t" / r["audio"])) for r in good]
    valid = [dict(r, audio=str(root / "v" / r["audio"])) for r in valid]
    extra = [{"id": "missing", "audio": str(root / "gone.wav"), "text": "AB"},
             {"id": "too_long_text", "audio": good[0]["audio"], "text": "ABCD" * 40},
             {"id": "three_hours", "audio": str(long_file), "text": "AB"}]
    train_m = manifest(root / "train.jsonl", good + audio_records(corpus) + extra)
    valid_m = manifest(root / "valid.jsonl", valid + [
        {"id": "out_of_vocabulary", "audio": valid[0]["audio"], "text": "AB ZQ"}])
    result = invoke("train", "--train", train_m, "--valid", valid_m, "--out", root / "run",
                    *TINY_TRAIN)
    return result, root / "run"


def test_train_finishes_and_keeps_its_outputs(trained):
    result, run = trained
    assert_clean(result, 0)  # train exits 0 once trained; exclusions are listed
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()


TRAIN_EXCLUDED = [("missing", "gone.wav", "no such file"),
                  ("too_long_text", "too_long_text", "cannot fit"),
                  ("three_hours", "three hours.flac", "too long to train on"),
                  ("out_of_vocabulary", "out_of_vocabulary", "not in the vocabulary")]
# Files whose header is fine are caught when their samples are read, or when CTC sees
# zero frames; either way a line names them.
TRAIN_REASONS = {"header_only": "cannot fit", "nan_samples": "NaN", "inf_samples": "NaN",
                 "truncated_flac": "unreadable or truncated"}


@pytest.mark.parametrize("case", BAD, ids=ids(BAD))
def test_train_excludes_bad_audio_with_a_reason(trained, case):
    result, _ = trained
    problem = TRAIN_REASONS.get(case.name, case.problem)
    assert reason_line(result.stderr, case.name, problem), result.stderr


@pytest.mark.parametrize("name,shown,problem", TRAIN_EXCLUDED, ids=[t[0] for t in TRAIN_EXCLUDED])
def test_train_excludes_bad_lines_with_a_reason(trained, name, shown, problem):
    result, _ = trained
    assert reason_line(result.stderr, shown, problem), result.stderr


# --- index build and search ---------------------------------------------------------

@pytest.fixture(scope="module")
def indexed(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("index") / "idx"
    result = invoke("index", "build", corpus, "--out", out, "--json", "--threads", "1")
    return result, out


def test_index_build_indexes_the_rest_and_lists_the_skipped(indexed):
    result, out = indexed
    assert_clean(result, 3)
    summary = json.loads(result.stdout)
    assert set(summary["skipped"]) == {c.file for c in BAD}
    info = json.loads(invoke("index", "info", out, "--json").stdout)
    assert info["recordings"] == len(HANDLED)


@pytest.mark.parametrize("case", BAD, ids=ids(BAD))
def test_index_build_skips_with_a_reason(indexed, case):
    result, _ = indexed
    assert re.search(case.problem, json.loads(result.stdout)["skipped"][case.file])


@pytest.mark.parametrize("case", AUDIO_CASES, ids=ids(AUDIO_CASES))
def test_search_with_each_file_as_the_query(indexed, corpus, case):
    _, out = indexed
    result = invoke("search", out, corpus / case.file, "--top", "2", "--json")
    problem = case.problem or case.query_problem
    if problem is None:
        assert_clean(result, 0)
        assert len(result.stdout.splitlines()) >= 1
    else:
        assert_clean(result, 1)
        line, = result.stderr.splitlines()
        assert line.startswith("error: ") and case.file in line and re.search(problem, line)


# --- manifest-level problems: refused whole, before any work, old outputs intact ----

def _fatal_manifests(root: Path, audio: Path) -> dict[str, tuple[Path, str]]:
    good = {"id": "a", "audio": str(audio), "text": "AB"}
    malformed = root / "malformed.jsonl"
    malformed.write_text(json.dumps(good) + '\n{"id": "b", "audio": \n', encoding="utf-8")
    duplicate = manifest(root / "duplicate.jsonl", [good, dict(good, text="BA")])
    return {"malformed": (malformed, r"malformed\.jsonl:2: not valid JSON"),
            "duplicate_ids": (duplicate, r"duplicate\.jsonl:2( \[a\])?: duplicate id")}


COMMANDS = {
    "transcribe": lambda m, out: ("transcribe", m, "-f", "jsonl", "-o", out / "old.jsonl"),
    "evaluate": lambda m, out: ("evaluate", "an4", m, "--results", out / "old.jsonl"),
    "train": lambda m, out: ("train", "--train", m, "--valid", m, "--out", out, *TINY_TRAIN),
    "index_build": lambda m, out: ("index", "build", m, "--out", out),
    "data_validate": lambda m, out: ("data", "validate", m),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("problem", ["malformed", "duplicate_ids"])
def test_bad_manifest_is_refused_naming_file_and_line(corpus, tmp_path, command, problem):
    m, message = _fatal_manifests(tmp_path, corpus / "u8.wav")[problem]
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.jsonl").write_text("finished earlier\n")
    result = invoke(*COMMANDS[command](m, out))
    assert_clean(result, 1)
    assert re.search(message, result.output), result.output
    if command != "data_validate":  # validate lists every problem in its report
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["old.jsonl"]
    assert (out / "old.jsonl").read_text() == "finished earlier\n"


# --- names ----------------------------------------------------------------------------

def test_same_stem_in_one_folder_gives_two_transcripts(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(1.0), RATE, subtype="PCM_16")
    sf.write(folder / "a.flac", np.zeros(RATE, np.float32), RATE)
    result = invoke("transcribe", folder, "--output-dir", tmp_path / "out")
    assert_clean(result, 0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.flac.txt", "a.wav.txt"]


def test_ids_cannot_write_outside_the_output_folder(corpus, tmp_path):
    audio = str(corpus / "u8.wav")
    m = manifest(tmp_path / "m.jsonl", [{"id": "../escaped", "audio": audio},
                                        {"id": str(tmp_path / "abs"), "audio": audio},
                                        {"id": "sub/fine", "audio": audio}])
    result = invoke("transcribe", m, "--output-dir", tmp_path / "out")
    assert_clean(result, 3)
    assert reason_line(result.stderr, "../escaped", "outside --output-dir")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "abs.txt").exists()
    assert (tmp_path / "out" / "sub" / "fine.txt").is_file()


# --- a three-hour recording -----------------------------------------------------------

def test_three_hour_file_is_transcribed_and_indexed_chunk_by_chunk(long_file, tmp_path):
    """About 4 CPU-minutes: the recording is read, resampled and run 30 s (transcribe)
    or 10 min (index) at a time. A small random model keeps transcription cheap."""
    import torch
    from asrkit.asr.checkpoint import save_model
    from asrkit.asr.model import AsrModel, ModelConfig
    from asrkit.text import Vocabulary
    torch.manual_seed(0)
    save_model(tmp_path / "tiny.pt", AsrModel(Vocabulary(tuple(" AB")),
                                              ModelConfig(layers=1, hidden=16, subsample=3)))
    out = tmp_path / "long.jsonl"
    result = invoke("transcribe", "-m", tmp_path / "tiny.pt", long_file, "-f", "jsonl", "-o", out)
    assert_clean(result, 0)
    record = json.loads(out.read_text())
    assert record["duration"] == pytest.approx(LONG_SECONDS, abs=1.0)
    result = invoke("index", "build", long_file.parent, "--out", tmp_path / "idx", "--json")
    assert_clean(result, 0)
    assert json.loads(result.stdout)["audio_hours"] == pytest.approx(3.0, abs=1e-3)
