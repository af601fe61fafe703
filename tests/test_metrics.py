"""Error rates: cross-checked against torchaudio's edit distance; empty-side handling."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torchaudio.functional import edit_distance

from asrkit.metrics import ErrorCounts, cer, char_errors, wer, word_errors

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
