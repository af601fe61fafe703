"""Transcription: inputs collected from files/folders/manifests; long files in chunks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import asrkit.asr.transcription as T
from asrkit.errors import AudioError
from asrkit.manifest import Utterance
from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.text import Vocabulary
from tones import make_tone_corpus


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AsrModel(Vocabulary(tuple(" ABCD")), ModelConfig(layers=1, hidden=16)).eval()


def test_collect_inputs_files_folders_manifests(tmp_path):
    manifest = make_tone_corpus(tmp_path / "c", 3)
    utts = T.collect_inputs([tmp_path / "c", manifest, tmp_path / "c" / "utt0001.wav"])
    assert [u.id for u in utts] == ["utt0000", "utt0001", "utt0002"] * 2 + ["utt0001"]
    with pytest.raises(AudioError, match="no such file or folder"):
        T.collect_inputs([tmp_path / "nope.wav"])


def test_long_recordings_are_chunked_and_stitched(model, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16_000 * 9)).astype(np.float32)
    sf.write(tmp_path / "long.wav", wave, 16_000, subtype="FLOAT")
    utt = Utterance("long", str(tmp_path / "long.wav"))
    [(_, whole)] = list(T.compute_log_probs(model, [utt]))
    monkeypatch.setattr(T, "CHUNK_SECONDS", 2.0)
    monkeypatch.setattr(T, "CONTEXT_SECONDS", 1.0)
    [(_, chunked)] = list(T.compute_log_probs(model, [utt]))
    # Same frames, and with a second of context either side the BiLSTM barely notices.
    assert abs(chunked.shape[0] - whole.shape[0]) <= 1
    n = min(len(chunked), len(whole))
    assert (chunked[:n].exp() - whole[:n].exp()).abs().max() < 0.02


def test_a_long_segment_is_normalised_by_its_own_peak(model, tmp_path, monkeypatch):
    """A manifest segment long enough to be chunked is scaled by the peak of its own
    samples, as a short one is: a loud part of the file outside it changes nothing."""
    rng = np.random.default_rng(1)
    segment = (0.05 * rng.standard_normal(16_000 * 6)).astype(np.float32)
    loud = (0.9 * rng.standard_normal(16_000)).clip(-1, 1).astype(np.float32)
    sf.write(tmp_path / "alone.wav", segment, 16_000, subtype="FLOAT")
    sf.write(tmp_path / "with_loud.wav", np.concatenate([loud, segment, loud]), 16_000,
             subtype="FLOAT")
    alone = Utterance("alone", str(tmp_path / "alone.wav"))
    inside = Utterance("inside", str(tmp_path / "with_loud.wav"), offset=1.0, duration=6.0)
    [(_, short)] = list(T.compute_log_probs(model, [inside]))  # one piece
    monkeypatch.setattr(T, "CHUNK_SECONDS", 2.0)
    monkeypatch.setattr(T, "CONTEXT_SECONDS", 1.0)
    [(_, expected)] = list(T.compute_log_probs(model, [alone]))
    [(_, chunked)] = list(T.compute_log_probs(model, [inside]))
    torch.testing.assert_close(chunked, expected, atol=1e-5, rtol=1e-4)
    n = min(len(chunked), len(short))  # chunking itself changes the output only a little
    assert (chunked[:n].exp() - short[:n].exp()).abs().max() < 0.02


def test_batched_transcription_equals_one_by_one(model, tmp_path):
    manifest = make_tone_corpus(tmp_path / "c", 6)
    utts = T.collect_inputs([manifest])
    batched = dict((u.id, lp) for u, lp in T.compute_log_probs(model, utts, batch_seconds=60))
    for u in utts:
        [(_, single)] = list(T.compute_log_probs(model, [u]))
        torch.testing.assert_close(batched[u.id], single, atol=1e-5, rtol=1e-4)


def test_manifest_paths_relative_to_the_working_folder_survive_a_round_trip(tmp_path, monkeypatch):
    from asrkit.manifest import read_manifest, write_manifest
    make_tone_corpus(tmp_path / "audio", 1)
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path / "lists" / "m.jsonl", [Utterance("a", "audio/utt0000.wav", "A")])
    [utt] = read_manifest(tmp_path / "lists" / "m.jsonl")
    assert utt.audio == str(tmp_path / "audio" / "utt0000.wav")
