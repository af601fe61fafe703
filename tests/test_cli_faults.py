"""Failures of the user's files and disks through the CLI: each is one error line that
names the file and the fix, never a traceback; and the promises about what is kept."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from _faults import assert_one_line_error, invoke, read_only_folder, snapshot
from _faults import keep_thread_counts  # noqa: F401 (an autouse fixture)
from asrkit.manifest import read_manifest, write_manifest
from tones import make_tone_corpus

TINY_TRAIN = ["--set", "model.layers=1", "--set", "model.hidden=32", "--set",
              "features.n_mels=40", "--set", "train.batch_seconds=8", "--set",
              "train.threads=1", "--set", "train.epochs=1"]
NOT_UTF8 = "caf\xe9 au lait\n".encode("latin-1")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return (make_tone_corpus(root / "train", 8, seed=3),
            make_tone_corpus(root / "valid", 3, seed=4, prefix="v"))


def train_args(corpus, out, *extra):
    return ["train", "--train", corpus[0], "--valid", corpus[1], "--out", out,
            *TINY_TRAIN, *extra]


# --- values that crashed deep inside training ----------------------------------------

@pytest.mark.parametrize("setting, fragment", [
    ("train.epochs=0", "train.epochs"), ("train.epochs=-2", "train.epochs"),
    ("train.lr=nan", "train.lr"), ("train.lr=0", "train.lr"), ("train.lr=-1e-3", "train.lr")])
def test_train_refuses_values_it_cannot_run_with(corpus, tmp_path, setting, fragment):
    result = invoke(*train_args(corpus, tmp_path / "run", "--set", setting))
    assert_one_line_error(result, fragment, code=2)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_lists_utterances_with_unusable_audio_at_the_end(corpus, tmp_path):
    utts = read_manifest(corpus[0])
    bad = tmp_path / "nan.wav"
    wave = np.full(16000, 0.1, np.float32)
    wave[100:200] = np.nan
    sf.write(bad, wave, 16000, subtype="FLOAT")
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, utts + [type(utts[0])("broken", str(bad), utts[0].text)])
    result = invoke("train", "--train", manifest, "--valid", corpus[1], "--out",
                    tmp_path / "run", *TINY_TRAIN)
    assert result.exit_code == 0, result.output
    final = result.stderr.rsplit("skipped ", 1)
    assert len(final) == 2 and re.match(r"\d+ utterance\(s\):", final[1]), result.stderr
    assert re.search(r"^  broken: .*(NaN|non-finite|infinite)", final[1], re.M | re.I), \
        final[1]


# --- outputs on a read-only location (EROFS) -----------------------------------------

def test_train_into_a_read_only_location(corpus, tmp_path, monkeypatch):
    with read_only_folder(monkeypatch, tmp_path / "ro"):
        result = invoke(*train_args(corpus, tmp_path / "ro" / "run"))
    assert_one_line_error(result, str(tmp_path / "ro"), "read-only", "writable folder")


def test_index_build_into_a_read_only_location(corpus, tmp_path, monkeypatch):
    with read_only_folder(monkeypatch, tmp_path / "ro"):
        result = invoke("index", "build", corpus[1].parent, "--out", tmp_path / "ro" / "idx")
    assert_one_line_error(result, str(tmp_path / "ro"), "read-only")


def test_index_merge_into_a_read_only_location(corpus, tmp_path, monkeypatch):
    shards = [tmp_path / f"shard{i}" for i in (1, 2)]
    for i, shard in enumerate(shards, 1):
        built = invoke("index", "build", corpus[1].parent, "--out", shard, "--shard", f"{i}/2")
        assert built.exit_code == 0, built.output
    before = [snapshot(s) for s in shards]
    (tmp_path / "ro").mkdir()
    with read_only_folder(monkeypatch, tmp_path / "ro"):
        result = invoke("index", "merge", tmp_path / "ro" / "merged", *shards)
    assert_one_line_error(result, str(tmp_path / "ro"), "read-only")
    assert [snapshot(s) for s in shards] == before
    assert list((tmp_path / "ro").iterdir()) == []


# --- user text and manifests ---------------------------------------------------------

def test_search_eval_on_an_empty_manifest(tmp_path):
    (tmp_path / "words.jsonl").write_text("")
    assert_one_line_error(invoke("search", "eval", tmp_path / "words.jsonl"),
                          str(tmp_path / "words.jsonl"), "holds no word recordings")


def test_a_lexicon_that_is_not_utf8_is_named(corpus, tmp_path):
    lexicon = tmp_path / "words.txt"
    lexicon.write_bytes(b"ABC\nDEF\n" + NOT_UTF8)
    wav = sorted(corpus[1].parent.glob("*.wav"))[0]
    result = invoke("transcribe", wav, "--decoder", "beam", "--lexicon", lexicon)
    assert_one_line_error(result, f"{lexicon}:3", "not valid UTF-8", "byte 0xe9", "save the file as UTF-8")


def test_data_import_folder_names_a_transcript_that_is_not_utf8(corpus, tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    for wav in sorted(corpus[1].parent.glob("*.wav"))[:2]:
        (folder / wav.name).write_bytes(wav.read_bytes())
        (folder / wav.with_suffix(".txt").name).write_text("ABC\n")
    bad = folder / "v0001.txt"
    bad.write_bytes(NOT_UTF8)
    result = invoke("data", "import", "folder", folder, "--out", tmp_path / "m.jsonl")
    assert_one_line_error(result, str(bad), "not valid UTF-8", "save the file as UTF-8")
    assert not (tmp_path / "m.jsonl").exists()


def test_unconverted_os_errors_are_one_line_with_the_file(monkeypatch, tmp_path):
    """The class: an OSError that no command converted still names its file."""
    import asrkit.search.index as index_module

    def failing(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "some.file"))

    monkeypatch.setattr(index_module, "archive_sources", failing)
    result = invoke("index", "add", tmp_path, tmp_path)
    assert_one_line_error(result, "some.file", "Permission denied", "writable folder")


@pytest.mark.parametrize("args,words", [
    (["evaluate", "an4"], ["Missing argument", "manifest", "asrkit evaluate -h"]),
    (["transcribe", "an4", "x.wav", "--batch-seconds", "abc"],
     ["--batch-seconds", "valid number", "asrkit transcribe -h"]),
    (["transcrib"], ["No such command", "transcribe"])])
def test_the_installed_command_names_a_parse_error_in_one_line(args, words):
    """What a shell user sees (main(), not the test runner): one error line, exit 2."""
    run = subprocess.run([sys.executable, "-c", "from asrkit.cli.main import main; main()",
                          *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for word in words:
        assert word in lines[0]
