"""Cutting long recordings at pauses (asrkit.asr.cutting, transcribe(cut="vad"))."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import asrkit.asr.transcription as T
from asrkit.asr.cutting import pause_cuts
from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.decoding.base import GreedyDecoder
from asrkit.errors import ConfigError
from asrkit.manifest import Utterance
from asrkit.text import Vocabulary
from tones import RATE, random_text, utterance_wave


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AsrModel(Vocabulary(tuple(" ABCD")), ModelConfig(layers=1, hidden=16)).eval()


def _random_speech(rng, total):
    edges = np.sort(rng.choice(total, size=2 * rng.integers(0, 12), replace=False))
    return [(int(a), int(b)) for a, b in edges.reshape(-1, 2)]


def test_pieces_tile_the_recording_and_respect_the_longest():
    rng = np.random.default_rng(0)
    for _ in range(300):
        total = int(rng.integers(1, 200_000))
        longest = int(rng.integers(1_000, 60_000))
        grid = int(rng.choice([1, 160, 320]))
        pieces = pause_cuts(_random_speech(rng, total), total, longest, grid)
        assert pieces[0][0] == 0 and pieces[-1][1] == total
        assert all(a < b for a, b in pieces)  # no piece empty, none backwards
        assert all(b == c for (_, b), (c, _) in zip(pieces, pieces[1:]))  # no gap, no overlap
        assert all(b - a <= max(grid, longest) for a, b in pieces)
        assert all(b % grid == 0 for _, b in pieces[:-1])


def test_every_pause_is_cut_and_only_overlong_speech_elsewhere():
    # Speech for 2 s then a 0.5 s pause, ten times, and one stretch of 7 s; at most 5 s.
    speech = [(i * 40_000, i * 40_000 + 32_000) for i in range(10)] + [(400_000, 512_000)]
    pieces = pause_cuts(speech, 520_000, 80_000, 160)
    inside = [cut for _, cut in pieces[:-1] if any(a < cut < b for a, b in speech)]
    assert inside == [476_000]  # the 7 s stretch, cut 5 s after the pause before it
    for (_, b), (a, _) in zip(speech, speech[1:]):
        assert sum(b <= cut <= a for _, cut in pieces[:-1]) == 1


def test_unknown_cut_is_refused(model):
    with pytest.raises(ConfigError, match="cut 'x' is not one of"):
        list(T.compute_log_probs(model, [], cut="x"))


@pytest.mark.parametrize("detector", ["energy"])
def test_a_recording_cut_at_pauses_reads_as_its_pieces_alone(model, tmp_path, monkeypatch,
                                                             detector):
    rng = np.random.default_rng(3)
    parts = []
    for _ in range(14):  # tone "sentences" with pauses of 0.3 to 0.8 s between them
        parts += [utterance_wave(random_text(rng, 3), rng),
                  np.zeros(int(rng.uniform(0.3, 0.8) * RATE), np.float32)]
    wave = np.concatenate(parts)
    sf.write(tmp_path / "long.wav", wave, RATE, subtype="FLOAT")
    utt = Utterance("long", str(tmp_path / "long.wav"))
    monkeypatch.setattr(T, "CHUNK_SECONDS", 3.0)
    pieces = T.vad_pieces(model, utt, detector)
    assert len(pieces) >= len(wave) / RATE / 3.0
    assert all(p.duration <= 3.0 for p in pieces)
    assert sum(round(p.duration * RATE) for p in pieces) == len(wave)
    [(_, whole)] = list(T.compute_log_probs(model, [utt], cut="vad", detector=detector))
    alone = [lp for _, lp in T.compute_log_probs(model, pieces)]
    # Each piece holds its exact number of frames (times stay true), its own output first.
    frames = [round(p.duration / model.frame_seconds) for p in pieces[:-1]] + [len(alone[-1])]
    assert whole.shape[0] == sum(frames)
    start = 0
    for lp, n in zip(alone, frames):
        kept = min(n, len(lp))
        torch.testing.assert_close(whole[start:start + kept], lp[:kept])
        start += n
    decoder = GreedyDecoder(model.vocab, model.frame_seconds)
    # Decoded piece by piece: a cut is a word boundary, and word times move with the piece.
    [tr] = list(T.transcribe(model, [utt], decoder, cut="vad", detector=detector))
    alone = list(T.transcribe(model, pieces, decoder))
    assert tr.text.split() == " ".join(t.text for t in alone).split()
    assert [w.word for w in tr.hypothesis.words] == [w.word for t in alone
                                                     for w in t.hypothesis.words]
    assert [w.start for w in tr.hypothesis.words] == pytest.approx(
        [s + p.offset for p, t in zip(pieces, alone) for s in
         [w.start for w in t.hypothesis.words]], abs=1e-6)
