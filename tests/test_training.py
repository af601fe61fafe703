"""Training really learns, resumes exactly, and excludes what CTC cannot align."""

from __future__ import annotations

import pytest
import torch

from asrkit.asr.checkpoint import load_model, load_record
from asrkit.asr.config import load_config
from asrkit.asr.dataset import prepare_examples
from asrkit.errors import AsrkitError, ConfigError
from asrkit.asr.evaluation import validate
from asrkit.manifest import Utterance, read_manifest
from asrkit.asr.training import train

from tones import make_tone_corpus

TINY = ["model.layers=2", "model.hidden=48", "model.dropout=0.0", "features.n_mels=40",
        "train.batch_seconds=4", "train.warmup_steps=10", "train.lr=0.005",
        "train.threads=2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return (read_manifest(make_tone_corpus(root / "train", 96, seed=1)),
            read_manifest(make_tone_corpus(root / "valid", 16, seed=2, prefix="v")))


# The convolutions start from random filters: they leave the all-blank plateau later.
@pytest.mark.parametrize("front,epochs", [
    ([], 10), (["model.utterance_mean=true"], 10),
    (["model.conv_channels=8", "model.utterance_mean=true"], 30)],
    ids=["stacked-frames", "utterance-mean", "conv-utterance-mean"])
def test_tiny_model_learns_the_tone_language(corpus, tmp_path, front, epochs):
    train_utts, valid_utts = corpus
    cfg = load_config(None, TINY + front + [f"train.epochs={epochs}", "train.patience=40",
                                           "train.spec_augment=false",
                                           "train.speed_perturb=false"])
    result = train(train_utts, valid_utts, tmp_path / "run", cfg)
    model = load_model(tmp_path / "run")
    from asrkit.asr.training import _examples  # the same checked examples training used
    _, valid_ex, _ = _examples(model, cfg, train_utts, valid_utts)
    _, cer, wer = validate(model, valid_ex, 30.0)
    # Chance is a CER near 100 %; the model has to hear which tone is which.
    assert cer < 0.15, cer
    assert result.best_wer == pytest.approx(wer)
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == result.epochs_run


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_equals_uninterrupted_run(corpus, tmp_path, ema):
    train_utts, valid_utts = corpus
    base = TINY + ["train.epochs=2", "train.checkpoint_every=100", f"train.ema={ema}"]
    # 30 steps straight through an epoch boundary (17 batches an epoch) ...
    train(train_utts, valid_utts, tmp_path / "a", load_config(None, base + ["train.max_steps=30"]))
    # ... equal 11 steps, a stop, then a resumed run to step 30.
    train(train_utts, valid_utts, tmp_path / "b", load_config(None, base + ["train.max_steps=11"]))
    train(train_utts, valid_utts, tmp_path / "b", load_config(None, base + ["train.max_steps=30"]),
          resume=True)
    a, b = load_record(tmp_path / "a" / "last.pt"), load_record(tmp_path / "b" / "last.pt")
    assert a["training"]["state"]["step"] == b["training"]["state"]["step"] == 30
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], rtol=1e-5, atol=1e-6)
    assert ("ema" in a["training"]) == bool(ema)
    for key, value in a["training"].get("ema", {}).items():
        torch.testing.assert_close(value, b["training"]["ema"][key], rtol=1e-5, atol=1e-6)


def test_best_model_holds_the_averaged_weights(corpus, tmp_path):
    train_utts, valid_utts = corpus
    train(train_utts, valid_utts, tmp_path, load_config(None, TINY + ["train.epochs=1",
                                                                      "train.ema=0.9"]))
    last = load_record(tmp_path / "last.pt")
    best = load_record(tmp_path / "best.pt")["state_dict"]  # the first epoch always improves
    averaged = {k.removeprefix("module."): v for k, v in last["training"]["ema"].items()}
    assert best.keys() <= averaged.keys()
    for key, value in best.items():
        torch.testing.assert_close(value, averaged[key].to(value.dtype))
    assert not torch.equal(best["output.weight"], last["state_dict"]["output.weight"])
    # The Python API draws the training curve itself, as `asrkit train` shows it.
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_refuses_a_different_experiment(corpus, tmp_path):
    train_utts, valid_utts = corpus
    train(train_utts, valid_utts, tmp_path, load_config(None, TINY + ["train.max_steps=1"]))
    with pytest.raises(ConfigError, match="model.hidden"):
        train(train_utts, valid_utts, tmp_path,
              load_config(None, TINY + ["model.hidden=32", "train.max_steps=2"]), resume=True)
    with pytest.raises(AsrkitError, match="--resume"):
        train(train_utts, valid_utts, tmp_path, load_config(None, TINY))


def test_unalignable_and_unknown_utterances_are_excluded_not_zeroed(corpus):
    train_utts, _ = corpus
    from asrkit.text import Vocabulary
    vocab = Vocabulary.from_texts(["ABCD "])
    too_long = Utterance("long", train_utts[0].audio, "ABABABABABABABABABABABABABABAB" * 4)
    unknown = Utterance("unk", train_utts[0].audio, "ABX")
    missing = Utterance("gone", "/nonexistent/x.wav", "AB")
    examples, skipped = prepare_examples([train_utts[0], too_long, unknown, missing], vocab,
                                         lambda seconds: int(seconds * 50))
    assert [e.utt.id for e in examples] == [train_utts[0].id]
    reasons = {s.id: s.reason for s in skipped}
    assert "cannot fit" in reasons["long"]
    assert "'X'" in reasons["unk"]
    assert "no such file" in reasons["gone"]
