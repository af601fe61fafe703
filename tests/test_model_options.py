"""The recurrent-stack options of ModelConfig: cell, direction, lookahead, layer norm,
initialisation and locked dropout — shapes, padding, files, and refusing bad
combinations. The defaults are the BiLSTM of old model files (see test_compat)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asrkit.asr.checkpoint import load_model, load_record, model_record, save_model, save_record
from asrkit.asr.config import load_config
from asrkit.asr.model import AsrModel, LockedDropout, ModelConfig, RowConvolution
from asrkit.errors import ConfigError
from asrkit.features import FeatureConfig, frame_mask
from asrkit.text import Vocabulary
from test_model import waves  # padded random waveforms, shared with the model tests

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest

VOCAB = Vocabulary(tuple(" ABC"))
FEATURES = FeatureConfig(n_mels=20)
HIDDEN = 16
LENGTHS = [16000, 9000, 4321, 600]
OPTIONS = {
    "gru": dict(cell="gru"),
    "forward": dict(bidirectional=False),
    "forward-lookahead": dict(bidirectional=False, lookahead=3),
    "layer-norm": dict(layer_norm=True),
    "gru-forward-lookahead-norm": dict(cell="gru", bidirectional=False, lookahead=2,
                                       layer_norm=True),
    "locked-dropout": dict(dropout_kind="locked", dropout=0.3),
    "orthogonal-forget-bias": dict(recurrent_init="orthogonal", forget_bias=1.0),
}


def tiny_model(seed: int = 0, subsample: int = 2, **options) -> AsrModel:
    torch.manual_seed(seed)
    settings = dict(layers=2, hidden=HIDDEN, dropout=0.1, subsample=subsample)
    model = AsrModel(VOCAB, ModelConfig(**{**settings, **options}), FEATURES)
    with torch.no_grad():  # non-trivial statistics, so the file must carry them
        model.normalizer.mean.uniform_(-3, 3)
        model.normalizer.std.uniform_(0.5, 2)
        if model.row_conv is not None:  # a new one is the identity: give the future a say
            model.row_conv.conv.weight.uniform_(-1, 1)
    return model.eval()


@pytest.mark.parametrize("name", OPTIONS)
def test_output_shapes(name):
    model = tiny_model(**OPTIONS[name])
    x, lengths = waves(LENGTHS)
    with torch.no_grad():
        log_probs, out_lengths = model(x, lengths)
        hidden, _ = model.encode(*model.features(x, lengths))
    expected = [model.output_frames(FEATURES.num_frames(n)) for n in LENGTHS]
    assert out_lengths.tolist() == expected
    assert log_probs.shape == (4, max(expected), len(VOCAB))
    directions = 2 if model.config.bidirectional else 1
    assert hidden.shape == (4, max(expected), directions * HIDDEN)
    assert model.output.in_features == directions * HIDDEN
    assert len(model.lstm.backward_layers) == (2 if directions == 2 else 0)
    cell = torch.nn.GRU if model.config.cell == "gru" else torch.nn.LSTM
    assert all(type(m) is cell for m in model.lstm.forward_layers)


@pytest.mark.parametrize("name", OPTIONS)
def test_padded_batch_equals_single(name):
    model = tiny_model(**OPTIONS[name])
    x, lengths = waves(LENGTHS, seed=1)
    with torch.no_grad():
        batch, out_lengths = model(x, lengths)
        for i, n in enumerate(LENGTHS):
            single, single_len = model(x[i:i + 1, :n])
            assert single_len.item() == out_lengths[i].item()
            torch.testing.assert_close(batch[i, :out_lengths[i]], single[0], atol=1e-5,
                                       rtol=1e-5)


@pytest.mark.parametrize("lookahead", [0, 3])
def test_forward_model_hears_only_lookahead_frames_ahead(lookahead):
    """Changing feature frames from ``k`` on leaves every output before ``k - lookahead``
    as it was (one feature frame is one model frame with subsample=1)."""
    model = tiny_model(subsample=1, bidirectional=False, lookahead=lookahead)
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(1, 40, FEATURES.dim, generator=gen)
    changed = feats.clone()
    changed[:, 25:] += 1.0
    with torch.no_grad():
        a, _ = model.forward_features(feats, torch.tensor([40]))
        b, _ = model.forward_features(changed, torch.tensor([40]))
    k = 25 - lookahead
    torch.testing.assert_close(a[:, :k], b[:, :k], atol=0, rtol=0)
    assert not torch.allclose(a[:, k], b[:, k])


def test_row_convolution_weighs_each_feature_over_the_next_frames():
    row = RowConvolution(3, lookahead=2)
    with torch.no_grad():
        row.conv.weight.copy_(torch.tensor([[[1.0, 10, 100]], [[0, 0, 1]], [[2, 0, 0]]]))
    x = torch.arange(1.0, 6.0)[None, :, None].repeat(1, 1, 3)  # (1, 5, 3): frame t holds t+1
    valid = frame_mask(x, torch.tensor([4]))  # the fifth frame is padding
    y = row(x, valid)[0]
    assert y[:, 0].tolist() == [321.0, 432.0, 43.0, 4.0, 0.0]  # no frame past the end
    assert y[:, 1].tolist() == [3.0, 4.0, 0.0, 0.0, 0.0]
    assert y[:, 2].tolist() == [2.0, 4.0, 6.0, 8.0, 0.0]


def test_a_new_row_convolution_passes_each_frame_through():
    row = RowConvolution(4, lookahead=3)
    x = torch.randn(2, 7, 4)
    valid = frame_mask(x, torch.tensor([7, 5]))
    expected = x * valid[:, :, None]
    torch.testing.assert_close(row(x, valid), expected, atol=0, rtol=0)


def test_layer_norm_normalises_each_recurrent_layer():
    model = tiny_model(layer_norm=True, bidirectional=False)
    assert len(model.lstm.norms) == 2
    feats = torch.randn(2, 30, FEATURES.dim)
    with torch.no_grad():
        hidden, _ = model.encode(feats, torch.tensor([30, 30]))
    # fresh LayerNorms are the identity affine map: zero mean, unit variance per frame
    torch.testing.assert_close(hidden.mean(-1), torch.zeros(2, 15), atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden.var(-1, unbiased=False), torch.ones(2, 15), atol=1e-3,
                               rtol=0)


def test_locked_dropout_shares_one_mask_over_time():
    drop = LockedDropout(0.5).train()
    torch.manual_seed(0)
    y = drop(torch.ones(3, 50, 64))
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(y, y[:, :1].expand_as(y))  # each frame of a sequence alike
    assert not torch.equal(y[0, 0], y[1, 0])  # a mask per sequence
    x = torch.randn(3, 50, 64)
    assert torch.equal(drop.eval()(x), x)


def test_locked_dropout_in_a_training_model_masks_whole_sequences():
    model = tiny_model(dropout_kind="locked", dropout=0.5).train()
    seen = []
    model.lstm.forward_layers[1].register_forward_hook(lambda m, i, o: seen.append(i[0]))
    model.forward_features(torch.randn(2, 30, FEATURES.dim), torch.tensor([30, 30]))
    dropped = seen[0] == 0  # (batch, frames, features) input of the second layer
    assert dropped.any() and torch.equal(dropped, dropped[:, :1].expand_as(dropped))


def test_orthogonal_init_and_forget_bias():
    model = tiny_model(recurrent_init="orthogonal", forget_bias=1.0)
    layers = [*model.lstm.forward_layers, *model.lstm.backward_layers]
    for layer in layers:
        for block in layer.weight_hh_l0.detach().split(HIDDEN):  # input, forget, cell, output
            torch.testing.assert_close(block @ block.T, torch.eye(HIDDEN), atol=1e-5, rtol=0)
        forget = layer.bias_ih_l0[HIDDEN:2 * HIDDEN] + layer.bias_hh_l0[HIDDEN:2 * HIDDEN]
        assert torch.equal(forget, torch.ones(HIDDEN))
    gru = tiny_model(cell="gru", recurrent_init="orthogonal").lstm.forward_layers[0]
    for block in gru.weight_hh_l0.detach().split(HIDDEN):  # reset, update, new
        torch.testing.assert_close(block @ block.T, torch.eye(HIDDEN), atol=1e-5, rtol=0)


def test_defaults_are_the_old_bilstm():
    """Spelled-out defaults build the model they always built: same weights from the
    same seed and the parameter names and shapes of a file written before the options."""
    explicit = ModelConfig(cell="lstm", bidirectional=True, lookahead=0, layer_norm=False,
                           forget_bias=0.0, recurrent_init="default", dropout_kind="standard")
    assert explicit == ModelConfig()
    old = load_record(Path(__file__).parent / "fixtures" / "premove" / "model.pt")
    assert not {"cell", "bidirectional", "lookahead"} & set(old["model_config"])
    model = AsrModel(Vocabulary.from_dict(old["vocabulary"]),
                     ModelConfig(**old["model_config"]), FeatureConfig(**old["feature_config"]))
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in old["state_dict"].items()}
    assert model.row_conv is None and model.lstm.norms is None


# --- model files and configs ---

@pytest.mark.parametrize("name", ["gru-forward-lookahead-norm", "orthogonal-forget-bias",
                                  "locked-dropout"])
def test_save_load_round_trip(tmp_path, name):
    model = tiny_model(seed=3, **OPTIONS[name])
    save_model(tmp_path / "m.pt", model)
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.config == model.config
    x, lengths = waves(LENGTHS, seed=2)
    with torch.no_grad():
        a, la = model(x, lengths)
        b, lb = loaded(x, lengths)
    assert torch.equal(a, b) and torch.equal(la, lb)


def test_files_from_before_the_recurrent_options_load_as_bilstm(tmp_path):
    record = model_record(tiny_model())
    for key in ("cell", "bidirectional", "lookahead", "layer_norm", "forget_bias",
                "recurrent_init", "dropout_kind"):
        del record["model_config"][key]
    save_record(tmp_path / "old.pt", record)
    assert load_model(tmp_path / "old.pt").config == tiny_model().config


def test_config_file_sets_every_option(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {cell: gru, bidirectional: false, lookahead: 4, layer_norm: true,\n"
                    "        recurrent_init: orthogonal, dropout_kind: locked}\n"
                    "train: {sortagrad: true}\n")
    config = load_config(path, ["model.lookahead=2"])
    assert config.model == ModelConfig(cell="gru", bidirectional=False, lookahead=2,
                                       layer_norm=True, recurrent_init="orthogonal",
                                       dropout_kind="locked")
    assert config.train.sortagrad is True
    assert load_config(None, ["model.forget_bias=1"]).model.forget_bias == 1.0


@pytest.mark.parametrize("overrides, message", [
    (["model.lookahead=3"], "model.lookahead=3 needs a forward-only model"),
    (["model.lookahead=-1", "model.bidirectional=false"], "model.lookahead must be 0"),
    (["model.cell=rnn"], "model.cell: expected one of lstm, gru, got 'rnn'"),
    (["model.cell=gru", "model.forget_bias=1.0"], "applies to LSTM cells only"),
    (["model.forget_bias=.nan"], "model.forget_bias must be a finite number"),
    (["model.bidirectional=maybe"], "model.bidirectional: expected true or false"),
    (["model.layer_norm=1"], "model.layer_norm: expected true or false"),
    (["model.recurrent_init=xavier"], "expected one of default, orthogonal"),
    (["model.dropout_kind=variational"], "expected one of standard, locked"),
    (["model.lookahead=2.5", "model.bidirectional=false"], "model.lookahead: expected int"),
    (["train.sortagrad=yes please"], "train.sortagrad: expected true or false"),
])
def test_bad_combinations_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, overrides)


@pytest.mark.parametrize("config", [dict(cell="rnn"), dict(lookahead=1),
                                    dict(cell="gru", forget_bias=0.5),
                                    dict(dropout_kind="zoneout")])
def test_bad_configs_are_refused_when_built_directly(config):
    """A model file's config is built without the YAML parser and checked the same."""
    with pytest.raises(ConfigError):
        ModelConfig(**config)
