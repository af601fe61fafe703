"""Word times: how symbol frames become word boundaries (WordTimes), and how far the
decoders' and forced alignment's words are from words placed at known times."""

from __future__ import annotations

import numpy as np
import pytest

from asrkit.asr.alignment import align_log_probs, text_labels
from asrkit.asr.transcription import compute_log_probs
from asrkit.decoding import make_decoder
from asrkit.decoding.base import RAW_WORD_TIMES, WORD_TIMES, WordTimes, word_bounds
from asrkit.manifest import Utterance
from asrkit.metrics import TimedWord, summarize_time_errors, word_time_errors
from asrkit.text import Vocabulary
from test_align import peaky_log_probs, tone_model, tone_recording  # noqa: F401 (fixture)

FRAME = 0.02
VOCAB = Vocabulary(tuple(" ABCD"))


def test_raw_times_are_the_symbol_frames():
    spans = [(3, 5), (9, 9), (14, 20)]
    assert word_bounds(spans, FRAME, RAW_WORD_TIMES) == [(0.06, 0.12), (0.18, 0.2), (0.28, 0.42)]


@pytest.mark.parametrize("start_shift,end_shift", [(-0.01, 0.08), (0.015, 0.2), (-0.5, -0.5)])
def test_shifted_times_never_cross_neighbours_or_the_audio(start_shift, end_shift):
    rng = np.random.default_rng(0)
    times = WordTimes(start_shift, end_shift)
    for _ in range(50):
        firsts = np.sort(rng.choice(200, 8, replace=False))
        spans = [(int(a), int(min(a + rng.integers(0, 6), b - 1)))
                 for a, b in zip(firsts, [*firsts[1:], 201])]
        duration = (spans[-1][1] + 1 + int(rng.integers(0, 4))) * FRAME
        bounds = word_bounds(spans, FRAME, times, duration)
        for (a, b), (start, end) in zip(spans, bounds):
            assert 0 <= start <= end <= duration + 1e-9
            assert start <= (a + 1) * FRAME + 1e-9  # never after its first symbol
        for (_, end), (next_start, _) in zip(bounds, bounds[1:]):
            assert end <= next_start + 1e-9
        for (_, b), (start, _) in zip(spans, bounds[1:]):
            assert start >= (b + 1) * FRAME - 1e-9  # not into the previous word's symbols
        raw = word_bounds(spans, FRAME, RAW_WORD_TIMES)
        for (start, end), (raw_start, raw_end) in zip(bounds, raw):
            if start_shift < 0:
                assert start <= raw_start
            if end_shift > 0:
                assert end >= raw_end - 1e-9


def test_decoders_and_alignment_agree_on_a_confident_path():
    """Greedy decoding and forced alignment of its text give the same words at the same
    times: both turn the same symbol frames into boundaries the same way."""
    labels = text_labels(VOCAB, "AB CAD B DDA")
    for seed in range(5):
        lp = peaky_log_probs(labels, seed=seed, hold=(1, 2))
        greedy = make_decoder("greedy", VOCAB, FRAME).decode(lp.unsqueeze(0))[0]
        words, _, _ = align_log_probs(lp, labels, VOCAB, FRAME)
        assert greedy.text == "AB CAD B DDA"
        assert [(w.start, w.end) for w in greedy.words] == [(w.start, w.end) for w in words]


def test_aligned_words_at_known_times_are_found_close_to_them(tone_model, tmp_path):  # noqa: F811
    """On generated recordings with known word spans, forced alignment's word
    boundaries are within a few model frames of the truth (median and 95th percentile).
    (This small model hears the letters but not the pauses between words, so its
    decoders' words run together; the test above ties their times to alignment's.)"""
    _, model = tone_model
    texts = [["AB", "C", "DAB", "BC", "A", "CDA"], ["DD", "ABC", "B", "CA", "DB"],
             ["BAD", "CC", "A", "DCB", "AD"]]
    truth, utts = {}, []
    for n, words in enumerate(texts):
        path = tmp_path / f"r{n}.wav"
        spans = tone_recording(path, words, seed=n, pause=0.2)
        truth[f"r{n}"] = [TimedWord(w, a, b) for w, (a, b) in zip(words, spans)]
        utts.append(Utterance(f"r{n}", str(path), " ".join(words)))
    errors = []
    for utt, lp in compute_log_probs(model, utts):
        words, _, _ = align_log_probs(lp, text_labels(model.vocab, utt.text), model.vocab,
                                      model.frame_seconds)
        errors += word_time_errors(truth[utt.id], [TimedWord(w.word, w.start, w.end)
                                                   for w in words])
    s = summarize_time_errors(errors)
    assert s.words == sum(len(t) for t in truth.values())
    assert s.start_median <= 40 and s.end_median <= 40, s
    assert s.start_p95 <= 100 and s.end_p95 <= 100, s
