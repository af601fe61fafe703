"""Training really learns, resumes exactly, and excludes what CTC cannot align."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
import torch

from asrkit.asr.checkpoint import load_model, load_record
from asrkit.asr.config import load_config
from asrkit.asr.dataset import prepare_examples
from asrkit.errors import AsrkitError, ConfigError
from asrkit.asr.evaluation import validate
from asrkit.manifest import Utterance, read_manifest, write_manifest
from asrkit.asr.training import TrainCallbacks, train

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


# The last case: a first epoch in SortaGrad order, and locked dropout drawing its masks.
@pytest.mark.parametrize("ema,options", [
    (0.0, []), (0.9, []),
    (0.0, ["train.sortagrad=true", "model.dropout=0.2", "model.dropout_kind=locked"])])
def test_resume_equals_uninterrupted_run(corpus, tmp_path, ema, options):
    train_utts, valid_utts = corpus
    base = TINY + ["train.epochs=2", "train.checkpoint_every=100", f"train.ema={ema}", *options]
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


def test_init_with_a_changed_vocabulary_keeps_all_but_new_output_rows(corpus, tmp_path):
    from asrkit.asr.finetune import shared_rows
    train_utts, valid_utts = corpus
    cfg = load_config(None, TINY + ["train.max_steps=2"])
    train(train_utts, valid_utts, tmp_path / "src", cfg)
    source = load_model(tmp_path / "src" / "last.pt")
    # The new corpus writes its tones with one letter the source never saw.
    changed = [u.__class__(**{**u.__dict__, "text": u.text + " Z"}) for u in train_utts]
    # one step too small to move any weight beyond assert_close's tolerance
    start = load_config(None, TINY + ["train.max_steps=1", "train.lr=1e-12"])
    train(changed, valid_utts, tmp_path / "ft", start, init=tmp_path / "src" / "last.pt")
    tuned = load_model(tmp_path / "ft" / "last.pt")
    assert "Z" in tuned.vocab.symbols and "Z" not in source.vocab.symbols
    old, new = source.state_dict(), tuned.state_dict()
    for key, value in old.items():
        if not key.startswith("output."):
            torch.testing.assert_close(new[key], value)  # lower layers and statistics
    pairs = shared_rows(source.vocab, tuned.vocab)
    assert len(pairs) == len(source.vocab)  # every old symbol (and the blank) kept its row
    for new_id, old_id in pairs:
        torch.testing.assert_close(new["output.weight"][new_id], old["output.weight"][old_id])
        torch.testing.assert_close(new["output.bias"][new_id], old["output.bias"][old_id])


def test_freeze_epochs_leave_lower_layers_unchanged(corpus, tmp_path):
    train_utts, valid_utts = corpus
    train(train_utts, valid_utts, tmp_path / "src",
          load_config(None, TINY + ["train.max_steps=2"]))
    source = load_model(tmp_path / "src" / "last.pt").state_dict()
    cfg = load_config(None, TINY + ["train.max_steps=3", "train.freeze_epochs=1"])
    train(train_utts, valid_utts, tmp_path / "ft", cfg, init=tmp_path / "src" / "last.pt")
    tuned = load_record(tmp_path / "ft" / "last.pt")["state_dict"]
    for key, value in source.items():
        if key.startswith("output."):
            assert not torch.equal(tuned[key], value), key  # the output layer learned
        else:
            torch.testing.assert_close(tuned[key], value)


def test_init_refuses_a_different_architecture(corpus, tmp_path):
    train_utts, valid_utts = corpus
    train(train_utts, valid_utts, tmp_path / "src", load_config(None, TINY + ["train.max_steps=1"]))
    with pytest.raises(ConfigError, match="model.hidden"):
        train(train_utts, valid_utts, tmp_path / "ft",
              load_config(None, TINY + ["model.hidden=32"]), init=tmp_path / "src")


def test_init_takes_the_source_architecture_but_the_dropout_given():
    from asrkit.asr.finetune import init_config
    from asrkit.asr.model import AsrModel, ModelConfig
    from asrkit.features import FeatureConfig
    from asrkit.text import Vocabulary
    source = AsrModel(Vocabulary.from_texts(["AB"]), ModelConfig(layers=1, hidden=16),
                      FeatureConfig(n_mels=20))
    given = load_config(None, ["model.dropout=0.3", "model.dropout_kind=locked"])
    model = init_config(source, given).model
    assert (model.layers, model.hidden) == (1, 16)  # no weight changes shape
    assert (model.dropout, model.dropout_kind) == (0.3, "locked")
    assert init_config(source, load_config(None, [])).model == source.config
    with pytest.raises(ConfigError, match="model.cell"):
        init_config(source, load_config(None, ["model.cell=gru"]))


def test_corpus_weights_hold_in_expectation():
    from asrkit.asr.dataset import epoch_draws
    weights = [2.0] * 30 + [1.0] * 50 + [0.25] * 40
    counts = torch.zeros(len(weights))
    epochs = 400
    for epoch in range(epochs):
        for i in epoch_draws(weights, seed=3, epoch=epoch):
            counts[i] += 1
    per_utt = counts / epochs
    assert per_utt[:30].mean() == pytest.approx(2.0, abs=0.01)  # integral: exact
    assert per_utt[30:80].mean() == pytest.approx(1.0, abs=0.01)
    assert per_utt[80:].mean() == pytest.approx(0.25, abs=0.02)  # 16,000 Bernoulli draws
    assert epoch_draws(weights, 3, 5) == epoch_draws(weights, 3, 5)


@pytest.mark.parametrize("weights", [[1.0] * 120, [2.0] * 60 + [0.5] * 60])
def test_sortagrad_orders_the_first_epoch_shortest_first(weights):
    from asrkit.asr.dataset import epoch_batches
    gen = torch.Generator().manual_seed(0)
    durations = (1 + 9 * torch.rand(len(weights), generator=gen)).tolist()

    def lengths(batches):
        return [durations[i] for b in batches for i in b]

    sorted_first = epoch_batches(durations, weights, 30.0, 0, seed=4, sortagrad=True)
    shuffled_first = epoch_batches(durations, weights, 30.0, 0, seed=4)
    assert lengths(sorted_first) == sorted(lengths(sorted_first))
    assert lengths(shuffled_first) != sorted(lengths(shuffled_first))
    assert sorted(i for b in sorted_first for i in b) == \
        sorted(i for b in shuffled_first for i in b)  # the same draws, reordered
    assert all(max(durations[i] for i in b) * len(b) <= 30.0 for b in sorted_first)
    for epoch in (1, 2):  # later epochs are as without it
        assert epoch_batches(durations, weights, 30.0, epoch, seed=4, sortagrad=True) == \
            epoch_batches(durations, weights, 30.0, epoch, seed=4)


def test_two_corpora_validated_apart(corpus, tmp_path):
    from asrkit.asr.dataset import Corpus
    train_utts, valid_utts = corpus
    half = len(valid_utts) // 2
    cfg = load_config(None, TINY + ["train.epochs=1"])
    train([Corpus("a", tuple(train_utts[:48]), 2.0), Corpus("b", tuple(train_utts[48:]))],
          [Corpus("a", tuple(valid_utts[:half])), Corpus("b", tuple(valid_utts[half:]))],
          tmp_path, cfg)
    import json
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert set(row["corpora"]) == {"a", "b"}
    assert all(0 <= c["valid_wer"] for c in row["corpora"].values())


@pytest.mark.parametrize("select_by", ["cer", "loss"])
def test_best_model_is_the_epoch_select_by_names(corpus, tmp_path, select_by):
    """best.pt holds the epoch with the lowest validation CER (ties: loss) or loss, and
    early stopping counts epochs without improvement in that figure."""
    train_utts, valid_utts = corpus
    cfg = load_config(None, TINY + ["train.epochs=6", "train.patience=2",
                                    f"train.select_by={select_by}"])
    train(train_utts, valid_utts, tmp_path, cfg)
    state = load_record(tmp_path / "last.pt")["training"]["state"]
    history = state["history"]

    def key(row):
        return (row["valid_loss"],) if select_by == "loss" else (row["valid_cer"],
                                                                 row["valid_loss"])

    best = min(history, key=key)
    assert state["best_epoch"] == best["epoch"]
    assert state["bad_epochs"] == history[-1]["epoch"] - best["epoch"]
    assert len(history) == 6 or state["bad_epochs"] == 2  # ran out of epochs or of patience
    model = load_model(tmp_path / "best.pt")
    from asrkit.asr.training import _examples
    _, valid_ex, _ = _examples(model, cfg, train_utts, valid_utts)
    loss, cer, _ = validate(model, valid_ex, 30.0)
    assert (cer, loss) == pytest.approx((best["valid_cer"], best["valid_loss"]), rel=1e-4)


def test_select_by_other_than_wer_cer_loss_is_refused():
    with pytest.raises(ConfigError, match="select_by"):
        load_config(None, ["train.select_by=accuracy"])


def test_a_second_run_into_a_folder_in_use_is_refused(corpus, tmp_path):
    """Two runs into one --out would interleave checkpoints and metrics: while the first
    one runs, ``asrkit train`` into its folder stops with one line naming it; the first
    run ends as if alone."""
    out, manifests = tmp_path / "run", []
    for name, utts in zip(("train", "valid"), corpus):
        manifests.append(tmp_path / f"{name}.jsonl")
        write_manifest(manifests[-1], utts)
    started, go_on = threading.Event(), threading.Event()

    def hold(_summary):
        started.set()
        go_on.wait(60)

    config = load_config(None, TINY + ["train.epochs=1"])
    first = threading.Thread(target=train, args=(corpus[0], corpus[1], out, config),
                             kwargs=dict(callbacks=TrainCallbacks(on_start=hold)))
    first.start()
    try:
        assert started.wait(120)
        second = subprocess.run(
            [sys.executable, "-c", "from asrkit.cli.main import main; main()", "train",
             "--train", str(manifests[0]), "--valid", str(manifests[1]), "--out", str(out),
             *[arg for s in TINY for arg in ("--set", s)]],
            capture_output=True, text=True, timeout=300)
    finally:
        go_on.set()
        first.join()
    assert second.returncode == 1, second.stderr
    assert f"{out}: in use by another training run" in second.stderr
    assert "choose another --out" in second.stderr
    assert [json.loads(line)["epoch"] for line in open(out / "metrics.jsonl")] == [1]
    assert load_config(out / "config.yaml").train.epochs == 1  # the first run's settings
    train(corpus[0], corpus[1], out, load_config(None, TINY + ["train.epochs=2"]),
          resume=True)  # the lock ended with the run
