"""Files written before the package move still load and give the same answers.

tests/fixtures/premove/ holds a model file, its fp16 shipped form, a training
checkpoint, an embedder and an index folder, all written by asrkit at revision
``b61f615~1`` (flat modules), with what that code answered for them; make.py there
remakes them. A difference here means users' existing files changed meaning.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from asrkit.manifest import Utterance

FIXTURES = Path(__file__).parent / "fixtures" / "premove"
MODELS = ("model", "model_fp16", "checkpoint")
# The same float32 arithmetic on the same weights; the margin allows for a torch or
# BLAS upgrade reordering sums, nothing more.
ATOL = 1e-4


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURES / "expected.npz") as arrays:
        return json.loads((FIXTURES / "expected.json").read_text()), dict(arrays)


@pytest.fixture(scope="module")
def recordings():
    folder = FIXTURES / "archive"
    return [Utterance(p.relative_to(folder).as_posix(), str(p))
            for p in sorted((folder / "audio").glob("*.wav"))]


@pytest.fixture
def index_copy(tmp_path):
    """The fixture index, copied: opening an index may refresh its files, and the
    committed ones must stay as the old code wrote them."""
    return shutil.copytree(FIXTURES / "index", tmp_path / "index")


@pytest.mark.parametrize("name", MODELS)
def test_old_model_files_give_the_same_log_probs_and_transcripts(name, expected, recordings,
                                                                  one_thread):
    import asrkit
    from asrkit.asr.transcription import compute_log_probs
    answers, arrays = expected
    model = asrkit.load_model(FIXTURES / f"{name}.pt")
    got = dict(compute_log_probs(model, recordings))
    assert {u.id for u in got} == {u.id for u in recordings}
    for utt, log_probs in got.items():
        want = arrays[f"{name}/log_probs/{utt.id}"]
        assert log_probs.shape == want.shape, utt.id
        np.testing.assert_allclose(log_probs.numpy(), want, atol=ATOL, err_msg=utt.id)
    texts = {t.utt.id: t.text for t in asrkit.transcribe(model, recordings)}
    assert texts == answers[f"{name}/transcripts"]


def test_old_checkpoint_resumes_training(tmp_path, one_thread):
    """A run interrupted before the move continues after it, from where it stopped."""
    import asrkit
    from asrkit.asr.checkpoint import load_record
    from asrkit.asr.config import config_from_dict
    from asrkit.manifest import read_manifest
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(FIXTURES / "checkpoint.pt", run / "last.pt")
    stored = load_record(run / "last.pt")["training"]
    config = config_from_dict(stored["config"], source="checkpoint.pt")
    longer = config.train.__class__(**{**vars(config.train), "epochs": config.train.epochs + 1,
                                       "max_steps": 0})
    utts = read_manifest(FIXTURES / "archive" / "recordings.jsonl")
    result = asrkit.train(utts, utts, run, config.__class__(
        config.model, config.features, config.augment, longer), resume=True)
    assert result.epochs_run == config.train.epochs + 1
    assert result.steps > stored["state"]["step"]
    assert load_record(run / "last.pt")["info"]["trained_steps"] == result.steps


def test_old_embedder_gives_the_same_fingerprint_and_vectors(expected, recordings, index_copy,
                                                             one_thread):
    from asrkit.audio import load_audio
    from asrkit.search.embedding import load_embedder
    from asrkit.search.embed_workers import embed_recording
    from asrkit.search.index import SearchIndex
    answers, arrays = expected
    with SearchIndex(index_copy) as idx:  # the segment settings the index was built with
        segment_config = idx.segment_config
    embedder = load_embedder(FIXTURES / "embedder.pt")
    assert embedder.fingerprint() == answers["embedder/fingerprint"]
    query = embedder.embed_waves([load_audio(FIXTURES / "query.wav")])
    np.testing.assert_allclose(query, arrays["embedder/query"], atol=ATOL)
    for utt in recordings:
        spans, vectors, _ = embed_recording(embedder, utt, segment_config)
        assert [[s.start, s.end] for s in spans] == answers[f"embedder/spans/{utt.id}"]
        np.testing.assert_allclose(vectors, arrays[f"embedder/recording/{utt.id}"], atol=ATOL,
                                   err_msg=utt.id)


def test_old_index_opens_with_the_same_content(expected, index_copy):
    from asrkit.search.index import SearchIndex
    answers, _ = expected
    with SearchIndex(index_copy) as idx:
        assert len(idx) == answers["index/segments"]
        assert [[s.name, s.status, s.segments, s.duration] for s in idx.sources()] \
            == answers["index/sources"]
        assert idx.embedder.fingerprint() == answers["embedder/fingerprint"]


def test_old_index_answers_a_query_the_same(expected, index_copy, one_thread):
    import asrkit
    answers, _ = expected
    hits = asrkit.search_index(index_copy, [FIXTURES / "query.wav"], top=5)[0]
    want = answers["search/hits"]
    assert [(h.source, h.segment, h.start, h.end) for h in hits] \
        == [(w["source"], w["segment"], w["start"], w["end"]) for w in want]
    np.testing.assert_allclose([h.score for h in hits], [w["score"] for w in want], atol=ATOL)
