"""Splitting an archive over machines (--shard I/N) and merging the shard indexes."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from asrkit.search.embedding import AutoencoderConfig, Embedder, EmbedderConfig
from asrkit.errors import ConfigError
from asrkit.search.index import SearchIndex, build_index, remove_from_index
from asrkit.search.segments import SegmentConfig
from asrkit.search.merge import merge_indexes
from asrkit.shard import Shard, parse_shard, select_shard

from test_index import (FILES, SEGMENTS, archive, embedder_file,  # noqa: F401 (fixtures)
                        probe_vectors, rows, top_ids)


@pytest.fixture(scope="module")
def full(archive, embedder_file, tmp_path_factory):
    """The whole archive indexed on one machine."""
    out = tmp_path_factory.mktemp("full") / "idx"
    build_index(archive, out, embedder_file, SEGMENTS)
    return out


@pytest.fixture(scope="module")
def shards(archive, embedder_file, tmp_path_factory):
    """``shards(n)`` → the n shard index folders of the archive, built once."""
    made = {}

    def get(n: int):
        if n not in made:
            root = tmp_path_factory.mktemp(f"shards{n}")
            made[n] = [root / f"part{i}" for i in range(1, n + 1)]
            for i, folder in enumerate(made[n], 1):
                build_index(archive, folder, embedder_file, SEGMENTS, shard=Shard(i, n))
        return made[n]

    return get


# --- the split ----------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=40),
       count=st.integers(1, 7), seed=st.integers(0, 2**32 - 1))
def test_every_input_is_in_exactly_one_shard(names, count, seed):
    parts = [select_shard(names, Shard(i, count), key=str) for i in range(1, count + 1)]
    assert sorted(x for part in parts for x in part) == sorted(names)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    shuffled = list(np.random.default_rng(seed).permutation(np.array(names, dtype=object)))
    assert [select_shard(shuffled, Shard(i, count), key=str)
            for i in range(1, count + 1)] == parts  # every machine agrees on the split


def test_shard_spec_is_parsed():
    assert parse_shard("2/4") == Shard(2, 4) and parse_shard(" 1 / 1 ") == Shard(1, 1)
    assert str(Shard(3, 8)) == "3/8"
    assert select_shard([3, 1, 2], None, key=int) == [3, 1, 2]


@pytest.mark.parametrize("spec", ["0/2", "3/2", "x", "1/0", "", "1/2/3", "-1/2", "1.5/2", "1/"])
def test_bad_shard_spec_is_a_usage_error(spec):
    with pytest.raises(ConfigError) as info:
        parse_shard(spec)
    assert info.value.exit_code == 2 and "I/N" in str(info.value)


# --- merging ------------------------------------------------------------------------

def search_results(index_dir, queries):
    """Top-10 scores, ids and full segment records for ``queries``."""
    scores, ids = top_ids(index_dir, queries)
    with SearchIndex(index_dir) as idx:
        records = idx.segments(ids.ravel())
        sources = [(s.name, s.status, s.segments, s.duration) for s in idx.sources()]
    return scores, ids, [records[i] for i in ids.ravel()], sources


@pytest.mark.parametrize("n", [2, 3])
def test_merged_shards_answer_like_a_full_build(full, shards, tmp_path, n):
    parts = shards(n)
    sizes = [len({r[1] for r in rows(p)}) for p in parts]
    assert sum(sizes) == len(FILES) and min(sizes) >= 1
    summary = merge_indexes(tmp_path / "merged", parts[::-1])  # order given does not matter
    assert (summary.recordings, summary.segments) == (len(FILES), len(rows(full)))
    assert rows(tmp_path / "merged") == rows(full)  # same ids, names, spans, vectors
    queries = probe_vectors(full)
    want, got = search_results(full, queries), search_results(tmp_path / "merged", queries)
    assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])
    assert want[2:] == got[2:]


def test_merged_index_is_a_finished_build_of_the_archive(shards, archive, embedder_file,
                                                         tmp_path):
    merge_indexes(tmp_path / "merged", shards(2))
    summary = build_index(archive, tmp_path / "merged", embedder_file, SEGMENTS)
    assert summary.already == len(FILES) and summary.segments == 0


def test_merge_refuses_other_embedder_or_segment_settings(archive, embedder_file, shards,
                                                          tmp_path):
    first = shards(2)[0]
    odd = tmp_path / "odd"
    build_index(archive, odd, embedder_file, SegmentConfig(durations=(0.5,), hop=0.2),
                shard=Shard(2, 2))
    with pytest.raises(ConfigError, match="other segment settings"):
        merge_indexes(tmp_path / "merged", [first, odd])
    torch.manual_seed(9)
    other = Embedder(EmbedderConfig(autoencoder=AutoencoderConfig(
        hidden=32, layers=1, dim=24, decoder_hidden=32)))
    stranger = tmp_path / "stranger"
    build_index(archive, stranger, other, SEGMENTS, shard=Shard(2, 2))
    with pytest.raises(ConfigError, match="another embedder"):
        merge_indexes(tmp_path / "merged", [first, stranger])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd", "stranger"]


def test_merge_refuses_an_incomplete_or_overlapping_set(full, shards, tmp_path):
    one, two = shards(2)
    cases = [([one], "2/2 missing"), ([one, one], "both shard 1/2"),
             ([full, one, two], "is in both"), ([one, two, shards(3)[0]], "missing")]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(two, unfinished)
    remove_from_index(unfinished, [rows(two)[0][1]])  # as if killed before that recording
    cases.append(([one, unfinished], "unfinished"))
    for given_shards, message in cases:
        with pytest.raises(ConfigError, match=message):
            merge_indexes(tmp_path / "merged", given_shards)
    assert not (tmp_path / "merged").exists()


def test_merge_never_overwrites_or_leaves_half_an_index(shards, tmp_path, monkeypatch):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        merge_indexes(taken, shards(2))
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("asrkit.search.merge.sync_vectors", disk_full)
    killed = subprocess.Popen(["true"])
    killed.wait()  # its pid now names no process, like a merge killed with SIGKILL
    (tmp_path / f".merged.merging-{killed.pid}").mkdir()
    (tmp_path / f".merged.merging-{os.getppid()}").mkdir()  # a merge still running
    with pytest.raises(OSError):
        merge_indexes(tmp_path / "merged", shards(2))
    # No temporary left, the killed merge's removed, the running one's untouched:
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".merged.merging-{os.getppid()}",
                                                          "taken"]


def test_resuming_a_shard_as_another_is_refused(archive, embedder_file, shards, tmp_path):
    work = tmp_path / "part"
    shutil.copytree(shards(2)[0], work)
    with pytest.raises(ConfigError, match="shard 1/2"):
        build_index(archive, work, embedder_file, SEGMENTS, shard=Shard(2, 2))
    with pytest.raises(ConfigError, match="whole archive"):
        build_index(archive, work, embedder_file, SEGMENTS)


# --- command line -------------------------------------------------------------------

def index_app() -> typer.Typer:
    """The `index` group, `merge` included."""
    from asrkit.cli import index
    return index.app


def test_cli_index_build_shards_and_merge(archive, embedder_file, full, tmp_path):
    app = index_app()
    runner = CliRunner()
    for i in (1, 2):
        r = runner.invoke(app, ["build", str(archive), "--out", str(tmp_path / f"p{i}"),
                                "--embedder", str(embedder_file), "--durations", "0.3,0.6,0.9",
                                "--hop", "0.1", "--shard", f"{i}/2", "--json"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["merge", str(tmp_path / "all"), str(tmp_path / "p1"),
                            str(tmp_path / "p2"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["recordings"] == len(FILES)
    assert rows(tmp_path / "all") == rows(full)
    r = runner.invoke(app, ["merge", str(tmp_path / "again"), str(tmp_path / "p1")])
    assert r.exit_code == 2 and "error: shard(s) 2/2 missing" in r.output
    r = runner.invoke(app, ["build", str(archive), "--out", str(tmp_path / "x"),
                            "--shard", "3/2"])
    assert r.exit_code == 2 and "does not exist" in r.output and not (tmp_path / "x").exists()


def transcribe_app() -> typer.Typer:
    from asrkit.cli import transcribe
    app = typer.Typer()
    app.command()(transcribe.transcribe)
    app.command("other")(lambda: None)  # two commands, so `transcribe` is named as typed
    return app


def test_cli_transcribe_shards_split_the_inputs(write_wav, tmp_path):
    t = np.arange(4000) / 16000
    for k in range(5):
        write_wav(tmp_path / "audio" / f"f{k}.wav", 0.3 * np.sin(2 * np.pi * 300 * (k + 1) * t))
    ids = []
    for i in (1, 2):
        out = tmp_path / f"part{i}.jsonl"
        r = CliRunner().invoke(transcribe_app(), ["transcribe", str(tmp_path / "audio"),
                                                  "--format", "jsonl", "-o", str(out),
                                                  "--shard", f"{i}/2"])
        assert r.exit_code == 0, r.output
        ids.append([json.loads(line)["id"] for line in out.read_text().splitlines()])
    assert sorted(ids[0] + ids[1]) == [f"f{k}" for k in range(5)]
    assert len(ids[0]) == 3 and not set(ids[0]) & set(ids[1])
    for spec in ("0/2", "x"):
        r = CliRunner().invoke(transcribe_app(), ["transcribe", str(tmp_path / "audio"),
                                                  "--shard", spec])
        assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output
