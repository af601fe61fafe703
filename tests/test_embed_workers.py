"""Index builds in worker processes answer exactly like builds in one process."""

import sqlite3
from concurrent.futures import Future

import numpy as np
import pytest
import torch

from asrkit.audio import SAMPLE_RATE, load_audio, write_audio
from asrkit.manifest import Utterance
from asrkit.search import embed_workers
from asrkit.search.embed_workers import embed_recording, embed_recordings
from asrkit.search.embedding import AutoencoderConfig, Embedder, EmbedderConfig, save_embedder
from asrkit.search.index import SearchIndex, build_index
from asrkit.search.segments import SegmentConfig
from asrkit.search.store import IndexStore

from _speech import VOICES, WORDS, make_archive

SEGMENTS = SegmentConfig(durations=(0.3, 0.6, 0.9), hop=0.1)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    make_archive(folder, [list(WORDS[i:i + 3]) for i in range(0, 7, 3)], VOICES[1])
    (folder / "empty.wav").write_bytes(b"")  # unreadable: skipped with a reason
    return folder


@pytest.fixture(scope="module")
def embedder_file(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("embedder") / "tiny.pt"
    save_embedder(path, Embedder(EmbedderConfig(autoencoder=AutoencoderConfig(
        hidden=24, layers=2, dim=16, decoder_hidden=24))))
    return path


def _rows(index_dir):
    with sqlite3.connect(index_dir / IndexStore.FILE) as db:
        segs = db.execute("SELECT s.name, g.start_s, g.end_s, g.vector FROM segments g "
                          "JOIN sources s ON s.id = g.source_id ORDER BY g.id").fetchall()
        skipped = db.execute("SELECT name, status FROM sources ORDER BY name").fetchall()
    return segs, skipped


def test_workers_build_the_same_index(archive, embedder_file, tmp_path, monkeypatch):
    monkeypatch.setattr(embed_workers, "WORKER_MIN_SECONDS", 0.0)  # tiny archive: use them
    build_index(archive, tmp_path / "one", embedder_file, SEGMENTS, workers=1)
    summary = build_index(archive, tmp_path / "two", embedder_file, SEGMENTS, workers=2)
    (one, one_sources), (two, two_sources) = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r[:3] for r in one] == [r[:3] for r in two] and len(one) > 50
    assert one_sources == two_sources
    assert [name for name, _ in summary.skipped] == ["empty.wav"]
    for a, b in zip(one, two):
        np.testing.assert_allclose(np.frombuffer(a[3], np.float32),
                                   np.frombuffer(b[3], np.float32), atol=1e-5)
    with SearchIndex(tmp_path / "one") as i1, SearchIndex(tmp_path / "two") as i2:
        q = np.frombuffer(one[7][3], np.float32)[None]
        assert (i1.nearest(q, 5)[1] == i2.nearest(q, 5)[1]).all()


def test_chunks_cover_a_long_recording_like_one_pass(archive, embedder_file, tmp_path,
                                                     monkeypatch):
    """A recording cut into chunks yields the windows of one pass over it, each once."""
    from asrkit.search.embedding import load_embedder
    embedder = load_embedder(embedder_file)
    wave = np.concatenate([load_audio(p) for p in sorted(archive.glob("rec*.wav"))])
    write_audio(tmp_path / "long.wav", wave, SAMPLE_RATE)
    utt = Utterance("long", str(tmp_path / "long.wav"))
    whole_spans, whole, _ = embed_recording(embedder, utt, SEGMENTS)
    monkeypatch.setattr(embed_workers, "CHUNK_SECONDS", 2.5)
    chunks, seconds = embed_workers.recording_chunks(utt, SEGMENTS)
    assert len(chunks) > 2 and seconds == pytest.approx(len(wave) / SAMPLE_RATE, abs=1e-3)
    spans, vectors, _ = embed_recording(embedder, utt, SEGMENTS)
    assert len(set(spans)) == len(spans)
    # each chunk's energy detector sets its own threshold, so edges may move a little;
    # but nothing is lost or doubled where chunks meet
    assert len(set(whole_spans) & set(spans)) >= 0.8 * len(whole_spans)
    assert abs(len(spans) - len(whole_spans)) <= 0.2 * len(whole_spans)
    monkeypatch.setattr(embed_workers, "WORKER_MIN_SECONDS", 0.0)
    [(_, got)] = list(embed_recordings(embedder, [utt], SEGMENTS, 2, embedder_file))
    assert got.spans == spans
    np.testing.assert_allclose(got.vectors, vectors, atol=1e-5)


def test_the_calling_process_embeds_chunks_no_worker_has_started(archive, embedder_file,
                                                                 monkeypatch):
    """With two workers one process is started; this one takes queued chunks while it
    starts (the pool hands out only two at first), and the results stay in order."""
    from asrkit.search.embedding import load_embedder
    embedder = load_embedder(embedder_file)
    here = []
    embed = embed_workers._Scheduler._embed
    monkeypatch.setattr(embed_workers._Scheduler, "_embed",
                        lambda self, job: here.append(job.chunk) or embed(self, job))
    monkeypatch.setattr(embed_workers, "WORKER_MIN_SECONDS", 0.0)
    monkeypatch.setattr(embed_workers, "CHUNK_SECONDS", 1.0)  # several chunks a recording
    utts = [Utterance(p.stem, str(p)) for p in sorted(archive.glob("rec*.wav"))]
    got = list(embed_recordings(embedder, utts, SEGMENTS, 2, embedder_file))
    assert here, "the calling process waited instead of embedding"
    assert [u for u, _ in got] == utts
    for utt, embedded in got:
        spans, vectors, seconds = embed_recording(embedder, utt, SEGMENTS)
        assert embedded.spans == spans and embedded.seconds == pytest.approx(seconds)
        np.testing.assert_allclose(embedded.vectors, vectors, atol=1e-5)


class _HeldPool:
    """A stand-in pool whose chunks finish when the test says so."""

    def __init__(self):
        self.futures = []

    def submit(self, _fn, chunk, _config):
        future = Future()
        self.futures.append(future)
        return future


def test_a_worker_gets_its_next_chunk_while_this_process_is_busy(monkeypatch):
    """A chunk the pool finishes frees its slot at once, not when this process is done
    with the chunk it is embedding; results still come back per job, in order."""
    pool = _HeldPool()
    scheduler = embed_workers._Scheduler(pool, None, SEGMENTS, slots=1)
    jobs = [embed_workers._Job(embed_workers.Chunk("a.wav", i, i + 1.0, float("inf")))
            for i in range(4)]
    handed_during = []

    def busy_here(self, job):  # the worker finishes its chunk meanwhile
        before = len(pool.futures)
        pool.futures[-1].set_result(f"pool {before - 1}")
        handed_during.append(len(pool.futures) - before)
        job.result, job.done = f"here {job.chunk.start:g}", True

    monkeypatch.setattr(embed_workers._Scheduler, "_embed", busy_here)
    scheduler.add(jobs)
    assert len(pool.futures) == 1  # one slot
    for job in jobs:
        scheduler.finish(job)
    assert [job.result for job in jobs] == ["pool 0", "here 1", "pool 1", "here 3"]
    assert handed_during == [1, 0]  # chunk 2 went to the pool while chunk 1 was embedded here
    scheduler.close()
    scheduler.add([embed_workers._Job(embed_workers.Chunk("b.wav", 0, 1.0, float("inf")))])
    assert len(pool.futures) == 2  # closed: nothing more for the pool
