"""Index commands against changed recordings, damaged and read-only index folders,
through the CLI as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3

import numpy as np
import pytest
import soundfile as sf

from _faults import assert_one_line_error, invoke, read_only_folder, snapshot
from _faults import keep_thread_counts  # noqa: F401 (an autouse fixture)
from tones import make_tone_corpus


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    make_tone_corpus(folder, 4, seed=11)
    (folder / "manifest.jsonl").unlink()  # a folder of recordings, named by file
    return folder


@pytest.fixture(scope="module")
def other_audio(tmp_path_factory):
    """A recording unlike any in the archive."""
    folder = tmp_path_factory.mktemp("other")
    make_tone_corpus(folder, 1, seed=99, prefix="x")
    return folder / "x0000.wav"


@pytest.fixture(scope="module")
def built(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "idx"
    result = invoke("index", "build", archive, "--out", out, "--threads", "1")
    assert result.exit_code == 0, result.output
    return out


def copy_index(built, tmp_path):
    out = tmp_path / "idx"
    shutil.copytree(built, out)
    return out


def sql(index, statement: str) -> list[tuple]:
    """Run one statement on the index database, committed, and close it (an open
    connection would keep WAL files in the folder)."""
    with contextlib.closing(sqlite3.connect(index / "index.sqlite")) as db, db:
        return db.execute(statement).fetchall()


def stored_segments(index) -> dict[str, list[tuple]]:
    """name → [(start, end, vector bytes)] as the database holds them."""
    rows = sql(index, "SELECT s.name, g.start_s, g.end_s, g.vector FROM segments g "
                      "JOIN sources s ON s.id = g.source_id ORDER BY g.id")
    out: dict[str, list[tuple]] = {}
    for name, *row in rows:
        out.setdefault(name, []).append(tuple(row))
    return out


def search_answers(index, query) -> list[tuple]:
    result = invoke("search", "query", index, query, "--top", "5", "--json")
    assert result.exit_code == 0, result.output
    return [(h["source"], h["start"], h["end"], h["score"])
            for h in map(json.loads, result.stdout.splitlines())]


# --- a recording replaced under the same name (bug 2) ----------------------------------

@pytest.mark.parametrize("command", ["add", "build"])
def test_a_changed_recording_is_reindexed(archive, other_audio, built, tmp_path, command):
    changed = tmp_path / "archive"
    shutil.copytree(archive, changed)
    shutil.copy(other_audio, changed / "utt0002.wav")  # same name, other audio
    index = copy_index(built, tmp_path)
    args = (["index", "add", index, changed] if command == "add"
            else ["index", "build", changed, "--out", index])
    result = invoke(*args, "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["indexed"], summary["reindexed"], summary["already_indexed"]) == (1, 1, 3)

    fresh = tmp_path / "fresh"
    assert invoke("index", "build", changed, "--out", fresh, "--threads", "1").exit_code == 0
    assert stored_segments(index) == {k: v for k, v in stored_segments(fresh).items()}
    assert search_answers(index, other_audio) == search_answers(fresh, other_audio)


def test_a_touched_or_moved_recording_is_not_embedded_again(archive, built, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(archive, moved)  # new paths, new modification times, same bytes
    os.utime(moved / "utt0001.wav", ns=(1, 1))
    index = copy_index(built, tmp_path)
    result = invoke("index", "add", index, moved, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["indexed"], summary["reindexed"], summary["already_indexed"]) == (0, 0, 4)
    assert stored_segments(index) == stored_segments(built)
    audio = [a for (a,) in sql(index, "SELECT audio FROM sources")]  # follows the move
    assert all(a.startswith(str(moved)) for a in audio), audio


def test_a_changed_recording_that_no_longer_reads_replaces_the_old_one(archive, built,
                                                                       tmp_path):
    changed = tmp_path / "archive"
    shutil.copytree(archive, changed)
    (changed / "utt0003.wav").write_bytes(b"RIFF garbage")
    index = copy_index(built, tmp_path)
    result = invoke("index", "add", index, changed, "--json")
    assert result.exit_code == 3, result.output  # partial: listed as skipped
    assert "utt0003.wav" in json.loads(result.stdout)["skipped"]
    assert "utt0003.wav" not in stored_segments(index)  # no answers from audio now gone
    info = json.loads(invoke("index", "info", index, "--json").stdout)
    assert info["recordings"] == 3 and info["segments"] == sum(
        len(v) for v in stored_segments(index).values())


# --- read-only and damaged index folders (weak spot; bug 4) ----------------------------

@pytest.mark.parametrize("faiss_file", ["current", "missing", "stale"])
def test_a_read_only_index_is_searched_without_writing(built, other_audio, tmp_path,
                                                       monkeypatch, faiss_file):
    index = copy_index(built, tmp_path)
    expected = search_answers(index, other_audio)
    if faiss_file == "missing":
        (index / "vectors.faiss").unlink()
    elif faiss_file == "stale":
        sql(index, "UPDATE settings SET value = '-1' WHERE key = 'faiss_revision'")
    before = snapshot(index)
    with read_only_folder(monkeypatch, index):
        assert search_answers(index, other_audio) == expected
        result = invoke("index", "info", index, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["recordings"] == 4
    assert snapshot(index) == before


@pytest.mark.parametrize("command", ["info", "search", "add"])
@pytest.mark.parametrize("damage", ["header", "middle"])
def test_a_damaged_database_says_rebuild_it(built, archive, other_audio, tmp_path, command,
                                            damage):
    index = copy_index(built, tmp_path)
    db = index / "index.sqlite"
    data = bytearray(db.read_bytes())
    if damage == "header":
        data[:16] = b"not a database!!"
    else:  # every page after the first two: the schema survives, the rows do not
        page = int.from_bytes(data[16:18], "big")
        data[2 * page:] = b"\xa5" * (len(data) - 2 * page)
    db.write_bytes(bytes(data))
    args = {"info": ["index", "info", index],
            "search": ["search", "query", index, other_audio],
            "add": ["index", "add", index, archive]}[command]
    line = assert_one_line_error(invoke(*args), str(index), "not an asrkit index or damaged",
                                 "asrkit index build")
    assert "free disk space" not in line.lower()


def test_a_folder_with_another_sqlite_file_is_not_an_index(tmp_path):
    index = tmp_path / "idx"
    index.mkdir()
    sql(index, "CREATE TABLE other (x)")
    assert_one_line_error(invoke("index", "info", index), str(index), "not an asrkit index",
                          code=2)
