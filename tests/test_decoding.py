"""Greedy CTC decoding: collapse rules, word timings, input checks, the factory."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asrkit.decoding import make_decoder
from asrkit.decoding.base import (RAW_WORD_TIMES, WORD_TIMES, GreedyDecoder, WordTiming,
                                 check_log_probs, collapse, word_bounds)
from asrkit.errors import DecodingError
from asrkit.text import BLANK, Vocabulary

VOCAB = Vocabulary((" ", "A", "B", "C"))  # ids: blank 0, space 1, A 2, B 3, C 4
FRAME = 0.04  # seconds per output frame


def path_log_probs(path: list[int], peak: float = 0.9, vocab_size: int = len(VOCAB),
                   peaks: list[float] | None = None) -> torch.Tensor:
    """``(frames, vocab)`` log-probs whose best symbol at frame t is ``path[t]`` with
    probability ``peaks[t]`` (or ``peak``); the rest is spread evenly."""
    probs = []
    for t, symbol in enumerate(path):
        p = peaks[t] if peaks else peak
        row = [(1 - p) / (vocab_size - 1)] * vocab_size
        row[symbol] = p
        probs.append(row)
    return torch.tensor(probs).log()


def test_collapse_rules():
    assert collapse([]) == ([], [])
    assert collapse([0, 0, 0]) == ([], [])
    assert collapse([2, 2, 2]) == ([2], [0])  # repeats merge
    assert collapse([2, 0, 2]) == ([2, 2], [0, 2])  # a blank separates a real repeat
    assert collapse([0, 2, 2, 3, 3, 0, 3, 1, 1, 4]) == ([2, 3, 3, 1, 4], [1, 3, 6, 7, 9])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=40))
def test_collapse_properties(path):
    tokens, frames = collapse(path)
    assert BLANK not in tokens
    assert [path[t] for t in frames] == tokens  # each token starts where it is emitted
    assert frames == sorted(set(frames))
    # Re-expanding the tokens with blanks between them and collapsing is the identity.
    expanded = [x for tok in tokens for x in (tok, BLANK)]
    assert collapse(expanded)[0] == tokens


def test_greedy_text_and_word_timings():
    #        frame: 0  1  2  3  4  5  6  7  8  9
    path = [2, 2, 0, 3, 0, 1, 0, 4, 4, 0]  # "AB C"
    peaks = [0.9, 0.8, 0.9, 0.6, 0.9, 0.7, 0.9, 0.5, 0.9, 0.9]
    lp = path_log_probs(path, peaks=peaks).unsqueeze(0)
    (hyp,) = GreedyDecoder(VOCAB, FRAME, RAW_WORD_TIMES).decode(lp)  # times of the frames
    assert hyp.text == "AB C"
    assert hyp.tokens == (2, 3, 1, 4) and hyp.frames == (0, 3, 5, 7)
    ab, c = hyp.words
    assert (ab.word, ab.start, ab.end) == ("AB", 0.0, pytest.approx(4 * FRAME))
    assert (c.word, c.start, c.end) == ("C", pytest.approx(7 * FRAME), pytest.approx(8 * FRAME))
    # Confidence: geometric mean of the probabilities at the words' token frames.
    assert ab.confidence == pytest.approx(math.sqrt(0.9 * 0.6), abs=1e-4)
    assert c.confidence == pytest.approx(0.5, abs=1e-4)
    assert hyp.score == pytest.approx(sum(math.log(p) for p in peaks), abs=1e-4)
    assert hyp.am_score == hyp.score and hyp.lm_score == 0.0
    # By default the frames are moved as WordTimes says, within the recording.
    (moved,) = GreedyDecoder(VOCAB, FRAME).decode(lp)
    assert [(w.start, w.end) for w in moved.words] == word_bounds([(0, 3), (7, 7)], FRAME,
                                                                  WORD_TIMES, 10 * FRAME)


def test_leading_trailing_and_double_spaces_make_no_empty_words():
    path = [1, 0, 2, 1, 1, 0, 1, 3, 1]  # " A  B "
    (hyp,) = GreedyDecoder(VOCAB, FRAME).decode(path_log_probs(path).unsqueeze(0))
    assert hyp.text == "A B"
    assert [w.word for w in hyp.words] == ["A", "B"]
    assert all(isinstance(w, WordTiming) and w.end > w.start for w in hyp.words)


def test_batch_respects_lengths():
    first = path_log_probs([2, 0, 3, 0, 4, 4])  # "ABC", fills the batch
    second = path_log_probs([3, 3, 0, 2, 4, 4])  # "BA" within length 4; "C" is padding
    batch = torch.stack([first, second])
    hyps = GreedyDecoder(VOCAB, FRAME).decode(batch, torch.tensor([6, 4]))
    assert [h.text for h in hyps] == ["ABC", "BA"]
    single = GreedyDecoder(VOCAB, FRAME).decode(second[:4].unsqueeze(0))[0]
    assert single == hyps[1]  # batched == one by one


def test_empty_and_all_blank():
    dec = GreedyDecoder(VOCAB, FRAME)
    blank = dec.decode(path_log_probs([0, 0, 0]).unsqueeze(0))[0]
    assert (blank.text, blank.tokens, blank.words) == ("", (), ())
    empty = dec.decode(path_log_probs([0, 2]).unsqueeze(0), torch.tensor([0]))[0]
    assert empty.text == "" and empty.score == 0.0


def test_two_dimensional_input_is_one_utterance():
    lp = path_log_probs([2, 0, 3])
    assert GreedyDecoder(VOCAB, FRAME).decode(lp)[0].text == "AB"


def test_nbest_has_one_entry_per_utterance():
    nbest = GreedyDecoder(VOCAB, FRAME).decode_nbest(path_log_probs([2, 3]).unsqueeze(0))
    assert len(nbest) == 1 and len(nbest[0]) == 1 and nbest[0][0].text == "AB"


# --- input checks ---

def test_check_log_probs_accepts_and_converts():
    lp = path_log_probs([2, 3]).double().unsqueeze(0)
    out, lengths = check_log_probs(lp, None, len(VOCAB))
    assert out.dtype == torch.float32 and lengths.tolist() == [2]
    out, _ = check_log_probs(lp.numpy(), [1], len(VOCAB))  # arrays and lists are fine
    assert out.shape == (1, 2, 5)
    with_neg_inf = lp.clone()
    with_neg_inf[0, 0, 4] = -math.inf  # probability zero is legitimate
    check_log_probs(with_neg_inf, None, len(VOCAB))


@pytest.mark.parametrize("make,message", [
    (lambda lp: lp.masked_fill(torch.rand(lp.shape) < 0.3, float("nan")), "NaN"),
    (lambda lp: lp.masked_fill(torch.rand(lp.shape) < 0.3, math.inf), r"\+inf"),
    (lambda lp: lp.transpose(1, 2), "wrong layout"),  # (batch, vocab, frames)
    (lambda lp: lp[..., :4], "vocabulary has 5"),  # a model with another vocabulary
    (lambda lp: lp.unsqueeze(0), r"\(batch, frames, vocab\)"),
    (lambda lp: lp[0, 0], r"\(batch, frames, vocab\)"),
])
def test_check_log_probs_errors(make, message):
    torch.manual_seed(0)
    lp = path_log_probs([2, 0, 3, 0, 4, 1, 2]).unsqueeze(0)
    with pytest.raises(DecodingError, match=message):
        check_log_probs(make(lp), None, len(VOCAB))
    with pytest.raises(DecodingError):
        GreedyDecoder(VOCAB, FRAME).decode(make(lp))


@pytest.mark.parametrize("lengths", [[8], [-1], [3, 3]])
def test_bad_lengths(lengths):
    lp = path_log_probs([2, 0, 3]).unsqueeze(0)
    with pytest.raises(DecodingError, match="lengths"):
        check_log_probs(lp, torch.tensor(lengths), len(VOCAB))


# --- the factory ---

def test_make_decoder_greedy():
    dec = make_decoder("greedy", VOCAB, FRAME)
    assert isinstance(dec, GreedyDecoder) and dec.frame_seconds == FRAME
    # Unset beam options are fine; set ones are errors, never silently ignored.
    assert isinstance(make_decoder("greedy", VOCAB, FRAME, lm=None, hotwords=()), GreedyDecoder)


@pytest.mark.parametrize("option", [{"lm": "lm.arpa"}, {"lexicon": "words.txt"},
                                    {"beam_size": 8}, {"hotwords": ("CAT",)}])
def test_make_decoder_greedy_refuses_beam_options(option):
    with pytest.raises(DecodingError, match=f"greedy decoder takes no {next(iter(option))}"):
        make_decoder("greedy", VOCAB, FRAME, **option)


def test_make_decoder_unknown_kind():
    with pytest.raises(DecodingError, match="unknown decoder 'viterbi'"):
        make_decoder("viterbi", VOCAB, FRAME)
