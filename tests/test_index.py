import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import faiss
import numpy as np
import pytest
import torch

from asrkit.search.embedding import (AutoencoderConfig, Embedder, EmbedderConfig, load_embedder,
                              save_embedder)
from asrkit.errors import AsrkitError, ConfigError, ManifestError
from asrkit.search.index import (SearchIndex, add_to_index, build_index, rebuild_index,
                          remove_from_index)
from asrkit.manifest import Utterance, write_manifest
from asrkit.search.segments import SegmentConfig
from asrkit.search.store import IndexStore
from asrkit.search.vector_index import FAISS_FILE

from _speech import VOICES, WORDS, make_archive

FILES = [list(WORDS[i:i + 3]) for i in range(0, 9, 2)]  # 5 recordings, 3 words each
SEGMENTS = SegmentConfig(durations=(0.3, 0.6, 0.9), hop=0.1)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    make_archive(folder, FILES, VOICES[0])
    return folder


@pytest.fixture(scope="module")
def embedder_file(tmp_path_factory):
    """A small untrained embedder: index mechanics do not depend on its quality."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("embedder") / "tiny.pt"
    save_embedder(path, Embedder(EmbedderConfig(autoencoder=AutoencoderConfig(
        hidden=32, layers=1, dim=24, decoder_hidden=32))))
    return path


@pytest.fixture(scope="module")
def built(archive, embedder_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "idx"
    build_index(archive, out, embedder_file, SEGMENTS)
    return out


def rows(index_dir):
    with sqlite3.connect(index_dir / IndexStore.FILE) as db:
        return db.execute("SELECT g.id, s.name, g.start_s, g.end_s, g.vector FROM segments g "
                          "JOIN sources s ON s.id = g.source_id ORDER BY g.id").fetchall()


def probe_vectors(index_dir, n=40):
    vectors = np.stack([np.frombuffer(r[4], "<f4") for r in rows(index_dir)])
    return vectors[np.linspace(0, len(vectors) - 1, n).astype(int)]


def top_ids(index_dir, queries, k=10):
    with SearchIndex(index_dir) as idx:
        return idx.nearest(queries, k)


def test_build_indexes_every_window_with_stable_ids(built):
    with SearchIndex(built) as idx:
        sources = idx.sources()
        assert [s.status for s in sources] == ["indexed"] * len(FILES)
        with sqlite3.connect(built / IndexStore.FILE) as db:
            ids = [r[0] for r in db.execute("SELECT id FROM segments ORDER BY id")]
        assert len(idx) == len(ids) == sum(s.segments for s in sources)
        assert sorted(faiss.vector_to_array(idx.vectors.index.id_map)) == ids
        assert idx.vectors.factory == "Flat"


def test_exact_search_agrees_with_numpy(built):
    table = rows(built)
    vectors = np.stack([np.frombuffer(r[4], "<f4") for r in table])
    ids = np.array([r[0] for r in table])
    queries = probe_vectors(built)
    scores, found = top_ids(built, queries, 5)
    expected = np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :5]
    assert np.allclose(scores, expected, atol=1e-5)
    assert (found[:, 0] == ids[np.argmax(queries @ vectors.T, axis=1)]).all()


@pytest.fixture(scope="module")
def real_built(archive, tmp_path_factory):
    """The archive indexed with the packaged (trained) embedder: real embeddings."""
    out = tmp_path_factory.mktemp("real") / "idx"
    build_index(archive, out, None, SEGMENTS)
    return out


@pytest.mark.parametrize("factory", ["HNSW16", "IVF8,Flat"])
def test_approximate_search_recalls_exact_results(real_built, tmp_path, factory):
    exact_dir = real_built
    ann_dir = tmp_path / "ann"
    shutil.copytree(real_built, ann_dir)
    params = "nprobe=4" if factory.startswith("IVF") else "efSearch=64"
    assert rebuild_index(ann_dir, factory, params) == factory
    queries = probe_vectors(real_built, 60)
    _, exact = top_ids(exact_dir, queries)
    _, approx = top_ids(ann_dir, queries)
    recall = np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)])
    assert recall >= 0.95


def test_add_and_remove_update_search(built, archive, tmp_path):
    work = tmp_path / "idx"
    shutil.copytree(built, work)
    before = {r[0]: r[1:] for r in rows(work)}
    removed = remove_from_index(work, ["rec01.wav"])
    assert removed == ["rec01.wav"]
    after = {r[0]: r[1:] for r in rows(work)}
    assert all(v[0] != "rec01.wav" for v in after.values())
    assert all(before[i] == v for i, v in after.items())  # others keep their ids
    _, found = top_ids(work, probe_vectors(built, 60), 20)
    assert set(found.ravel()) <= set(after) | {-1}

    extra = tmp_path / "extra"
    make_archive(extra, [["garden", "window"]], VOICES[1], seed=3)
    summary = add_to_index(work, [Utterance("new", str(extra / "rec00.wav"))])
    assert summary.indexed == 1 and summary.segments > 0
    with SearchIndex(work) as idx:
        assert len(idx) == len(after) + summary.segments
        ids = faiss.vector_to_array(idx.vectors.index.id_map)
        assert min(ids[np.isin(ids, list(after), invert=True)]) > max(before)  # never reused


def test_remove_unknown_source_is_refused(built, tmp_path):
    work = tmp_path / "idx"
    shutil.copytree(built, work)
    with pytest.raises(ConfigError):
        remove_from_index(work, ["no-such.wav"])
    assert len(rows(work)) == len(rows(built))


def test_hnsw_index_survives_removal(built, tmp_path):
    work = tmp_path / "idx"
    shutil.copytree(built, work)
    rebuild_index(work, "HNSW16")
    remove_from_index(work, ["rec00.wav"])  # HNSW cannot delete: rebuilt from SQLite
    with SearchIndex(work) as idx:
        assert len(idx) == len(rows(work))


def test_bad_file_is_skipped_with_a_reason(archive, embedder_file, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(archive, folder)
    (folder / "broken.wav").write_text("this is not audio")
    (folder / "notes.txt").write_text("not even named like audio")
    summary = build_index(folder, tmp_path / "idx", embedder_file, SEGMENTS)
    assert summary.indexed == len(FILES)
    assert [name for name, _ in summary.skipped] == ["broken.wav"]
    assert "not a readable audio file" in summary.skipped[0][1]
    with SearchIndex(tmp_path / "idx") as idx:
        status = {s.name: (s.status, s.reason) for s in idx.sources()}
    assert status["broken.wav"][0] == "skipped" and "notes.txt" not in status


def test_resume_after_interruption_equals_fresh_build(built, archive, embedder_file, tmp_path):
    out = tmp_path / "idx"

    def stop_after_two(progress):
        if progress.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(archive, out, embedder_file, SEGMENTS, progress=stop_after_two)
    assert len({r[1] for r in rows(out)}) == 2  # two recordings committed
    summary = build_index(archive, out, embedder_file, SEGMENTS)
    assert summary.already == 2 and summary.indexed == len(FILES) - 2
    assert rows(out) == rows(built)
    queries = probe_vectors(built)
    for a, b in zip(top_ids(out, queries), top_ids(built, queries)):
        assert np.array_equal(a, b)


def test_resume_with_another_embedder_is_refused(built, archive, tmp_path):
    out = tmp_path / "idx"
    shutil.copytree(built, out)
    torch.manual_seed(5)
    other = Embedder(EmbedderConfig(autoencoder=AutoencoderConfig(
        hidden=32, layers=1, dim=24, decoder_hidden=32)))
    with pytest.raises(ConfigError):
        build_index(archive, out, other, SEGMENTS)


def test_killed_build_leaves_a_consistent_index(archive, embedder_file, tmp_path, built):
    """SIGKILL a build process mid-way: the database passes its integrity check, and
    resuming gives the same index as an uninterrupted build."""
    out = tmp_path / "idx"
    # The child reports each finished recording, then blocks until told to go on; it
    # is killed there instead, so exactly one recording is committed. It uses this
    # process's torch threads: another count may change the vectors' last bits.
    code = ("import sys, torch; from asrkit.search.index import build_index; "
            "from asrkit.search.segments import SegmentConfig; "
            "torch.set_num_threads(int(sys.argv[4])); "
            "build_index(sys.argv[1], sys.argv[2], sys.argv[3], "
            "SegmentConfig(durations=(0.3, 0.6, 0.9), hop=0.1), "
            "progress=lambda p: (print(p.done, flush=True), sys.stdin.readline()))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(archive), str(out),
                             str(embedder_file), str(torch.get_num_threads())],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "1"  # one recording committed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    with sqlite3.connect(out / IndexStore.FILE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len({r[1] for r in rows(out)}) == 1 < len(FILES)
    build_index(archive, out, embedder_file, SEGMENTS)
    assert rows(out) == rows(built)


def test_damaged_faiss_file_is_rebuilt_from_the_database(built, tmp_path):
    work = tmp_path / "idx"
    shutil.copytree(built, work)
    data = (work / FAISS_FILE).read_bytes()
    (work / FAISS_FILE).write_bytes(data[:len(data) // 3])
    queries = probe_vectors(built)
    for a, b in zip(top_ids(work, queries), top_ids(built, queries)):
        assert np.array_equal(a, b)


def test_failed_faiss_write_keeps_the_previous_file(built, tmp_path, monkeypatch):
    work = tmp_path / "idx"
    shutil.copytree(built, work)
    before = (work / FAISS_FILE).read_bytes()

    real_write = faiss.write_index

    def failing_write(index, writer):  # some bytes reach the temporary file, then a failure
        real_write(faiss.IndexFlatL2(4), writer)
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", failing_write)
    with pytest.raises(AsrkitError, match="disk full"):
        remove_from_index(work, ["rec02.wav"])
    assert (work / FAISS_FILE).read_bytes() == before
    assert sorted(p.name for p in work.iterdir() if p.name.endswith(".tmp")) == []
    monkeypatch.undo()
    with SearchIndex(work) as idx:  # the database changed; the FAISS file catches up
        assert len(idx) == len(rows(work))


def test_metadata_is_plain_sqlite_json_and_floats(built):
    assert {p.name for p in built.iterdir()} >= {"index.sqlite", FAISS_FILE, "embedder.pt"}
    with sqlite3.connect(built / IndexStore.FILE) as db:
        settings = dict(db.execute("SELECT key, value FROM settings"))
        dim = json.loads(settings["dim"])
        for value in settings.values():
            json.loads(value)
        for (blob,) in db.execute("SELECT vector FROM segments"):
            assert isinstance(blob, bytes) and len(blob) == 4 * dim
            assert abs(np.linalg.norm(np.frombuffer(blob, "<f4")) - 1) < 1e-4
        tables = [t for t, in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:  # the vectors are the only binary data
            for row in db.execute(f"SELECT * FROM {table}" if table != "segments" else
                                  "SELECT id, source_id, start_s, end_s FROM segments"):
                assert not any(isinstance(v, bytes) for v in row)
    torch.load(built / "embedder.pt", weights_only=True)


def test_manifest_archive_with_offsets(archive, embedder_file, tmp_path):
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [Utterance("a", str(archive / "rec00.wav"), offset=1.0,
                                        duration=1.5)])
    build_index(manifest, tmp_path / "idx", embedder_file, SEGMENTS)
    spans = [(r[2], r[3]) for r in rows(tmp_path / "idx")]
    assert spans and min(s for s, _ in spans) >= 1.0 and max(e for _, e in spans) <= 2.5 + 1e-6


def test_unknown_index_type_fails_before_any_work(archive, embedder_file, tmp_path):
    with pytest.raises(ConfigError):
        build_index(archive, tmp_path / "idx", embedder_file, SEGMENTS, factory="Nonsense42")
    assert not (tmp_path / "idx").exists()


def test_missing_archive_is_a_manifest_error(embedder_file, tmp_path):
    with pytest.raises(ManifestError):
        build_index(tmp_path / "nowhere", tmp_path / "idx", embedder_file)
