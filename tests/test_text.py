"""Vocabulary and text normalisation; ctc_min_frames against torch's CTC loss."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asrkit.errors import VocabularyError
from asrkit.text import BLANK, BLANK_SYMBOL, Vocabulary, ctc_min_frames, normalize_text

LETTERS = tuple(" 'ABCDEFGHIJKLMNOPQRSTUVWXYZ")
VOCAB = Vocabulary(LETTERS)

# Strings over the vocabulary's alphabet (any case, any run of white space).
raw_texts = st.text(st.sampled_from(list("ABCXYZabcxyz' \t\n")), max_size=40)


@settings(max_examples=200, deadline=None)
@given(raw_texts)
def test_encode_decode_round_trip(text):
    ids = VOCAB.encode(text)
    assert BLANK not in ids
    assert VOCAB.decode(ids) == normalize_text(text)
    assert VOCAB.encode(VOCAB.decode(ids)) == ids  # normalised text is a fixed point


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(LETTERS)), max_size=30))
def test_decode_skips_blanks(ids):
    assert VOCAB.decode(ids) == VOCAB.decode([i for i in ids if i != BLANK])
    assert len(VOCAB.decode(ids)) == sum(i != BLANK for i in ids)


def test_indices_blank_first():
    assert len(VOCAB) == len(LETTERS) + 1
    assert VOCAB.labels()[0] == BLANK_SYMBOL and VOCAB.labels()[1:] == list(LETTERS)
    assert VOCAB.encode("A B") == [3, 1, 4]
    assert VOCAB.space_id == 1
    assert Vocabulary(("A", "B")).space_id is None


def test_normalisation():
    assert normalize_text("  hello\t\n world  ") == "HELLO WORLD"
    assert normalize_text("MiXeD", "lower") == "mixed"
    assert normalize_text("MiXeD", "keep") == "MiXeD"
    decomposed, composed = "e\u0301te\u0301", "\u00e9t\u00e9"
    assert decomposed != composed
    assert normalize_text(decomposed, "keep") == composed  # NFC


def test_nfc_forms_encode_the_same():
    vocab = Vocabulary.from_texts(["\u00e9t\u00e9"], case="lower")
    assert vocab.symbols == ("t", "\u00e9")  # one composed symbol, no combining accent
    assert vocab.encode("E\u0301TE\u0301") == vocab.encode("\u00e9t\u00e9")


@pytest.mark.parametrize("case,text,expected", [
    ("upper", "Yes no", "YES NO"), ("lower", "Yes NO", "yes no"), ("keep", "Yes no", "Yes no")])
def test_case_policies(case, text, expected):
    vocab = Vocabulary.from_texts([text], case=case)
    assert vocab.decode(vocab.encode(text)) == expected
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab


def test_keep_case_is_case_sensitive():
    vocab = Vocabulary(("a", "b"), case="keep")
    with pytest.raises(VocabularyError, match="'A'"):
        vocab.encode("aA")


def test_unknown_characters():
    with pytest.raises(VocabularyError, match=r"'!1'"):
        VOCAB.encode("hello 1!")
    assert VOCAB.unknown("hello 1!") == {"1", "!"}
    assert VOCAB.unknown("hello") == set()


def test_invalid_vocabularies():
    with pytest.raises(VocabularyError, match="unique"):
        Vocabulary(("A", "B", "A"))
    with pytest.raises(VocabularyError, match="reserved"):
        Vocabulary(("A", BLANK_SYMBOL))


def test_from_texts_sorted_and_serialisable():
    vocab = Vocabulary.from_texts(["b a", "C"])
    assert vocab.symbols == (" ", "A", "B", "C")
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab


def test_ctc_min_frames_examples():
    assert ctc_min_frames([]) == 0
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1]) == 3  # a blank must separate the repeat
    assert ctc_min_frames([1, 1, 1, 2, 2]) == 8
    assert ctc_min_frames(VOCAB.encode("HELLO")) == 6


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=8))
def test_ctc_min_frames_is_what_ctc_loss_needs(labels):
    """With one frame fewer than ctc_min_frames no alignment exists (infinite loss);
    with exactly that many, one does."""
    n = ctc_min_frames(labels)

    def loss(frames: int) -> float:
        log_probs = torch.full((frames, 1, 4), math.log(0.25))
        return float(torch.nn.functional.ctc_loss(
            log_probs, torch.tensor([labels]), torch.tensor([frames]),
            torch.tensor([len(labels)]), blank=BLANK, reduction="sum"))

    assert math.isfinite(loss(n))
    if n > 1:
        assert math.isinf(loss(n - 1))
