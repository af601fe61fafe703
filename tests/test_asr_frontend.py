"""Search with an acoustic model as front end: embedder frames from its states,
candidate segments from its word alignment, and the model named + fingerprinted."""

import numpy as np
import pytest
import torch

from asrkit.search.asr_frontend import (AcousticModelRef, hidden_states, load_referenced,
                                      model_fingerprint, reference_model)
from asrkit.asr.checkpoint import save_model
from asrkit.search.embedder_training import TrainConfig, train_embedder
from asrkit.search.embedding import (AutoencoderConfig, Embedder, EmbedderConfig,
                              asr_frontend_config, load_embedder, save_embedder)
from asrkit.errors import ConfigError, ModelFileError
from asrkit.features import AugmentConfig, FeatureConfig
from asrkit.search.index import SearchIndex, add_to_index, build_index
from asrkit.manifest import Utterance
from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.search.query import load_query, search
from asrkit.search.segments import SegmentConfig
from asrkit.text import Vocabulary

from _speech import VOICES, make_archive, synth_word


def tiny_asr_model(path, seed):
    torch.manual_seed(seed)
    model = AsrModel(Vocabulary(list(" ABCDEFGHIJKLMNOPQRSTUVWXYZ")),
                     ModelConfig(layers=1, hidden=16, subsample=2),
                     FeatureConfig(n_mels=20)).eval()
    save_model(path, model)
    return model


def asr_embedder(front, seed=0):
    torch.manual_seed(seed)
    return Embedder(EmbedderConfig(front, AutoencoderConfig(
        input_dim=front.dim, stack=2, hidden=16, layers=1, dim=8, decoder_hidden=16))).eval()


def test_fingerprint_is_the_weights_not_the_file(tmp_path):
    a = tiny_asr_model(tmp_path / "a.pt", 0)
    b = tiny_asr_model(tmp_path / "b.pt", 1)
    assert model_fingerprint(a) != model_fingerprint(b)
    loaded, ref = reference_model(tmp_path / "a.pt")
    assert ref.fingerprint == model_fingerprint(a)
    assert ref.name == str((tmp_path / "a.pt").resolve())  # found again from anywhere
    _, bundled = reference_model("an4")
    assert bundled.name == "an4"


def test_states_batched_equal_one_by_one(one_thread):
    model, _ = reference_model("an4")
    waves = [synth_word(w) for w in ("basket", "umbrella", "go")]
    padded = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(w) for w in waves],
                                             batch_first=True)
    states, lengths = hidden_states(model, padded, torch.tensor([len(w) for w in waves]))
    assert states.shape[-1] == 2 * model.config.hidden
    for i, w in enumerate(waves):
        alone, n = hidden_states(model, torch.from_numpy(w).unsqueeze(0))
        assert int(n[0]) == int(lengths[i])
        assert torch.allclose(states[i, :lengths[i]], alone[0], atol=1e-4)


def test_asr_embedder_round_trips_and_embeds_batched_as_single(tmp_path, one_thread):
    front = asr_frontend_config("an4")
    assert front.asr_model == "an4" and front.asr_dim == 512 and front.frames_per_second == 50
    emb = asr_embedder(front)
    path = tmp_path / "e.pt"
    save_embedder(path, emb)
    payload = torch.load(path, weights_only=True)
    assert payload["config"]["frontend"]["asr_fingerprint"] == front.asr_fingerprint
    assert not any(k.startswith("frontend") for k in payload["state_dict"])  # model not copied
    back = load_embedder(path)
    assert back.config == emb.config and back.fingerprint() == emb.fingerprint()
    waves = [synth_word(w, v) for w in ("garden", "pocket", "window") for v in VOICES[:2]]
    together = back.embed_waves(waves)  # 6 > SMALL_BATCH: batched torch encoder
    alone = np.concatenate([back.embed_waves([w]) for w in waves])  # numpy encoder
    assert together.shape == (6, 8)
    assert np.allclose(together, alone, atol=1e-5)


def test_a_changed_or_missing_acoustic_model_is_refused(tmp_path):
    model_path = tmp_path / "am.pt"
    tiny_asr_model(model_path, 0)
    front = asr_frontend_config(model_path)
    save_embedder(tmp_path / "e.pt", asr_embedder(front))
    assert load_embedder(tmp_path / "e.pt").dim == 8
    tiny_asr_model(model_path, 1)  # same file name, other weights
    from asrkit.search.asr_frontend import _load
    _load.cache_clear()
    with pytest.raises(ModelFileError, match="changed"):
        load_embedder(tmp_path / "e.pt")
    model_path.unlink()
    _load.cache_clear()
    with pytest.raises(ModelFileError, match="cannot be loaded"):
        load_embedder(tmp_path / "e.pt")
    with pytest.raises(ConfigError):
        Embedder(EmbedderConfig(front.__class__(kind="asr"), AutoencoderConfig(input_dim=0)))


def test_ref_check_names_the_user():
    with pytest.raises(ModelFileError, match="this index"):
        load_referenced(AcousticModelRef("an4", "0" * 64), "this index")


FAST = TrainConfig(epochs=2, batch_size=8, windows_per_epoch=16, learning_rate=3e-3,
                   speed_factors=(0.9, 1.0, 1.1), augment=AugmentConfig(
                       freq_masks=1, freq_mask_width=4, time_masks=0, speed_factors=()))


def test_search_end_to_end_with_asr_frames_and_word_segments(tmp_path, one_thread):
    """Train a tiny asr-frame embedder, index an archive by recognised words, find a
    word cut from the archive; `add` reuses the stored settings."""
    words = ["umbrella", "garden", "basket", "window"]
    occ = make_archive(tmp_path / "archive", [words, words[::-1]], VOICES[0])
    more = make_archive(tmp_path / "more", [words[:2]], VOICES[1])
    front = asr_frontend_config("an4")
    model = EmbedderConfig(front, AutoencoderConfig(input_dim=front.dim, stack=2, hidden=16,
                                                    layers=1, dim=8, decoder_hidden=16))
    train_embedder(tmp_path / "e.pt", [], _word_utts(tmp_path, words), config=FAST,
                   embedder_config=model)
    config = SegmentConfig(kind="words", asr_model="an4")
    summary = build_index(tmp_path / "archive", tmp_path / "idx", tmp_path / "e.pt", config)
    assert summary.indexed == 2 and summary.total_segments > 0
    with SearchIndex(tmp_path / "idx") as idx:
        assert idx.segment_config.kind == "words" and idx.segment_config.asr_fingerprint
        assert idx.embedder.config.frontend.kind == "asr"
    target = occ[2]  # a word cut from the archive finds that word among the best hits
    query = load_query(target.file, target.start - 0.05, target.end + 0.05)
    hits = search(tmp_path / "idx", [query], top=3)[0]
    same_word = [o for o in occ if o.word == target.word]  # in either recording
    assert any(h.source == o.file.name and h.start < o.end and o.start < h.end
               for h in hits for o in same_word)
    extra = [Utterance("more.wav", str(more[0].file))]
    added = add_to_index(tmp_path / "idx", extra)
    assert added.indexed == 1 and added.segments > 0


def _word_utts(tmp_path, words):
    from asrkit.audio import write_audio
    utts = []
    for w in words:
        for v in VOICES[:2]:
            path = tmp_path / "words" / f"{w}_{v.replace('+', '_')}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_audio(path, synth_word(w, v))
            utts.append(Utterance(path.stem, str(path), w, speaker=v))
    return utts


def test_cli_trains_an_asr_embedder_and_builds_a_word_index(tmp_path, one_thread):
    from typer.testing import CliRunner
    from asrkit.cli import embedder as embedder_cli
    from asrkit.cli import index as index_cli
    make_archive(tmp_path / "archive", [["garden", "pocket"]], VOICES[0])
    runner = CliRunner()
    out = tmp_path / "e.pt"
    r = runner.invoke(embedder_cli.app, [
        "train", "--audio-dir", str(tmp_path / "archive"), "--out", str(out),
        "--features", "asr", "--asr-model", "an4", "--epochs", "1",
        "--windows-per-epoch", "8", "--batch-size", "4", "--hidden", "8", "--layers", "1",
        "--dim", "8"])
    assert r.exit_code == 0, r.output
    front = load_embedder(out).config.frontend
    assert (front.kind, front.asr_model) == ("asr", "an4")
    r = runner.invoke(index_cli.app, ["build", str(tmp_path / "archive"), "--out",
                                      str(tmp_path / "idx"), "--embedder", str(out),
                                      "--segments", "words", "--json"])
    assert r.exit_code == 0, r.output
    with SearchIndex(tmp_path / "idx") as idx:
        assert idx.segment_config.kind == "words" and idx.segment_config.asr_model == "an4"
    r = runner.invoke(embedder_cli.app, ["train", "--audio-dir", str(tmp_path / "archive"),
                                         "--out", str(out), "--asr-model", "an4"])
    assert r.exit_code == 2 and "--features asr" in r.output
    r = runner.invoke(index_cli.app, ["build", str(tmp_path / "archive"), "--out",
                                      str(tmp_path / "idx2"), "--segments", "phones"])
    assert r.exit_code == 2 and "segments.kind" in r.output


def test_an_index_refuses_a_changed_segment_model(tmp_path, one_thread):
    """The index records the word-segment model; `add` after it changed is refused."""
    from asrkit.search.asr_frontend import _load
    model_path = tmp_path / "am.pt"
    tiny_asr_model(model_path, 0)
    make_archive(tmp_path / "a", [["garden"]], VOICES[0])
    config = SegmentConfig(kind="both", asr_model=str(model_path))
    build_index(tmp_path / "a", tmp_path / "idx", segment_config=config)
    tiny_asr_model(model_path, 1)
    _load.cache_clear()
    more = make_archive(tmp_path / "b", [["pocket"]], VOICES[1])
    with pytest.raises(ModelFileError, match="changed"):
        add_to_index(tmp_path / "idx", [Utterance("b.wav", str(more[0].file))])
    with pytest.raises(ConfigError):  # resuming the build with the new model
        build_index(tmp_path / "a", tmp_path / "idx", segment_config=config)
