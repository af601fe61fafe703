"""Error rates: cross-checked against torchaudio's edit distance; empty-side handling.
Word-time errors: which words are paired, and known offsets give known errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torchaudio.functional import edit_distance

from asrkit.metrics import (ErrorCounts, TimedWord, cer, char_errors, pair_words,
                            summarize_time_errors, wer, word_errors, word_time_errors)

WORDS = ["A", "B", "C", "CAT", "DOG", "GO"]


def random_sentence(rng: random.Random, max_words: int = 8) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, max_words)))


def corpus(seed: int, n: int = 25) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs = [random_sentence(rng) for _ in range(n)]
    hyps = [random_sentence(rng) for _ in range(n)]
    return refs, hyps


@pytest.mark.parametrize("seed", range(5))
def test_word_errors_equal_torchaudio_edit_distance(seed):
    refs, hyps = corpus(seed)
    counts = word_errors(refs, hyps)
    assert counts.errors == sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
    assert counts.reference_length == sum(len(r.split()) for r in refs)


@pytest.mark.parametrize("seed", range(5))
def test_char_errors_equal_torchaudio_edit_distance(seed):
    refs, hyps = corpus(seed)
    counts = char_errors(refs, hyps)
    assert counts.errors == sum(edit_distance(list(r), list(h)) for r, h in zip(refs, hyps))
    assert counts.reference_length == sum(len(r) for r in refs)


@settings(max_examples=80, deadline=None)
@given(st.text("ab c\t\n", max_size=15), st.text("ab c\t\n", max_size=15))
def test_single_pair_property(ref, hyp):
    counts = word_errors([ref], [hyp])
    assert counts.errors == edit_distance(ref.split(), hyp.split())
    assert counts.reference_length == len(ref.split())
    # Deleting everything costs the reference length; inserting costs the hypothesis.
    assert word_errors([ref], [""]).deletions == len(ref.split())
    assert word_errors([""], [hyp]).insertions == len(hyp.split())
    folded_r, folded_h = " ".join(ref.split()), " ".join(hyp.split())
    assert char_errors([ref], [hyp]).errors == edit_distance(list(folded_r), list(folded_h))


@pytest.mark.parametrize("seed", range(3))
def test_corpus_rates_pool_errors_over_all_references(seed):
    # A corpus rate is total errors over total reference length, not a mean of
    # per-utterance rates (which would overweight short utterances).
    refs, hyps = corpus(seed)
    refs, hyps = zip(*[(r, h) for r, h in zip(refs, hyps) if r])
    words = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
    assert wer(refs, hyps) == pytest.approx(words / sum(len(r.split()) for r in refs))
    chars = sum(edit_distance(list(r), list(h)) for r, h in zip(refs, hyps))
    assert cer(refs, hyps) == pytest.approx(chars / sum(len(r) for r in refs))


def test_counts_by_kind():
    counts = word_errors(["THE CAT SAT"], ["THE BAT SAT DOWN"])
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 1)
    assert counts.rate == pytest.approx(2 / 3)
    assert counts.as_dict() == {"rate": round(2 / 3, 6), "substitutions": 1, "deletions": 0,
                                "insertions": 1, "reference_length": 3}


def test_empty_reference_and_hypothesis():
    both_empty = word_errors([""], [""])
    assert both_empty == ErrorCounts(0, 0, 0, 0) and both_empty.rate == 0.0
    only_hyp = word_errors(["", "  "], ["A B", "C"])  # white space only is empty too
    assert only_hyp == ErrorCounts(0, 0, 3, 0)
    assert only_hyp.rate == 1.0  # errors without any reference: rate 1, not a crash
    only_ref = word_errors(["A B C"], [""])
    assert only_ref == ErrorCounts(0, 3, 0, 3) and only_ref.rate == 1.0
    mixed = word_errors(["A B", ""], ["A B", "X"])
    assert mixed == ErrorCounts(0, 0, 1, 2) and mixed.rate == 0.5
    assert char_errors([""], ["AB"]) == ErrorCounts(0, 0, 2, 0)
    assert word_errors([], []) == ErrorCounts(0, 0, 0, 0)


def test_white_space_runs_do_not_count():
    assert char_errors(["A  B "], [" A B"]).errors == 0
    assert word_errors(["A\tB"], ["A B"]).errors == 0


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_errors(["A", "B"], ["A"])


def timed(text: str, start: float = 0.0, step: float = 0.5) -> list[TimedWord]:
    """Words of ``text`` one every ``step`` seconds, each ``step * 0.6`` long."""
    return [TimedWord(w, start + i * step, start + i * step + 0.6 * step)
            for i, w in enumerate(text.split())]


def test_only_words_heard_right_are_paired():
    ref = timed("GO STOP HELP YES NO")
    hyp = timed("GO STOP HALP YES MAYBE NO")  # one substitution, one insertion
    assert pair_words(ref, hyp) == [(0, 0), (1, 1), (3, 3), (4, 5)]
    assert pair_words(ref, timed("GO HELP YES NO")) == [(0, 0), (2, 1), (3, 2), (4, 3)]
    assert pair_words(ref, []) == [] and pair_words([], ref) == []


@pytest.mark.parametrize("seed", range(5))
def test_pairs_are_the_matches_that_word_errors_counts(seed):
    refs, hyps = corpus(seed, n=10)
    for r, h in zip(refs, hyps):
        pairs = pair_words(timed(r), timed(h))
        assert all(r.split()[i] == h.split()[j] for i, j in pairs)
        assert all(a < c and b < d for (a, b), (c, d) in zip(pairs, pairs[1:]))
        if r:  # correct words = reference words - substitutions - deletions
            counts = word_errors([r], [h])
            assert len(pairs) == counts.reference_length - counts.substitutions - counts.deletions


@pytest.mark.parametrize("start_shift,end_shift", [(0.02, -0.07), (-0.03, 0.0), (0.0, 0.11)])
def test_known_offsets_give_known_errors(start_shift, end_shift):
    ref = timed("YES NO GO STOP HELP START ERASE")
    hyp = [TimedWord(w.word, w.start + start_shift, w.end + end_shift) for w in ref]
    errors = word_time_errors(ref, hyp)
    assert [e.word for e in errors] == [w.word for w in ref]
    assert all(e.start == pytest.approx(start_shift) and e.end == pytest.approx(end_shift)
               for e in errors)
    s = summarize_time_errors(errors)
    assert s.words == len(ref)
    assert (s.start_median, s.start_p95, s.start_bias) == pytest.approx(
        (abs(start_shift) * 1000, abs(start_shift) * 1000, start_shift * 1000))
    assert (s.end_median, s.end_p95, s.end_bias) == pytest.approx(
        (abs(end_shift) * 1000, abs(end_shift) * 1000, end_shift * 1000))


def test_summary_medians_and_percentiles_of_spread_errors():
    # Starts 0, 1, ..., 99 ms late; ends as early: medians 49.5, 95th percentiles 94.05.
    ref = timed(" ".join(["GO"] * 100), step=1.0)
    hyp = [TimedWord(w.word, w.start + i / 1000, w.end - i / 1000) for i, w in enumerate(ref)]
    s = summarize_time_errors(word_time_errors(ref, hyp))
    assert (s.start_median, s.start_p95, s.start_bias) == pytest.approx((49.5, 94.05, 49.5))
    assert (s.end_median, s.end_p95, s.end_bias) == pytest.approx((49.5, 94.05, -49.5))
    assert s.boundary_median == pytest.approx(49.5)
    assert s.as_dict() == {"words": 100, "start_median_ms": 49.5, "start_p95_ms": round(94.05, 1),
                           "start_bias_ms": 49.5, "end_median_ms": 49.5,
                           "end_p95_ms": round(94.05, 1), "end_bias_ms": -49.5,
                           "boundary_median_ms": 49.5}


def test_no_scored_word_summarises_as_nan_and_bad_words_are_refused():
    s = summarize_time_errors([])
    assert s.words == 0 and np.isnan(s.start_median) and np.isnan(s.boundary_median)
    with pytest.raises(ValueError, match="one word"):
        pair_words([TimedWord("TWO WORDS", 0, 1)], [TimedWord("TWO", 0, 1)])
