"""A full disk or a read-only output folder: one clear error line, exit 1, and the
previous checkpoint, transcripts or index left intact (and resumable).

A full disk is simulated where it can be real (``/dev/full`` returns ENOSPC on every
write, SQLite's ``max_page_count`` makes the database full) and by making
``os.replace`` fail with ENOSPC otherwise. Read-only folders are made with chmod, which
does not stop root: under root those tests skip, and the full-disk ones cover the same
code paths. Every writing command on a disk that fills at a random point, and on
injected and real read-only folders: ``test_disk_faults.py``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import faiss
import pytest
from typer.testing import CliRunner

import asrkit.search.store
from asrkit.cli.main import app
from tones import make_tone_corpus

runner = CliRunner()
TINY_TRAIN = ["--set", "model.layers=1", "--set", "model.hidden=32", "--set",
              "features.n_mels=40", "--set", "train.batch_seconds=8", "--set",
              "train.threads=1"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_non_root = pytest.mark.skipif(
    IS_ROOT, reason="running as root: chmod does not stop root from writing "
                    "(the full-disk tests cover the same code paths)")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = re.findall(r"error: .*", result.stderr)  # a progress bar may precede it
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def read_only():
    """chmod a folder read-only for the test, writable again afterwards."""
    folders = []

    def _make(folder: Path) -> Path:
        folder.chmod(0o555)
        folders.append(folder)
        return folder

    yield _make
    for folder in folders:
        folder.chmod(0o755)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return (make_tone_corpus(root / "train", 10, seed=3),
            make_tone_corpus(root / "valid", 4, seed=4, prefix="v"))


# --- train: the checkpoint ------------------------------------------------------------

@pytest.fixture
def run(corpus, tmp_path):
    """A finished one-epoch run, ready to be resumed."""
    train_m, valid_m = corpus
    out = tmp_path / "run"
    result = invoke("train", "--train", train_m, "--valid", valid_m, "--out", out,
                    *TINY_TRAIN, "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    return out


def test_train_on_a_full_disk_keeps_the_previous_checkpoint(corpus, run, monkeypatch):
    train_m, valid_m = corpus
    before = snapshot(run)
    monkeypatch.setattr(os, "replace", no_space)
    result = invoke("train", "--train", train_m, "--valid", valid_m, "--out", run,
                    "--resume", *TINY_TRAIN, "--set", "train.epochs=2")
    assert_one_line_error(result, "No space left on device", "intact")
    assert snapshot(run) == before  # no temporary file left behind, nothing changed
    monkeypatch.undo()
    result = invoke("train", "--train", train_m, "--valid", valid_m, "--out", run,
                    "--resume", *TINY_TRAIN, "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output  # space is back: the run continues


@needs_non_root
def test_train_into_a_read_only_folder_keeps_the_previous_checkpoint(corpus, run, read_only):
    train_m, valid_m = corpus
    before = snapshot(run)
    result = invoke("train", "--train", train_m, "--valid", valid_m, "--out", read_only(run),
                    "--resume", *TINY_TRAIN, "--set", "train.epochs=2")
    assert_one_line_error(result, str(run))
    assert snapshot(run) == before


# --- transcribe: -o and --output-dir --------------------------------------------------

def test_transcribe_to_a_full_device_is_one_line(corpus):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    result = invoke("transcribe", corpus[1], "-f", "jsonl", "-o", "/dev/full")
    assert_one_line_error(result, "/dev/full", "No space left on device", "--skip-done")


def test_transcribe_output_dir_on_a_full_disk_keeps_finished_files(corpus, tmp_path,
                                                                  monkeypatch):
    out = tmp_path / "out"
    assert invoke("transcribe", corpus[1], "--output-dir", out).exit_code == 0
    before = snapshot(out)
    monkeypatch.setattr(os, "replace", no_space)
    result = invoke("transcribe", corpus[1], "--output-dir", out)
    assert_one_line_error(result, "No space left on device")
    assert snapshot(out) == before


@needs_non_root
def test_transcribe_into_a_read_only_folder(corpus, tmp_path, read_only):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "old.jsonl").write_text("kept\n")
    read_only(folder)
    result = invoke("transcribe", corpus[1], "-f", "jsonl", "-o", folder / "new.jsonl")
    assert_one_line_error(result, "new.jsonl", "cannot write")
    result = invoke("transcribe", corpus[1], "--output-dir", folder)
    assert_one_line_error(result, str(folder))
    assert snapshot(folder) == {"old.jsonl": b"kept\n"}


# --- index build: SQLite and the FAISS file -------------------------------------------

def _index_count(index: Path) -> int:
    return json.loads(invoke("index", "info", index, "--json").stdout)["recordings"]


def test_index_build_on_a_full_disk_resumes_when_space_is_back(corpus, tmp_path, monkeypatch):
    archive = corpus[0].parent
    opened = asrkit.search.store.IndexStore.__init__

    def nearly_full(self, path, *args, **kwargs):  # room for the settings and a few recordings
        opened(self, path, *args, **kwargs)
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count = {pages + 3}")

    monkeypatch.setattr(asrkit.search.store.IndexStore, "__init__", nearly_full)
    out = tmp_path / "idx"
    result = invoke("index", "build", archive, "--out", out, "--threads", "1")
    assert_one_line_error(result, "index.sqlite", "full")
    kept = _index_count(out)
    assert 0 < kept < 10  # recordings finished before the disk filled are kept
    monkeypatch.undo()
    result = invoke("index", "build", archive, "--out", out, "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["already_indexed"] == kept
    assert _index_count(out) == 10


def test_failed_faiss_write_keeps_the_previous_index(corpus, tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    shutil.copytree(corpus[0].parent, archive, ignore=shutil.ignore_patterns("utt0009.wav"))
    out = tmp_path / "idx"
    assert invoke("index", "build", archive, "--out", out, "--threads", "1").exit_code == 0
    before = (out / "vectors.faiss").read_bytes()
    shutil.copy(corpus[0].parent / "utt0009.wav", archive)

    def failing_write(index, writer):  # FAISS's own failure, its temporary file begun
        raise RuntimeError("Error in faiss::write_index: No space left on device")

    monkeypatch.setattr(faiss, "write_index", failing_write)
    result = invoke("index", "build", archive, "--out", out, "--threads", "1")
    assert_one_line_error(result, "vectors.faiss", "No space left on device", "intact")
    assert (out / "vectors.faiss").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    # The database has the new recording; the FAISS file catches up when next opened.
    with sqlite3.connect(out / "index.sqlite") as db:
        stored = db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    info = json.loads(invoke("index", "info", out, "--json").stdout)
    assert info["recordings"] == 10 and info["segments"] == stored


@needs_non_root
def test_index_build_into_a_read_only_folder(corpus, tmp_path, read_only):
    out = tmp_path / "idx"
    assert invoke("index", "build", corpus[1].parent, "--out", out).exit_code == 0
    before = snapshot(out)
    result = invoke("index", "build", corpus[0].parent, "--out", read_only(out))
    assert_one_line_error(result, str(out))
    assert snapshot(out) == before
