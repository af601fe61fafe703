"""The acoustic model and its files: shapes, padding, save/load, refusing bad files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from asrkit.asr.checkpoint import (FORMAT_VERSION, load_model, load_record, model_record,
                               save_model, save_record)
from asrkit.errors import ConfigError, ModelFileError
from asrkit.features import FeatureConfig
from asrkit.asr.model import AsrModel, ModelConfig, stack_frames
from asrkit.text import Vocabulary

VOCAB = Vocabulary(tuple(" ABC"))
FEATURES = FeatureConfig(n_mels=20)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def tiny_model(subsample: int = 2, seed: int = 0, kind: str = "fbank", **options) -> AsrModel:
    """``options``: more :class:`ModelConfig` fields (conv_channels, utterance_mean)."""
    torch.manual_seed(seed)
    features = FeatureConfig(kind=kind, n_mels=20, n_mfcc=10)
    model = AsrModel(VOCAB, ModelConfig(layers=2, hidden=16, dropout=0.1, subsample=subsample,
                                        **options), features)
    with torch.no_grad():  # non-trivial statistics, so the file must carry them
        model.normalizer.mean.uniform_(-3, 3)
        model.normalizer.std.uniform_(0.5, 2)
    return model.eval()


def waves(lengths, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    items = [torch.rand(n, generator=gen) - 0.5 for n in lengths]
    return (torch.nn.utils.rnn.pad_sequence(items, batch_first=True),
            torch.tensor(lengths))


LENGTHS = [16000, 9000, 4321, 600]
# Front ends: frame stacking, convolutions, each with per-utterance mean subtraction.
FRONT_ENDS = {"stack": {}, "conv": {"conv_channels": 3}, "stack-mean": {"utterance_mean": True},
              "conv-mean": {"conv_channels": 4, "utterance_mean": True}}


@pytest.mark.parametrize("front", FRONT_ENDS)
@pytest.mark.parametrize("subsample", [1, 2, 3])
def test_output_shapes(subsample, front):
    model = tiny_model(subsample, **FRONT_ENDS[front])
    x, lengths = waves(LENGTHS)
    log_probs, out_lengths = model(x, lengths)
    feature_frames = [FEATURES.num_frames(n) for n in LENGTHS]
    expected = [model.output_frames(f) for f in feature_frames]
    assert expected == [-(-f // subsample) for f in feature_frames]
    assert out_lengths.tolist() == expected
    assert log_probs.shape == (4, max(expected), len(VOCAB))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(4, max(expected)))
    assert model.frame_seconds == pytest.approx(subsample * 0.01)
    hidden, _ = model.encode(*model.features(x, lengths))
    assert hidden.shape == (4, max(expected), 2 * 16)


@pytest.mark.parametrize("front", FRONT_ENDS)
@pytest.mark.parametrize("subsample", [1, 2, 3])
def test_padded_batch_equals_single(subsample, front):
    model = tiny_model(subsample, **FRONT_ENDS[front])
    x, lengths = waves(LENGTHS, seed=1)
    with torch.no_grad():
        batch, out_lengths = model(x, lengths)
        for i, n in enumerate(LENGTHS):
            single, single_len = model(x[i:i + 1, :n])
            assert single_len.item() == out_lengths[i].item()
            torch.testing.assert_close(batch[i, :out_lengths[i]], single[0], atol=1e-5,
                                       rtol=1e-5)


def test_stack_frames():
    feats = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    stacked, lengths = stack_frames(feats, torch.tensor([5, 3]), 2)
    assert stacked.shape == (2, 3, 6) and lengths.tolist() == [3, 2]
    torch.testing.assert_close(stacked[0, 1], torch.cat([feats[0, 2], feats[0, 3]]))
    torch.testing.assert_close(stacked[0, 2], torch.cat([feats[0, 4], torch.zeros(3)]))
    same, same_lengths = stack_frames(feats, torch.tensor([5, 3]), 1)
    assert same is feats and same_lengths.tolist() == [5, 3]


def test_utterance_mean_ignores_level_and_padding():
    """With ``utterance_mean`` a constant gain (a shift of every log-mel) changes nothing,
    however much padding follows the utterance."""
    model = tiny_model(2, utterance_mean=True)
    x, lengths = waves([8000, 5000], seed=2)
    with torch.no_grad():
        feats, frames = model.features(x, lengths)
        a, _ = model.encode(feats, frames)
        b, _ = model.encode(torch.cat([feats + 1.5, feats[:, :7] - 9.0], 1), frames)
    n = model.output_frames(int(frames[1]))
    torch.testing.assert_close(a[0], b[0, :a.shape[1]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a[1, :n], b[1, :n], atol=1e-5, rtol=1e-5)


def test_conv_front_end_replaces_stacking():
    model = tiny_model(2, conv_channels=3)
    assert model.conv.output_dim == 3 * 5  # 20 mels halved twice
    assert model.lstm.forward_layers[0].input_size == 15
    assert tiny_model(2).conv is None


@pytest.mark.parametrize("config", [dict(subsample=4), dict(layers=0), dict(hidden=0),
                                    dict(dropout=1.0), dict(conv_channels=-1)])
def test_bad_model_configs(config):
    with pytest.raises(ConfigError):
        ModelConfig(**config)


# --- model files ---

@pytest.mark.parametrize("subsample,kind,front", [(1, "fbank", "stack"), (3, "mfcc", "stack"),
                                                  (2, "fbank", "conv-mean")])
def test_save_load_round_trip(tmp_path, subsample, kind, front):
    model = tiny_model(subsample, seed=3, kind=kind, **FRONT_ENDS[front])
    path = tmp_path / "m.pt"
    save_model(path, model, info={"note": "tiny", "epoch": 2})
    loaded = load_model(path)
    assert (loaded.vocab, loaded.config, loaded.feature_config) == \
        (model.vocab, model.config, model.feature_config)
    assert loaded.info == {"note": "tiny", "epoch": 2}
    assert not loaded.training
    x, lengths = waves(LENGTHS, seed=2)
    with torch.no_grad():
        a, la = model(x, lengths)
        b, lb = loaded(x, lengths)
    assert torch.equal(a, b) and torch.equal(la, lb)  # identical, not merely close


def test_load_from_a_training_folder(tmp_path):
    model = tiny_model()
    save_model(tmp_path / "best.pt", model)
    assert load_model(tmp_path).config == model.config
    (tmp_path / "best.pt").unlink()
    with pytest.raises(ModelFileError, match="no best.pt or last.pt"):
        load_model(tmp_path)


def test_the_file_is_plain_data(tmp_path):
    save_model(tmp_path / "m.pt", tiny_model())
    record = torch.load(tmp_path / "m.pt", weights_only=True)  # no pickled classes at all
    assert record["format_version"] == FORMAT_VERSION
    assert record["model_config"] == {"layers": 2, "hidden": 16, "dropout": 0.1,
                                      "subsample": 2, "conv_channels": 0,
                                      "utterance_mean": False, "cell": "lstm",
                                      "bidirectional": True, "lookahead": 0,
                                      "layer_norm": False, "forget_bias": 0.0,
                                      "recurrent_init": "default",
                                      "dropout_kind": "standard"}
    assert record["vocabulary"] == VOCAB.to_dict()


def test_files_from_before_the_front_end_options_load(tmp_path):
    """A model file whose config predates ``conv_channels`` and ``utterance_mean`` is a
    frame-stacking model without mean subtraction, as it was when written."""
    model = tiny_model()
    record = model_record(model)
    for key in ("conv_channels", "utterance_mean"):
        del record["model_config"][key]
    save_record(tmp_path / "old.pt", record)
    assert load_model(tmp_path / "old.pt").config == model.config


MARKER_CODE = "open({marker!r}, 'w').write('code ran')"


class _Payload:
    """Unpickling this runs code: what a malicious model file would carry."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return exec, (MARKER_CODE.format(marker=self.marker),)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    model = tiny_model()
    record = model_record(model)
    marker = tmp_path / "marker.txt"
    record["info"] = {"payload": _Payload(str(marker))}
    path = tmp_path / "evil.pt"
    torch.save(record, path)
    with pytest.raises(ModelFileError, match="refused"):
        load_model(path)
    assert not marker.exists()
    # The payload is real: unsafe loading would have run it.
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_plain_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "asrkit-model", "x": _Payload(str(marker))},
                                protocol=2))  # the legacy format torch.load still reads
    with pytest.raises(ModelFileError):
        load_model(path)
    assert not marker.exists()


def test_truncated_model_file(tmp_path):
    path = tmp_path / "m.pt"
    save_model(path, tiny_model())
    data = path.read_bytes()
    for keep in (0, 10, len(data) // 2, len(data) - 100):
        path.write_bytes(data[:keep])
        with pytest.raises(ModelFileError):
            load_model(path)


def test_newer_format_version(tmp_path):
    record = model_record(tiny_model())
    record["format_version"] = FORMAT_VERSION + 1
    save_record(tmp_path / "future.pt", record)
    with pytest.raises(ModelFileError, match="newer than this asrkit understands"):
        load_model(tmp_path / "future.pt")


@pytest.mark.parametrize("change", [
    lambda r: r.update(format="something-else"),
    lambda r: r.pop("vocabulary"),
    lambda r: r["state_dict"].pop("output.weight"),
    lambda r: r["model_config"].update(hidden=32),  # weights of another shape
    lambda r: r["model_config"].update(colour="red"),
    lambda r: r["model_config"].update(subsample=5),
])
def test_inconsistent_records(tmp_path, change):
    record = model_record(tiny_model())
    change(record)
    save_record(tmp_path / "m.pt", record)
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "m.pt")


def test_not_a_model_file(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "text.pt").write_text("hello")
    for name in ("other.pt", "array.npy", "text.pt", "missing.pt"):
        with pytest.raises(ModelFileError):
            load_record(tmp_path / name)
