"""Word n-gram LMs: ARPA scoring by hand and against KenLM, Kneser–Ney estimation,
ARPA round trips, malformed files, and the `asrkit lm build` command."""

from __future__ import annotations

import json
import math
import random
import sys

import pytest
import typer
from typer.testing import CliRunner

from asrkit.errors import DecodingError
from asrkit.lm.ngram import BOS, EOS, UNK, NgramLM, load_lm, read_arpa, write_arpa
from asrkit.lm.estimate import estimate_kneser_ney

TINY_ARPA = """\\data\\
ngram 1=4
ngram 2=2
ngram 3=1

\\1-grams:
-1.0\t<s>\t-0.5
-0.5\ta\t-0.3
-0.7\tb\t-0.25
-1.2\t</s>

\\2-grams:
-0.2\t<s> a\t-0.1
-0.1\ta b

\\3-grams:
-0.05\t<s> a b
\\end\\
"""


def random_sentences(n=300, seed=0, words="the cat dog sat on a mat ran to big red house"):
    rng = random.Random(seed)
    vocab = words.split()
    return [[rng.choice(vocab) for _ in range(rng.randint(1, 8))] for _ in range(n)]


@pytest.fixture
def tiny_lm(tmp_path):
    path = tmp_path / "tiny.arpa"
    path.write_text(TINY_ARPA)
    return NgramLM.from_arpa(path)


@pytest.mark.parametrize("words, log10", [
    # <s> a: bigram; a | <s> a: trigram, state falls to "a b"; </s> | a b: no bigram,
    # "a b" has no backoff (0), then bow(b) + p(</s>)
    (["a", "b"], -0.2 - 0.05 + (0.0 - 0.25 - 1.2)),
    # b | <s>: bow(<s>) + p(b); a | b: bow(b) + p(a); </s> | a: bow(a) + p(</s>)
    (["b", "a"], (-0.5 - 0.7) + (-0.25 - 0.5) + (-0.3 - 1.2)),
    # </s> | <s> a: bow(<s> a) + bow(a) + p(</s>)
    (["a"], -0.2 + (-0.1 - 0.3 - 1.2)),
    # OOV: KenLM's -100 for a missing <unk>
    (["zzz"], (-0.5 - 100.0) + (-1.2)),
])
def test_tiny_arpa_scores_by_hand(tiny_lm, words, log10):
    assert tiny_lm.sentence_log10(words) == pytest.approx(log10, abs=1e-6)


def test_tiny_arpa_backoff_chain(tiny_lm):
    """After "<s> b" (no such bigram) the state is "b", so p(b | b) = bow(b) + p(b)."""
    state = tiny_lm.begin_state()
    _, state = tiny_lm.score(state, "b")
    p, _ = tiny_lm.score(state, "b")
    assert p / math.log(10) == pytest.approx(-0.25 - 0.7, abs=1e-6)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_contexts_sum_to_one(order, tmp_path):
    model = estimate_kneser_ney(random_sentences(), order)
    write_arpa(tmp_path / "lm.arpa", model)
    lm = NgramLM.from_arpa(tmp_path / "lm.arpa")
    predicted = [w for w in lm.words if w != BOS]
    assert UNK in predicted and EOS in predicted
    contexts = [()] + [g for t in model.ngrams[:order - 1] for g in list(t)[:40]]
    for ctx in contexts:
        state = 0
        for w in ctx:
            state = lm.begin_state() if w == BOS else lm.score(state, w)[1]
        total = sum(math.exp(lm.score(state, w)[0]) for w in predicted)
        assert total == pytest.approx(1.0, abs=1e-5), ctx


def test_kneser_ney_with_too_little_data_still_normalised():
    model = estimate_kneser_ney([["hello"], ["hello", "world"]], 3)
    lm = NgramLM(model)
    for state in (0, lm.begin_state()):
        assert sum(math.exp(lm.score(state, w)[0]) for w in lm.words if w != BOS) \
            == pytest.approx(1.0, abs=1e-9)


def test_arpa_round_trip(tmp_path):
    model = estimate_kneser_ney(random_sentences(), 3)
    write_arpa(tmp_path / "a.arpa", model)
    again = read_arpa(tmp_path / "a.arpa")
    assert [set(t) for t in again.ngrams] == [set(t) for t in model.ngrams]
    for t1, t2 in zip(model.ngrams, again.ngrams):
        for g, (p, b) in t1.items():
            assert t2[g] == pytest.approx((p, b), abs=1e-6)
    write_arpa(tmp_path / "b.arpa", again)
    assert (tmp_path / "b.arpa").read_text() == (tmp_path / "a.arpa").read_text()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left over


def test_scores_agree_with_kenlm(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    write_arpa(tmp_path / "lm.arpa", estimate_kneser_ney(random_sentences(), 3))
    ours = NgramLM.from_arpa(tmp_path / "lm.arpa")
    theirs = kenlm.Model(str(tmp_path / "lm.arpa"))
    tests = random_sentences(50, seed=1) + [["zebra", "the", "cat"], ["cat", "unknown"]]
    for s in tests:
        for bos, eos in ((True, True), (False, False), (True, False)):
            assert ours.sentence_log10(s, bos, eos) == pytest.approx(
                theirs.score(" ".join(s), bos=bos, eos=eos), abs=1e-4)


def test_kenlm_binary_without_kenlm_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "lm.bin"
    path.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0\0")
    monkeypatch.setitem(sys.modules, "kenlm", None)  # import kenlm now fails
    with pytest.raises(DecodingError, match="pip install kenlm"):
        load_lm(path)


@pytest.mark.parametrize("text, line", [
    (TINY_ARPA.replace("-0.7\tb", "-0.x\tb"), 9),  # not a number
    (TINY_ARPA.replace("-0.1\ta b", "-0.1\ta b c d"), 14),  # too many fields
    (TINY_ARPA.replace("-0.05\t<s> a b", "-0.05\t<s> a q"), 17),  # word without unigram
    (TINY_ARPA.replace("ngram 2=2", "ngram 2=3"), 16),  # count does not match
    (TINY_ARPA.replace("\\end\\", ""), None),  # truncated
    (TINY_ARPA.replace("\\data\\", "data"), 1),  # no header
    (TINY_ARPA.replace("-0.5\ta\t-0.3", "0.5\ta\t-0.3"), 8),  # positive log probability
])
def test_malformed_arpa_names_the_line(tmp_path, text, line):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(DecodingError) as err:
        load_lm(path)
    assert (f"bad.arpa:{line}:" if line else "bad.arpa") in str(err.value)


def test_missing_lm_file(tmp_path):
    with pytest.raises(DecodingError, match="not found"):
        load_lm(tmp_path / "nope.arpa")


def lm_app():
    from asrkit.cli import lm as lm_cli
    app = typer.Typer()
    app.add_typer(lm_cli.app, name="lm")
    return app


def test_cli_lm_build(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(" ".join(s) for s in random_sentences()) + "\n\n")
    out = tmp_path / "out" / "lm.arpa"
    result = CliRunner().invoke(lm_app(), ["lm", "build", str(text), "--order", "3",
                                           "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    lm = NgramLM.from_arpa(out)
    assert summary["order"] == 3 and lm.order == 3
    assert summary["1-grams"] == len(lm.words)
    assert "THE" in lm.word_ids  # upper-cased like the default vocabulary
    reference = NgramLM(estimate_kneser_ney(
        [[w.upper() for w in s] for s in random_sentences()], 3))
    assert lm.sentence_log10(["THE", "CAT"]) == pytest.approx(
        reference.sentence_log10(["THE", "CAT"]), abs=1e-5)


def test_cli_lm_build_errors(tmp_path):
    result = CliRunner().invoke(lm_app(), ["lm", "build", str(tmp_path / "none.txt"),
                                           "--out", str(tmp_path / "lm.arpa")])
    assert result.exit_code == 1
    assert "error:" in result.output and "not found" in result.output
    (tmp_path / "empty.txt").write_text("\n\n")
    result = CliRunner().invoke(lm_app(), ["lm", "build", str(tmp_path / "empty.txt"),
                                           "--out", str(tmp_path / "lm.arpa")])
    assert result.exit_code == 1 and "no words" in result.output
    assert not (tmp_path / "lm.arpa").exists()
