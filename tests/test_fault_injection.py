"""Fault injection: each command is killed with SIGKILL at a seeded random point,
recovered the documented way (re-run, --skip-done), and compared with an uninterrupted
run. A failure names its seed; ASRKIT_FAULT_SEED=N replays it. (train: see
test_training_crash.py; full disks and read-only outputs: test_write_failures.py and
test_cli_faults.py.)"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest

from _faults import invoke, random_seed, reported_seed
from _faults import keep_thread_counts  # noqa: F401 (an autouse fixture)
from tones import make_tone_corpus

# The child replaces MODULE.NAME by a wrapper that kills the process with SIGKILL
# right after the Nth call returns: a crash at an exact point of the work.
_KILLED_CHILD = """
import importlib, os, signal, sys
module, path, kill_after = sys.argv.pop(1), sys.argv.pop(1), int(sys.argv.pop(1))
*owners, name = path.split(".")
target, calls = importlib.import_module(module), [0]
for owner in owners:
    target = getattr(target, owner)
original = getattr(target, name)
def wrapper(*args, **kwargs):
    result = original(*args, **kwargs)
    calls[0] += 1
    if calls[0] == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(target, name, wrapper)
from asrkit.cli.main import main
main()
"""
STORE = "asrkit.search.store"


def killed(module: str, name: str, after: int, *args) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-c", _KILLED_CHILD, module, name, str(after),
                          *map(str, args)], capture_output=True, text=True)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    return run


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    make_tone_corpus(folder, 8, seed=31)
    (folder / "manifest.jsonl").unlink()
    return folder


@pytest.fixture(scope="module")
def query(tmp_path_factory):
    folder = tmp_path_factory.mktemp("query")
    make_tone_corpus(folder, 1, seed=32, prefix="q")
    return folder / "q0000.wav"


@pytest.fixture(scope="module")
def straight(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "idx"
    assert invoke("index", "build", archive, "--out", out, "--threads", "1").exit_code == 0
    return out


def contents(index) -> list[tuple]:
    """Every recording with its segments (times and vectors), by name."""
    with closing(sqlite3.connect(index / "index.sqlite")) as db:
        return db.execute("SELECT s.name, s.status, g.start_s, g.end_s, g.vector FROM sources s "
                          "LEFT JOIN segments g ON g.source_id = s.id "
                          "ORDER BY s.name, g.start_s, g.end_s").fetchall()


def answers(index, query) -> list[tuple]:
    result = invoke("search", "query", index, query, "--top", "10", "--json")
    assert result.exit_code == 0, result.output
    return [(h["source"], h["start"], h["end"], h["score"])
            for h in map(json.loads, result.stdout.splitlines())]


def assert_same_index(index, reference, query) -> None:
    assert contents(index) == contents(reference)
    assert answers(index, query) == answers(reference, query)


def test_index_build_killed_then_rerun(archive, straight, query, tmp_path):
    with reported_seed(random_seed()) as seed:
        after = random.Random(seed).randint(1, 7)  # recordings committed before the kill
        out = tmp_path / "idx"
        killed(STORE, "IndexStore.add_source", after, "index", "build", archive, "--out", out,
               "--threads", "1")
        resumed = invoke("index", "build", archive, "--out", out, "--threads", "1", "--json")
        assert resumed.exit_code == 0, resumed.output
        assert json.loads(resumed.stdout)["already_indexed"] == after
        assert_same_index(out, straight, query)


def test_index_add_killed_then_rerun(archive, straight, query, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    for wav in sorted(archive.glob("*.wav"))[:4]:
        (half / wav.name).write_bytes(wav.read_bytes())
    out = tmp_path / "idx"
    assert invoke("index", "build", half, "--out", out, "--threads", "1").exit_code == 0
    with reported_seed(random_seed()) as seed:
        after = random.Random(seed).randint(1, 3)
        killed(STORE, "IndexStore.add_source", after, "index", "add", out, archive,
               "--threads", "1")
        resumed = invoke("index", "add", out, archive, "--threads", "1", "--json")
        assert resumed.exit_code == 0, resumed.output
        assert json.loads(resumed.stdout)["already_indexed"] == 4 + after
        assert contents(out) == contents(straight)
        assert answers(out, query) == answers(straight, query)


def test_index_merge_killed_then_rerun(archive, query, tmp_path):
    shards = [tmp_path / f"shard{i}" for i in (1, 2, 3)]
    for i, shard in enumerate(shards, 1):
        assert invoke("index", "build", archive, "--out", shard, "--shard", f"{i}/3",
                      "--threads", "1").exit_code == 0
    reference = tmp_path / "reference"
    assert invoke("index", "merge", reference, *shards).exit_code == 0
    with reported_seed(random_seed()) as seed:
        # Killed while copying recording N of 8 into the half-written merge (each
        # recording's segments are one executemany), which never becomes OUT_DIR.
        after = random.Random(seed).randint(1, 8)
        out = tmp_path / "merged"
        killed("asrkit.search.database", "_Cursor.executemany", after, "index", "merge",
               out, *shards)
        assert not out.exists()
        again = invoke("index", "merge", out, *shards)
        assert again.exit_code == 0, again.output
        assert contents(out) == contents(reference)
        assert answers(out, query) == answers(reference, query)
        assert not list(tmp_path.glob(".merged.merging-*"))  # the abandoned half is gone


def test_transcribe_output_killed_then_skip_done(archive, tmp_path):
    make_tone_corpus(tmp_path / "utts", 6, seed=33)
    manifest = tmp_path / "utts" / "manifest.jsonl"
    whole = tmp_path / "whole.jsonl"
    assert invoke("transcribe", manifest, "-f", "jsonl", "-o", whole).exit_code == 0
    with reported_seed(random_seed()) as seed:
        after = random.Random(seed).randint(1, 5)  # transcripts written before the kill
        out = tmp_path / "out.jsonl"
        killed("asrkit.asr.output", "TranscriptWriter.write", after, "transcribe", manifest,
               "-f", "jsonl", "-o", out)
        assert len(out.read_text().splitlines()) == after
        again = invoke("transcribe", manifest, "-f", "jsonl", "-o", out, "--skip-done")
        assert again.exit_code == 0, again.output
        lines = out.read_text().splitlines()
        assert sorted(lines) == sorted(whole.read_text().splitlines())
