"""Beam-search pruning (label floor, score margin) and the unknown-word LM offset:
no-limit pruning is the plain search, pruning keeps the best of peaky inputs, the
offset leaves in-vocabulary outputs alone and ranks out-of-vocabulary spellings
lower, and the options survive a decoding-config file."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from asrkit.decoding import load_decoding_config, make_decoder, save_decoding_config
from asrkit.decoding.base import GreedyDecoder
from asrkit.decoding.beam import BeamSearchDecoder
from asrkit.errors import DecodingOptionError
from asrkit.lm.estimate import estimate_kneser_ney
from asrkit.lm.ngram import write_arpa
from test_beam import FS, VOCAB, peaky_random, spell

NO_PRUNING = dict(token_min_logp=-math.inf, beam_threshold=math.inf)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    rng = random.Random(1)
    subjects, verbs, objects = ["THE CAT", "A DOG"], ["SAT ON", "RAN TO"], ["THE MAT", "A BED"]
    sentences = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}".split()
                 for _ in range(300)]
    path = tmp_path_factory.mktemp("lm") / "cat.arpa"
    write_arpa(path, estimate_kneser_ney(sentences, 3))
    return path


def nbest(lp, **options):
    return BeamSearchDecoder(VOCAB, FS, num_workers=1, **options).decode_nbest(lp[None])[0]


def summary(hyps):
    return [(h.text, h.tokens, h.frames, h.score, h.am_score, h.lm_score) for h in hyps]


def test_no_limits_is_the_unpruned_search(lm):
    """A floor of -inf and an infinite margin prune nothing: the same n-best as a
    search that also tries every label at every frame (beam_size_token = all)."""
    rng = np.random.default_rng(0)
    for options in ({}, {"lm": lm, "alpha": 0.8, "beta": 0.5}):
        for _ in range(4):
            lp = torch.log_softmax(torch.randn(30, len(VOCAB), generator=torch.Generator()
                                               .manual_seed(int(rng.integers(1000)))) * 3, -1)
            free = nbest(lp, beam_size=16, nbest=4, **NO_PRUNING, **options)
            every = nbest(lp, beam_size=16, nbest=4, beam_size_token=len(VOCAB) - 1,
                          **NO_PRUNING, **options)
            assert summary(free) == summary(every)


def test_default_pruning_keeps_the_best_of_peaky_input(lm):
    rng = np.random.default_rng(1)
    noise = [peaky_random(60, len(VOCAB), rng) for _ in range(6)]  # p > 0.9 a frame
    speech = [spell("THE CAT SAT ON THE MAT", {10: ("G", 0.5)}, seed=s) for s in range(3)]
    speech += [spell("A DOG RAN TO A BED", {4: ("F", 0.3)})]
    for options, cases in (({}, noise + speech), ({"lm": lm, "alpha": 1.0, "beta": 0.5}, speech)):
        for lp in cases:
            pruned, free = nbest(lp, **options)[0], nbest(lp, **NO_PRUNING, **options)[0]
            assert pruned.text == free.text  # less alignment mass only: pruned paths
            assert free.score - 0.05 < pruned.score <= free.score + 1e-9


@pytest.mark.parametrize("options", [{}, NO_PRUNING])
def test_beam_one_still_equals_greedy(options):
    rng = np.random.default_rng(2)
    greedy = GreedyDecoder(VOCAB, FS)
    for lp in [peaky_random(80, len(VOCAB), rng) for _ in range(10)]:
        g, b = greedy.decode(lp[None])[0], nbest(lp, beam_size=1, **options)[0]
        assert (b.text, b.tokens, b.frames) == (g.text, g.tokens, g.frames)


def test_unknown_word_offset_leaves_known_words_alone(lm):
    lp = spell("A DOG RAN TO THE MAT")
    plain = nbest(lp, lm=lm, alpha=1.0, beta=0.5, unk_offset=0.0)[0]
    offset = nbest(lp, lm=lm, alpha=1.0, beta=0.5, unk_offset=-10.0)[0]
    assert offset.text == "A DOG RAN TO THE MAT"
    assert summary([offset]) == summary([plain])


def test_out_of_vocabulary_spelling_ranks_below_a_known_one(lm):
    """T and X of SAT tie acoustically: the LM word wins, and the non-word SAX pays
    alpha * unk_offset once on top of what it paid without the offset."""
    lp = spell("THE CAT SAT ON THE MAT")
    lp[2 * 10 + 1, VOCAB.symbols.index("X") + 1] = lp[2 * 10 + 1, VOCAB.symbols.index("T") + 1]
    options = dict(lm=lm, alpha=0.5, beta=0.5, nbest=2, **NO_PRUNING)
    plain = {h.text: h for h in nbest(lp, unk_offset=0.0, **options)}
    offset = nbest(lp, unk_offset=-10.0, **options)
    assert [h.text for h in offset] == ["THE CAT SAT ON THE MAT", "THE CAT SAX ON THE MAT"]
    assert offset[0].am_score == pytest.approx(offset[1].am_score, abs=1e-2)  # other frames
    sax = plain["THE CAT SAX ON THE MAT"]
    assert offset[1].score == pytest.approx(sax.score - 0.5 * 10.0)
    assert offset[1].lm_score == pytest.approx(sax.lm_score)  # the LM's own score is kept


def test_decoding_config_round_trip_of_pruning_and_offset(tmp_path, lm):
    path = tmp_path / "decoding.json"
    saved = {"decoder": "beam", "lm": str(lm), "token_min_logp": -7.5, "beam_threshold": 12.0,
             "unk_offset": -4.0}
    save_decoding_config(path, saved)
    options = load_decoding_config(path)
    assert options == {**saved, "lm": str(lm.resolve())}
    options.pop("decoder")
    decoder = make_decoder("beam", VOCAB, FS, **options)
    p = decoder._params
    assert (p.min_logp, p.threshold, p.unk_offset) == (-7.5, 12.0, -4.0)
    save_decoding_config(path, {"decoder": "beam", **NO_PRUNING})  # no pruning survives too
    assert load_decoding_config(path) == {"decoder": "beam", **NO_PRUNING}


@pytest.mark.parametrize("option, value", [("token_min_logp", 0.5), ("token_min_logp", math.nan),
                                           ("beam_threshold", 0.0), ("unk_offset", math.inf)])
def test_bad_pruning_options(option, value):
    with pytest.raises(DecodingOptionError, match=option):
        BeamSearchDecoder(VOCAB, FS, **{option: value})
