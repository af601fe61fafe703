"""CTC prefix beam search: exactness against brute force, agreement with greedy and
with torchaudio's flashlight decoder, LM fusion, hotwords, lexicons, tuning, configs,
bad input, and `asrkit lm tune`."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from asrkit.decoding import load_decoding_config, make_decoder, save_decoding_config
from asrkit.decoding.beam import BeamSearchDecoder
from asrkit.decoding.base import RAW_WORD_TIMES, WORD_TIMES, GreedyDecoder, word_bounds
from asrkit.errors import ConfigError, DecodingError
from asrkit.lm.ngram import KenLMModel, NgramLM, write_arpa
from asrkit.lm.estimate import estimate_kneser_ney
from asrkit.lm.tuning import tune_lm
from asrkit.metrics import word_errors
from asrkit.text import Vocabulary

VOCAB = Vocabulary(tuple(" ABCDEFGHIJKLMNOPQRSTUVWXYZ'"))
FS = 0.02  # seconds per output frame


def sym(ch: str) -> int:
    return VOCAB.symbols.index(ch) + 1


def spell(text: str, near: dict[int, tuple[str, float]] | None = None, seed: int = 0):
    """Peaky ``(frames, vocab)`` log-probs spelling ``text``: one spike frame per
    character between blank frames, like a trained CTC model. ``near[i] = (ch, d)``
    makes character ``i`` a near miss: ``ch`` gets ``d`` more logit than the truth."""
    rng = np.random.default_rng(seed)
    frames = [0]
    for ch in text:
        frames += [sym(ch), 0]
    logits = rng.normal(0, 1, (len(frames), len(VOCAB))) - 10.0
    logits[np.arange(len(frames)), frames] = 0.0
    for i, (ch, d) in (near or {}).items():
        logits[2 * i + 1, sym(ch)] = d
    return torch.log_softmax(torch.tensor(logits), -1).float()


def peaky_random(frames: int, vocab_size: int, rng, dominance: float = 6.0):
    """Random log-probs where each frame has one dominant label (p > 0.9)."""
    labels = rng.integers(0, vocab_size, frames)
    labels[rng.random(frames) < 0.5] = 0
    logits = rng.normal(0, 1, (frames, vocab_size))
    logits[np.arange(frames), labels] += dominance + 3
    return torch.log_softmax(torch.tensor(logits), -1).float()


def decode(log_probs, **options):
    return BeamSearchDecoder(VOCAB, FS, **options).decode_nbest(log_probs.unsqueeze(0))[0]


def test_beam_one_equals_greedy():
    """With one dominant label per frame, a one-prefix beam follows the best path.
    (On flat inputs it need not: a prefix sums its blank and repeat alignments.)"""
    rng = np.random.default_rng(0)
    cases = [peaky_random(80, len(VOCAB), rng) for _ in range(20)]
    cases += [spell("HELLO WORLD", seed=s) for s in range(3)]
    greedy = GreedyDecoder(VOCAB, FS)
    beam = BeamSearchDecoder(VOCAB, FS, beam_size=1)
    for lp in cases:
        g, b = greedy.decode(lp[None])[0], beam.decode(lp[None])[0]
        assert (b.text, b.tokens, b.frames) == (g.text, g.tokens, g.frames)


def brute_force(lp: torch.Tensor) -> dict[tuple[int, ...], float]:
    """Probability of every labelling: the sum over all frame paths that collapse to it."""
    frames, n = len(lp), len(lp[0])
    probs: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(n), repeat=frames):
        labels = tuple(k for k, _ in itertools.groupby(path) if k != 0)
        probs[labels] = probs.get(labels, 0.0) + math.exp(sum(lp[t][path[t]] for t in range(frames)))
    return probs


@pytest.mark.parametrize("symbols, frames", [(("A", "B"), 6), (("A", " ", "B"), 5)])
def test_wide_beam_finds_the_exhaustive_best_labelling(symbols, frames):
    vocab = Vocabulary(symbols)
    gen = torch.Generator().manual_seed(1)
    for _ in range(8):
        lp = torch.log_softmax(torch.randn(frames, len(vocab), generator=gen) * 1.5, -1)
        probs = brute_force(lp.double().tolist())
        ranked = sorted(probs, key=probs.get, reverse=True)
        dec = BeamSearchDecoder(vocab, FS, beam_size=256, beam_threshold=math.inf,
                                token_min_logp=-math.inf, nbest=4)
        nbest = dec.decode_nbest(lp[None])[0]
        assert nbest[0].tokens == ranked[0]
        assert nbest[0].am_score == pytest.approx(math.log(probs[ranked[0]]), abs=1e-5)
        if " " not in symbols:  # distinct labellings are distinct texts: n-best is exact
            assert [h.tokens for h in nbest] == ranked[:4]
            for h in nbest:
                assert h.am_score == pytest.approx(math.log(probs[h.tokens]), abs=1e-5)


def test_agrees_with_flashlight_without_lm():
    decoder_module = pytest.importorskip("torchaudio.models.decoder")
    tokens = ["-"] + ["|" if s == " " else s for s in VOCAB.symbols]
    flashlight = decoder_module.ctc_decoder(lexicon=None, tokens=tokens, beam_size=50,
                                            log_add=True, blank_token="-", sil_token="|")
    rng = np.random.default_rng(3)
    lp = torch.stack([peaky_random(60, len(VOCAB), rng, dominance=3.0) for _ in range(12)])
    ours = BeamSearchDecoder(VOCAB, FS, beam_size=50).decode(lp)
    theirs = flashlight(lp.contiguous())
    for o, t in zip(ours, theirs):
        # flashlight's path has a start token (sil) before frame 0 and one after the
        # last frame; its timesteps count from the start token
        tokens, steps = t[0].tokens.tolist(), t[0].timesteps.tolist()
        if steps and steps[0] == 0:
            tokens, steps = tokens[1:], steps[1:]
        if steps and steps[-1] == lp.shape[1] + 1:
            tokens, steps = tokens[:-1], steps[:-1]
        assert list(o.tokens) == tokens
        assert list(o.frames) == [s - 1 for s in steps]
        assert o.am_score >= t[0].score - 1e-4  # theirs: one alignment class of ours


def test_batched_equals_one_by_one():
    rng = np.random.default_rng(5)
    items = [peaky_random(n, len(VOCAB), rng, dominance=2.0) for n in (30, 55, 12, 41)]
    batch = torch.full((4, 55, len(VOCAB)), -3.0)  # padding must be ignored
    for i, x in enumerate(items):
        batch[i, :len(x)] = x
    lengths = torch.tensor([len(x) for x in items])
    together = BeamSearchDecoder(VOCAB, FS, beam_size=20, num_workers=2).decode(batch, lengths)
    alone = BeamSearchDecoder(VOCAB, FS, beam_size=20, num_workers=1)
    for x, h in zip(items, together):
        assert alone.decode(x[None])[0] == h


def test_label_pruning_keeps_the_likely_labels():
    lp = spell("GOOD DAY")
    assert decode(lp, beam_size_token=3)[0].text == decode(lp)[0].text == "GOOD DAY"


def test_word_times_and_confidences():
    lp = spell("HI YOU")
    hyp = decode(lp, times=RAW_WORD_TIMES)[0]
    assert [w.word for w in hyp.words] == ["HI", "YOU"]
    # spikes at frames 1, 3 (H I), 7, 9, 11 (Y O U)
    assert [(w.start, w.end) for w in hyp.words] == [(0.02, 0.08), (0.14, 0.24)]
    # By default the boundaries are moved as WordTimes says (the symbol fires inside
    # the sound), within the recording.
    moved = word_bounds([(1, 3), (7, 11)], FS, WORD_TIMES, lp.shape[0] * FS)
    assert [(w.start, w.end) for w in decode(lp)[0].words] == moved
    assert all(0.99 < w.confidence <= 1.0 for w in hyp.words)
    near = decode(spell("HI YOU", {4: ("A", -0.2)}))[0]  # O of YOU at p ~ 0.55
    assert near.text == "HI YOU" and near.words[1].confidence < 0.9 < near.words[0].confidence


@pytest.fixture(scope="module")
def cat_lm(tmp_path_factory):
    rng = random.Random(0)
    subjects, verbs, objects = ["THE CAT", "A DOG", "THE BIRD"], ["SAT ON", "RAN TO"], \
        ["THE MAT", "A HOUSE", "THE BED"]
    sentences = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}".split()
                 for _ in range(400)]
    path = tmp_path_factory.mktemp("lm") / "cat.arpa"
    write_arpa(path, estimate_kneser_ney(sentences, 3))
    return path


def test_lm_fusion_fixes_a_near_miss(cat_lm):
    lp = spell("THE CAT SAT ON THE MAT", {10: ("G", 0.5)})  # "SAG" by a little
    plain = decode(lp)[0]
    assert plain.text == "THE CAT SAG ON THE MAT"
    nbest = decode(lp, lm=cat_lm, alpha=1.0, beta=0.5, nbest=3)
    best = nbest[0]
    assert best.text == "THE CAT SAT ON THE MAT"
    assert best.am_score < plain.am_score  # the LM outweighs the acoustic preference
    lm = NgramLM.from_arpa(cat_lm)
    for h in nbest:  # a word the LM lacks ("SAG") costs unk_offset (-10) more, times alpha
        unknown = sum(w.word not in lm.word_ids for w in h.words)
        assert h.score == pytest.approx(h.am_score + 1.0 * (h.lm_score - 10.0 * unknown)
                                        + 0.5 * len(h.words))
        assert h.lm_score == pytest.approx(lm.sentence_log10(h.text.split()) * math.log(10))
    assert best.lm_score > lm.sentence_log10(plain.text.split()) * math.log(10)
    assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)


def test_alpha_zero_is_acoustic_only(cat_lm):
    lp = spell("THE CAT SAT ON THE MAT", {10: ("G", 0.5)})
    assert decode(lp, lm=cat_lm, alpha=0.0, beta=0.0)[0].text == "THE CAT SAG ON THE MAT"


def test_hotwords_turn_a_near_miss_into_the_hotword():
    lp = spell("I LIKE NEW YORK", {14: ("C", 0.6)})  # C slightly ahead of the true K
    assert decode(lp)[0].text == "I LIKE NEW YORC"
    assert decode(lp, hotwords=["NEW YORK"], hotword_weight=1.0)[0].text == "I LIKE NEW YORK"
    assert decode(lp, hotwords=["YORK"], hotword_weight=1.0)[0].text == "I LIKE NEW YORK"
    # a hotword is matched as whole words: "ORK" inside "YORC" earns nothing
    assert decode(lp, hotwords=["ORK"], hotword_weight=1.0)[0].text == "I LIKE NEW YORC"


def test_lexicon_restricts_the_output(tmp_path):
    lp = spell("CAT DOG", {2: ("G", 0.5)})
    assert decode(lp)[0].text == "CAG DOG"
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("CAT k ae t\ndog d ao g\nCAGÉ x\n\nCOT k aa t\n")
    nbest = decode(lp, lexicon=lexicon, nbest=3)
    assert nbest[0].text == "CAT DOG"
    assert all(w.word in {"CAT", "DOG", "COT"} for h in nbest for w in h.words)
    assert decode(lp, lexicon=["cat", "dog"])[0].text == "CAT DOG"


def test_lexicon_word_cut_off_at_the_end():
    """Every prefix ends inside "CATS": the best is kept rather than nothing."""
    hyp = decode(spell("CAT"), beam_size=1, lexicon=["CATS"])[0]
    assert hyp.text == "CAT"


def test_kenlm_model_decodes_like_the_arpa_reader(cat_lm):
    pytest.importorskip("kenlm")
    items = [spell("THE CAT SAT ON THE MAT", {10: ("G", 0.5)}),
             spell("A DOG RAN TO THE BED", {19: ("B", 0.4)}, seed=1)]
    lp = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)
    lengths = torch.tensor([len(x) for x in items])
    words = ["THE", "CAT", "SAT", "ON", "MAT", "A", "DOG", "RAN", "TO", "BED", "SAG", "HOUSE"]
    options = dict(alpha=0.8, beta=0.5, lexicon=words, nbest=3)
    arpa = BeamSearchDecoder(VOCAB, FS, lm=cat_lm, **options).decode_nbest(lp, lengths)
    ken = BeamSearchDecoder(VOCAB, FS, lm=KenLMModel(cat_lm), **options).decode_nbest(lp, lengths)
    assert arpa[1][0].text == "A DOG RAN TO THE BED"
    assert [[h.text for h in n] for n in arpa] == [[h.text for h in n] for n in ken]
    for n1, n2 in zip(arpa, ken):
        for h1, h2 in zip(n1, n2):
            assert h1.score == pytest.approx(h2.score, abs=1e-3)


def dev_set(seed=0, n=12):
    """Utterances from the cat language, each with one near-miss letter."""
    rng = random.Random(seed)
    texts = ["THE CAT SAT ON THE MAT", "A DOG RAN TO A HOUSE", "THE BIRD SAT ON THE BED"]
    arrays, refs = [], []
    for i in range(n):
        text = rng.choice(texts)
        pos = rng.choice([i for i, ch in enumerate(text) if ch != " "])
        wrong = rng.choice([c for c in "BCDFGKPT" if c != text[pos]])
        arrays.append(spell(text, {pos: (wrong, 0.4)}, seed=i).numpy())
        refs.append(text)
    return arrays, refs


@pytest.mark.parametrize("method", ["grid", "coordinate"])
def test_tuning_finds_weights_that_help(cat_lm, method):
    arrays, refs = dev_set()
    decoder = BeamSearchDecoder(VOCAB, FS, beam_size=16, lm=cat_lm)
    seen = []
    result = tune_lm(arrays, refs, decoder, alphas=(0.0, 0.5, 1.0, 2.0),
                     betas=(0.0, 1.0, 2.0), method=method, progress=seen.append)
    assert {t.unk_offset for t in result.trials} == {decoder.unk_offset}  # not tuned
    trials = {(a, b): w for a, b, _, w in result.trials}
    assert seen == list(result.trials)
    assert result.wer == min(trials.values()) and result.wer == trials[result.alpha, result.beta]
    assert result.alpha > 0 and result.wer < 0.05
    if method == "grid":
        assert len(trials) == 12 and result.wer < trials[0.0, 0.0]


@pytest.mark.parametrize("method", ["grid", "coordinate"])
def test_tuning_the_unknown_word_offset(cat_lm, method):
    arrays, refs = dev_set()
    decoder = BeamSearchDecoder(VOCAB, FS, beam_size=16, lm=cat_lm)
    result = tune_lm(arrays, refs, decoder, alphas=(0.0, 1.0), betas=(0.0, 1.0),
                     method=method, unk_offsets=(0.0, -5.0, -10.0))
    best = min(result.trials, key=lambda t: t.wer)
    assert result.wer == best.wer
    assert result.unk_offset in (0.0, -5.0, -10.0)
    again = decoder.reweighted(result.alpha, result.beta, result.unk_offset)
    batch = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(x) for x in arrays],
                                            batch_first=True)
    hyps = again.decode(batch, torch.tensor([len(x) for x in arrays]))
    assert word_errors([VOCAB.normalize(r) for r in refs], [h.text for h in hyps]).rate \
        == result.wer  # the setting reported is the one that scored
    if method == "grid":
        assert len(result.trials) == 12


def test_decoding_config_round_trip(tmp_path, cat_lm):
    path = tmp_path / "conf" / "decoding.json"
    save_decoding_config(path, {"decoder": "beam", "beam_size": 8, "lm": str(cat_lm),
                                "alpha": 0.7, "beta": 1.5, "hotwords": ("NEW YORK",)},
                         {"wer": 0.1})
    options = load_decoding_config(path)
    assert options == {"decoder": "beam", "beam_size": 8, "lm": str(cat_lm.resolve()),
                       "alpha": 0.7, "beta": 1.5, "hotwords": ["NEW YORK"]}
    kind = options.pop("decoder")
    decoder = make_decoder(kind, VOCAB, FS, **options)
    assert (decoder.beam_size, decoder.alpha, decoder.beta) == (8, 0.7, 1.5)


def test_bad_decoding_configs(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_decoding_config(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ConfigError, match="not a decoding config"):
        load_decoding_config(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text(json.dumps({"decoder": "beam", "beam_width": 3}))
    with pytest.raises(ConfigError, match="beam_width"):
        load_decoding_config(tmp_path / "odd.json")


def test_bad_input_is_a_decoding_error(tmp_path, cat_lm):
    lp = spell("HI")
    nan = lp.clone()
    nan[1, 3] = float("nan")
    bad_arpa = tmp_path / "bad.arpa"
    bad_arpa.write_text(cat_lm.read_text().replace("\\2-grams:", "\\9-grams:"))
    cases = [
        lambda: decode(nan),
        lambda: decode(lp[None, None]),  # 4-D
        lambda: decode(lp[:, :10]),  # another vocabulary
        lambda: decode(lp.T),  # (vocab, frames) layout
        lambda: BeamSearchDecoder(VOCAB, FS, lexicon=tmp_path / "missing.txt"),
        lambda: BeamSearchDecoder(VOCAB, FS, lexicon=["ÉTÉ"]),  # nothing spellable
        lambda: BeamSearchDecoder(VOCAB, FS, lm=bad_arpa),
        lambda: BeamSearchDecoder(VOCAB, FS, lm=tmp_path / "missing.arpa"),
        lambda: BeamSearchDecoder(VOCAB, FS, hotwords=["ÆSIR"]),
        lambda: BeamSearchDecoder(VOCAB, FS, beam_size=0),
        lambda: BeamSearchDecoder(VOCAB, FS, beam_size=4, nbest=5),
        lambda: BeamSearchDecoder(VOCAB, FS, lm=cat_lm, alpha=float("nan")),
        lambda: make_decoder("greedy", VOCAB, FS, lm=str(cat_lm)),
        lambda: tune_lm([lp.numpy()], ["HI"], BeamSearchDecoder(VOCAB, FS)),  # no LM
    ]
    for case in cases:
        with pytest.raises(DecodingError):
            case()
    with pytest.raises(DecodingError, match=r"bad\.arpa:\d+"):
        BeamSearchDecoder(VOCAB, FS, lm=bad_arpa)


def test_empty_utterance():
    hyp = decode(torch.zeros(0, len(VOCAB)))[0]
    assert (hyp.text, hyp.tokens, hyp.am_score) == ("", (), 0.0)


def test_cli_lm_tune(tmp_path, cat_lm):
    from asrkit.audio import write_audio
    from asrkit.asr.checkpoint import save_model
    from asrkit.cli import lm as lm_cli
    from asrkit.manifest import Utterance, write_manifest
    from asrkit.asr.model import AsrModel, ModelConfig

    torch.manual_seed(0)
    save_model(tmp_path / "model.pt", AsrModel(VOCAB, ModelConfig(layers=1, hidden=8)))
    rng = np.random.default_rng(0)
    utts = []
    for i, text in enumerate(["THE CAT SAT", "A DOG RAN TO A HOUSE", "THE BED"]):
        write_audio(tmp_path / f"u{i}.wav", 0.1 * rng.standard_normal(8000 + 2000 * i))
        utts.append(Utterance(f"u{i}", str(tmp_path / f"u{i}.wav"), text))
    write_manifest(tmp_path / "dev.jsonl", utts)
    app = typer.Typer()
    app.add_typer(lm_cli.app, name="lm")
    out = tmp_path / "decoding.json"
    result = CliRunner().invoke(app, [
        "lm", "tune", str(tmp_path / "model.pt"), str(tmp_path / "dev.jsonl"), "--lm",
        str(cat_lm), "--out", str(out), "--beam-size", "4", "--alphas", "0,0.5",
        "--betas", "0,1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["utterances"] == 3 and len(summary["trials"]) == 4
    assert {t["unk_offset"] for t in summary["trials"]} == {summary["unk_offset"]}
    options = load_decoding_config(out)
    assert options["decoder"] == "beam" and options["beam_size"] == 4
    assert (options["alpha"], options["beta"]) == (summary["alpha"], summary["beta"])
    assert options["lm"] == str(cat_lm.resolve())
    bad = CliRunner().invoke(app, ["lm", "tune", str(tmp_path / "model.pt"),
                                   str(tmp_path / "dev.jsonl"), "--lm", str(tmp_path / "x.arpa")])
    assert bad.exit_code == 1 and "error:" in bad.output and "not found" in bad.output


def test_kenlm_words_the_lm_does_not_know_cost_the_offset(cat_lm):
    """With a KenLM model (no word list to spell against) each finished word the LM
    does not know adds ``alpha * unk_offset`` to a hypothesis's score, once."""
    pytest.importorskip("kenlm")
    lp = spell("THE CAT SAT ON THE ZEBRA")[None]
    ken = KenLMModel(cat_lm)
    assert ken.knows("CAT") and not ken.knows("ZEBRA")
    options = dict(alpha=0.8, beta=0.5, beam_size=8, nbest=1)
    plain = BeamSearchDecoder(VOCAB, FS, lm=ken, unk_offset=0.0, **options).decode(lp)[0]
    costly = BeamSearchDecoder(VOCAB, FS, lm=ken, unk_offset=-3.0, **options).decode(lp)[0]
    assert plain.text == costly.text == "THE CAT SAT ON THE ZEBRA"
    assert costly.score == pytest.approx(plain.score + 0.8 * -3.0, abs=1e-4)
