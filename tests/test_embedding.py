import numpy as np
import pytest
import torch

from asrkit.search.embedder_training import (TrainConfig, checkpoint_path,
                                      supervised_contrastive_loss, train_embedder)
from asrkit.search.embedding import (AutoencoderConfig, Embedder, EmbedderConfig, load_embedder,
                              save_embedder)
from asrkit.errors import ConfigError, ModelFileError
from asrkit.features import AugmentConfig
from asrkit.manifest import Utterance
from asrkit.audio import write_audio
from asrkit.search.evaluation import evaluate_embeddings, load_word_segments

from _speech import VOICES, synth_word

TINY = EmbedderConfig(autoencoder=AutoencoderConfig(hidden=24, layers=1, dim=16,
                                                    decoder_hidden=24))


def tiny_embedder(seed=0):
    torch.manual_seed(seed)
    return Embedder(TINY).eval()


def word_files(tmp_path, words, voices):
    utts = []
    for w in words:
        for v in voices:
            path = tmp_path / f"{w}_{v.replace('+', '_')}.wav"
            write_audio(path, synth_word(w, v))
            utts.append(Utterance(path.stem, str(path), w, speaker=v))
    return utts


def test_embeddings_are_unit_vectors_of_the_configured_size():
    emb = tiny_embedder()
    seqs = [torch.randn(n, 40) for n in (7, 30, 64)]
    out = emb.embed_frames(seqs)
    assert out.shape == (3, 16) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
def test_batched_equals_one_by_one(layers):
    """Batches run in torch, single queries in the numba encoder: same vectors."""
    torch.manual_seed(0)
    emb = Embedder(EmbedderConfig(autoencoder=AutoencoderConfig(
        hidden=24, layers=layers, dim=16, decoder_hidden=24)))
    seqs = [torch.randn(n, 40) for n in (1, 5, 17, 33, 80, 41)]
    together = emb.embed_frames(seqs)
    alone = np.concatenate([emb.embed_frames([s]) for s in seqs])
    assert np.allclose(together, alone, atol=1e-5)


def test_spans_cut_the_recording_features():
    emb = tiny_embedder()
    wave = synth_word("tomorrow")
    feats = emb.features(wave)
    spans = [(0.0, 0.3), (0.1, 0.5)]
    direct = emb.embed_frames([feats[0:30], feats[10:50]])
    assert np.allclose(emb.embed_spans(feats, spans), direct, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    emb = tiny_embedder()
    path = tmp_path / "e.pt"
    save_embedder(path, emb, {"note": "test"})
    payload = torch.load(path, weights_only=True)  # no pickled code inside
    assert payload["format"] == "asrkit-embedder" and payload["info"] == {"note": "test"}
    back = load_embedder(path)
    assert back.config == emb.config and back.fingerprint() == emb.fingerprint()
    seqs = [torch.randn(20, 40)]
    assert np.allclose(back.embed_frames(seqs), emb.embed_frames(seqs))


def test_fingerprint_changes_with_the_weights():
    assert tiny_embedder(0).fingerprint() != tiny_embedder(1).fingerprint()


@pytest.mark.parametrize("version, loads", [(0, True), (1, True), (2, False), ("1", False)])
def test_embedder_versions_follow_the_model_file_rule(tmp_path, version, loads):
    """As model files: this version or older loads, a newer one is refused."""
    path = tmp_path / "e.pt"
    save_embedder(path, tiny_embedder())
    torch.save({**torch.load(path, weights_only=True), "version": version}, path)
    if loads:
        assert load_embedder(path).fingerprint() == tiny_embedder().fingerprint()
    else:
        with pytest.raises(ModelFileError, match="upgrade asrkit|not a number"):
            load_embedder(path)


def test_bad_embedder_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError):
        load_embedder(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ModelFileError):
        load_embedder(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError):
        load_embedder(tmp_path / "other.pt")
    path = tmp_path / "e.pt"
    save_embedder(path, tiny_embedder())
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(ModelFileError):
        load_embedder(tmp_path / "future.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ModelFileError):
        load_embedder(truncated)


def test_mismatched_sizes_are_a_config_error():
    with pytest.raises(ConfigError):
        Embedder(EmbedderConfig(autoencoder=AutoencoderConfig(input_dim=13)))


def test_contrastive_loss_prefers_grouped_embeddings():
    groups = torch.tensor([0, 1, 2, 0, 1, 2])
    base = torch.eye(3, 8)
    grouped = torch.cat([base, base + 0.01])
    mixed = torch.cat([base, base[[1, 2, 0]]])
    assert (supervised_contrastive_loss(grouped, groups, 0.1)
            < supervised_contrastive_loss(mixed, groups, 0.1))


FAST = TrainConfig(epochs=2, batch_size=8, windows_per_epoch=16, learning_rate=3e-3,
                   speed_factors=(0.9, 1.0, 1.1), augment=AugmentConfig(
                       freq_masks=1, freq_mask_width=4, time_masks=0, speed_factors=()))


def test_resume_equals_uninterrupted_training(tmp_path):
    utts = word_files(tmp_path, ["garden", "pocket"], VOICES[:2])
    full = train_embedder(tmp_path / "full.pt", utts, config=FAST, embedder_config=TINY)
    one = train_embedder(tmp_path / "part.pt", utts, config=TrainConfig(**{
        **FAST.__dict__, "epochs": 1}), embedder_config=TINY)
    assert checkpoint_path(tmp_path / "part.pt").exists()
    resumed = train_embedder(tmp_path / "part.pt", utts, config=FAST, embedder_config=TINY,
                             resume=True)
    assert one.fingerprint() != full.fingerprint()
    assert resumed.fingerprint() == full.fingerprint()
    assert len(resumed.info["history"]) == 2


def test_resume_with_other_settings_is_refused(tmp_path):
    utts = word_files(tmp_path, ["garden"], VOICES[:1])
    train_embedder(tmp_path / "e.pt", utts, config=FAST, embedder_config=TINY)
    other = TrainConfig(**{**FAST.__dict__, "learning_rate": 1e-2})
    with pytest.raises(ConfigError):
        train_embedder(tmp_path / "e.pt", utts, config=other, embedder_config=TINY,
                       resume=True)


def test_tiny_labelled_model_learns_to_tell_words_apart(tmp_path):
    """Four words in three voices: after a short training the words of three other,
    unseen voices are told apart better than by an untrained model (same-different AP
    over all pairs: with two test voices an untrained model already ranked perfectly)."""
    words = ["umbrella", "basket", "window", "yellow"]
    train = word_files(tmp_path, words, VOICES[:3])
    test = load_word_segments(word_files(tmp_path / "test", words, VOICES[3:6]))
    config = TrainConfig(epochs=12, batch_size=12, windows_per_epoch=48, learning_rate=5e-3,
                         speed_factors=(0.9, 1.0, 1.1), reconstruction_weight=0.2,
                         augment=FAST.augment)
    model_config = EmbedderConfig(autoencoder=AutoencoderConfig(hidden=48, layers=1,
                                                                dim=32, decoder_hidden=48))
    torch.manual_seed(0)
    before = evaluate_embeddings(Embedder(model_config), test).average_precision
    trained = train_embedder(tmp_path / "e.pt", words=train, config=config,
                             embedder_config=model_config)
    after = evaluate_embeddings(trained, test).average_precision
    history = trained.info["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert after > max(before, 0.9)


def test_cli_train_then_eval(tmp_path):
    import json
    from typer.testing import CliRunner
    from asrkit.cli.embedder import app
    from asrkit.manifest import write_manifest
    utts = word_files(tmp_path / "words", ["garden", "pocket"], VOICES[:2])
    write_manifest(tmp_path / "words.jsonl", utts)
    runner = CliRunner()
    out = tmp_path / "e.pt"
    r = runner.invoke(app, ["train", "--audio-dir", str(tmp_path / "words"), "--out", str(out),
                            "--epochs", "1", "--windows-per-epoch", "16", "--batch-size", "8",
                            "--hidden", "16", "--layers", "1", "--dim", "8"])
    assert r.exit_code == 0, r.output
    assert load_embedder(out).dim == 8
    r = runner.invoke(app, ["eval", str(tmp_path / "words.jsonl"), "--embedder", str(out),
                            "--json"])
    assert r.exit_code == 0, r.output
    results = json.loads(r.stdout)
    assert [x["method"] for x in results] == ["embedding", "dtw"]
    assert all(x["queries"] == 4 for x in results)
    r = runner.invoke(app, ["train", "--out", str(out)])
    assert r.exit_code == 2 and "error:" in r.output  # no training audio given


def test_channel_copies_are_seeded_views_through_other_channels(tmp_path):
    """Each recording gains its copies after the clean speeds; a copy is the recording at
    one of the speeds, changed (noise, room or band limit), and the same seed makes the
    same copies."""
    from asrkit.search.embedder_training import TrainingMaterial
    from asrkit.search.segments import TRAINING_WINDOWS
    utts = word_files(tmp_path, ["garden", "pocket"], VOICES[:1])
    from dataclasses import replace
    config = TrainConfig(**{**FAST.__dict__, "channel_copies": 3,
                            "augment": replace(TrainConfig().augment, noise_prob=1.0)})
    material = TrainingMaterial(tiny_embedder(), utts, [], config, TRAINING_WINDOWS)
    again = TrainingMaterial(tiny_embedder(), utts, [], config, TRAINING_WINDOWS)
    speeds = len(config.speed_factors)
    for feats, rates, other in zip(material.feats, material.rates, again.feats):
        assert len(feats) == len(rates) == speeds + 3
        assert rates[:speeds] == list(config.speed_factors)
        clean = dict(zip(rates[:speeds], feats[:speeds]))
        for copy, rate in zip(feats[speeds:], rates[speeds:]):
            assert rate in clean and copy.shape == clean[rate].shape
            assert not torch.allclose(copy, clean[rate], atol=1e-3)
        assert all(torch.equal(a, b) for a, b in zip(feats, other))
    without = TrainingMaterial(tiny_embedder(), utts, [], FAST, TRAINING_WINDOWS)
    assert [len(f) for f in without.feats] == [speeds] * len(utts)


def test_cli_trains_with_channel_copies(tmp_path):
    from typer.testing import CliRunner
    from asrkit.cli.embedder import app
    word_files(tmp_path / "words", ["garden", "pocket"], VOICES[:2])
    out = tmp_path / "e.pt"
    r = CliRunner().invoke(app, ["train", "--audio-dir", str(tmp_path / "words"), "--out",
                                 str(out), "--epochs", "1", "--windows-per-epoch", "16",
                                 "--batch-size", "8", "--hidden", "16", "--layers", "1",
                                 "--dim", "8", "--channel-copies", "2"])
    assert r.exit_code == 0, r.output
    assert load_embedder(out).info["train_config"]["channel_copies"] == 2
    bad = CliRunner().invoke(app, ["train", "--audio-dir", str(tmp_path / "words"), "--out",
                                   str(out), "--channel-copies", "-1"])
    assert bad.exit_code == 2
