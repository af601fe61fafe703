"""Property tests (hypothesis): manifests, text, CTC collapse, ARPA files and LM scores,
frame and word times. Each draws its inputs at random and checks an invariant, so odd
corners (unicode ids, empty texts, backoff chains, one-frame words) are visited."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asrkit.decoding.base import RAW_WORD_TIMES, GreedyDecoder, collapse
from asrkit.features import FeatureConfig
from asrkit.lm.ngram import ArpaModel, NgramLM, read_arpa, write_arpa
from asrkit.manifest import Utterance, read_manifest, write_manifest
from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.text import BLANK, Vocabulary, normalize_text

FAST = settings(deadline=None, max_examples=40,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any text a JSON string can hold: no lone surrogates.
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
seconds = st.floats(0, 1e5, allow_nan=False, allow_infinity=False)


# --- manifests ------------------------------------------------------------------------

# File names: no "/" or NUL, not "." or "..", whatever else unicode allows.
file_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                     min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@FAST
@given(st.lists(st.tuples(any_text.filter(bool), file_names, st.one_of(st.none(), any_text),
                          seconds, st.one_of(st.none(), seconds),
                          st.one_of(st.none(), any_text)),
                max_size=5, unique_by=lambda r: r[0]))
def test_manifest_round_trip_with_any_unicode(tmp_path, records):
    folder = tmp_path / "corpus dir é"
    folder.mkdir(exist_ok=True)
    utts = [Utterance(uid, str(folder / "audio" / name), text, offset, duration, speaker)
            for uid, name, text, offset, duration, speaker in records]
    write_manifest(folder / "m.jsonl", utts)
    assert read_manifest(folder / "m.jsonl") == utts
    # Rewritten from what was read, the file is byte-identical: the format is stable.
    before = (folder / "m.jsonl").read_bytes()
    write_manifest(folder / "m.jsonl", read_manifest(folder / "m.jsonl"))
    assert (folder / "m.jsonl").read_bytes() == before


# --- text normalisation and the vocabulary -----------------------------------------------

@FAST
@given(any_text, st.sampled_from(["upper", "lower", "keep"]))
@example("ΐ", "upper")  # upper-cases to three code points that NFC composes to two
def test_normalisation_is_idempotent_and_tidy(text, case):
    once = normalize_text(text, case)
    assert normalize_text(once, case) == once
    assert once == once.strip() and "  " not in once
    assert all(c == " " or not c.isspace() for c in once)


@FAST
@given(st.lists(any_text, min_size=1, max_size=5), st.sampled_from(["upper", "lower", "keep"]))
def test_vocabulary_built_from_texts_round_trips_them(texts, case):
    vocab = Vocabulary.from_texts(texts, case)
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab
    for text in texts:
        ids = vocab.encode(text)
        assert BLANK not in ids and vocab.decode(ids) == normalize_text(text, case)


# --- CTC collapse ---------------------------------------------------------------------

@st.composite
def labelling_and_path(draw):
    """A labelling and a CTC path for it: every label repeated 1-4 times, blanks
    (0-3) anywhere and always between equal neighbours."""
    labels = draw(st.lists(st.integers(1, 5), max_size=12))
    path = [BLANK] * draw(st.integers(0, 3))
    for i, label in enumerate(labels):
        blanks = draw(st.integers(1 if i and labels[i - 1] == label else 0, 3))
        path += [BLANK] * blanks + [label] * draw(st.integers(1, 4))
    return labels, path + [BLANK] * draw(st.integers(0, 3))


@settings(deadline=None, max_examples=200)
@given(labelling_and_path())
def test_collapse_of_any_path_for_a_labelling_is_that_labelling(case):
    labels, path = case
    tokens, frames = collapse(path)
    assert tokens == labels
    assert all(path[t] == tok and (t == 0 or path[t - 1] != tok) for tok, t in zip(tokens, frames))


# --- ARPA files and n-gram scores -----------------------------------------------------

WORDS = ["a", "b", "c", "d"]
log10p = st.floats(-4.0, -0.01, allow_nan=False).map(lambda x: round(x, 6))


@st.composite
def arpa_models(draw) -> ArpaModel:
    """A random valid trigram model: every n-gram's prefix and suffix are present."""
    vocab = ["<s>", "</s>", "<unk>", *WORDS]
    uni = {(w,): (-99.0 if w == "<s>" else draw(log10p), draw(log10p)) for w in vocab}
    pairs = [(x, y) for x in vocab if x != "</s>" for y in vocab if y not in ("<s>", "<unk>")]
    bi = {g: (draw(log10p), draw(log10p)) for g in pairs if draw(st.booleans())}
    triples = [(x, y, z) for (x, y) in bi for (y2, z) in bi if y2 == y]
    tri = {g: (draw(log10p), 0.0) for g in triples if draw(st.integers(0, 3)) == 0}
    return ArpaModel((uni, bi, tri))


def brute_force_log10(model: ArpaModel, context: tuple[str, ...], word: str) -> float:
    """log10 p(word | context) by the ARPA backoff rule, straight from the tables."""
    if (len(context) + 1) <= model.order and context + (word,) in model.ngrams[len(context)]:
        return model.ngrams[len(context)][context + (word,)][0]
    if not context:
        return model.ngrams[0][("<unk>",)][0]
    backoff = model.ngrams[len(context) - 1].get(context, (0.0, 0.0))[1]
    return backoff + brute_force_log10(model, context[1:], word)


def brute_force_sentence(model: ArpaModel, words: list[str]) -> float:
    known = {g[0] for g in model.ngrams[0]}
    history, total = ("<s>",), 0.0
    for w in [w if w in known else "<unk>" for w in words] + ["</s>"]:
        total += brute_force_log10(model, history[-(model.order - 1):], w)
        history += (w,)
    return total


@settings(deadline=None, max_examples=25,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arpa_models(), st.lists(st.lists(st.sampled_from(WORDS + ["zebra"]), max_size=6),
                               min_size=1, max_size=5))
def test_arpa_round_trip_and_scores_match_the_backoff_rule(tmp_path, model, sentences):
    write_arpa(tmp_path / "lm.arpa", model)
    again = read_arpa(tmp_path / "lm.arpa")
    assert [set(t) for t in again.ngrams] == [set(t) for t in model.ngrams]
    for ours, theirs in zip(model.ngrams, again.ngrams):
        for gram, (p, b) in ours.items():
            assert theirs[gram][0] == pytest.approx(p, abs=1e-6)
            if len(gram) < model.order:
                assert theirs[gram][1] == pytest.approx(b, abs=1e-6)
    lm = NgramLM(again)
    for words in sentences:
        assert lm.sentence_log10(words) == pytest.approx(brute_force_sentence(again, words),
                                                         abs=1e-4)


# --- frames, seconds and word times ---------------------------------------------------

@st.composite
def model_and_samples(draw):
    subsample = draw(st.integers(1, 3))
    samples = draw(st.integers(1, 3 * 16_000))
    return subsample, samples


_models: dict[int, AsrModel] = {}


def tiny_model(subsample: int) -> AsrModel:
    if subsample not in _models:
        torch.manual_seed(subsample)
        config = ModelConfig(layers=1, hidden=8, subsample=subsample)
        _models[subsample] = AsrModel(Vocabulary(tuple(" AB")), config,
                                      FeatureConfig(n_mels=20)).eval()
    return _models[subsample]


@settings(deadline=None, max_examples=30)
@given(model_and_samples(), st.integers(0, 2**31 - 1))
def test_frames_cover_the_audio_and_word_times_lie_inside_it(case, seed):
    subsample, samples = case
    model = tiny_model(subsample)
    features = model.feature_config
    with torch.no_grad():
        log_probs, lengths = model(torch.randn(1, samples, generator=torch.Generator()
                                               .manual_seed(seed)) * 0.1)
    frames = int(lengths[0])
    assert frames == log_probs.shape[1] == model.output_frames(features.num_frames(samples))
    # Output frame t covers [t, t + 1) * frame_seconds; together they cover the audio
    # up to the last partial frame.
    duration = samples / features.sample_rate
    assert frames * model.frame_seconds <= duration + model.frame_seconds + \
        features.n_fft / features.sample_rate
    for t in range(frames):
        assert round(t * model.frame_seconds / model.frame_seconds) == t
    # Random log-probs give random words: times are on the frame grid, ordered, inside.
    noise = torch.randn(1, frames, len(model.vocab), generator=torch.Generator()
                        .manual_seed(seed)).log_softmax(-1)
    # Raw frame times lie on the grid; the corrected ones (WORD_TIMES: starts and ends
    # moved, see bench/word_times.py) stay ordered, non-empty and inside the audio.
    raw = GreedyDecoder(model.vocab, model.frame_seconds, RAW_WORD_TIMES).decode(noise)[0]
    for w in raw.words:
        assert math.isclose(w.start / model.frame_seconds, round(w.start / model.frame_seconds),
                            abs_tol=1e-3 / model.frame_seconds)
    hyp = GreedyDecoder(model.vocab, model.frame_seconds).decode(noise)[0]
    assert [w.word for w in hyp.words] == [w.word for w in raw.words]
    end = frames * model.frame_seconds + 1e-6
    previous_end = 0.0
    for w, r in zip(hyp.words, raw.words):
        assert 0 <= w.start < w.end <= end and w.start >= previous_end - 1e-9
        assert r.start <= w.start < r.start + model.frame_seconds + 1e-9  # inside its frame
        previous_end = w.end
    assert hyp.text == " ".join(w.word for w in hyp.words)
