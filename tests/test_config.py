"""Experiment configuration: YAML + --set overrides, and every way to get it wrong."""

from __future__ import annotations


import pytest

from asrkit.asr.config import ExperimentConfig, config_from_dict, load_config
from asrkit.errors import ConfigError
from asrkit.features import AugmentConfig, FeatureConfig
from asrkit.asr.model import ModelConfig


def write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_overrides():
    assert load_config() == ExperimentConfig()


def test_yaml_and_overrides(tmp_path):
    path = write(tmp_path, """
model: {layers: 2, hidden: 64}
features:
  kind: mfcc
  n_mfcc: 13
train: {lr: 0.001, epochs: 5}
""")
    config = load_config(path, ["train.lr=0.005", "model.subsample=3", "augment.time_masks=0"])
    assert config.model == ModelConfig(layers=2, hidden=64, subsample=3)
    assert config.features == FeatureConfig(kind="mfcc", n_mfcc=13)
    assert config.train.lr == 0.005  # the override wins over the file
    assert config.train.epochs == 5
    assert config.augment == AugmentConfig(time_masks=0)


def test_override_value_types(tmp_path):
    config = load_config(None, ["train.lr=1", "train.spec_augment=false", "train.case=lower",
                                "augment.speed_factors=[0.95, 1.0]", "train.precision=bf16"])
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)  # int → float is fine
    assert config.train.spec_augment is False
    assert config.train.case == "lower"
    assert config.augment.speed_factors == (0.95, 1.0)  # YAML list → tuple


def test_yaml_round_trip(tmp_path):
    config = load_config(None, ["model.layers=1", "features.n_mels=40",
                                "augment.speed_factors=[0.8, 1.2]", "train.seed=3"])
    path = write(tmp_path, config.to_yaml())
    assert load_config(path) == config
    assert config_from_dict(config.to_dict()) == config


def test_exponent_floats_are_numbers(tmp_path):
    # YAML 1.1 (PyYAML) reads 3e-3 without a dot as a string; users mean 0.003.
    assert load_config(None, ["train.lr=3e-3"]).train.lr == 0.003
    assert load_config(write(tmp_path, "train: {lr: 1e-4}\n")).train.lr == 0.0001


def test_lists_of_names_stay_names(tmp_path):
    given = load_config(None, ["augment.noise_types=babble, colored"]).augment.noise_types
    assert given == ("babble", "colored")
    again = load_config(write(tmp_path, "augment: {noise_types: [colored]}\n"))
    assert again.augment.noise_types == ("colored",)
    with pytest.raises(ConfigError, match="list of names"):
        load_config(write(tmp_path, "augment: {noise_types: [1, 2]}\n"))


@pytest.mark.parametrize("overrides,message", [
    (["optimizer.lr=1"], "unknown section 'optimizer'"),
    (["model.hiden=3"], r"model\.hiden: unknown key"),
    (["train.lr"], "expected section.key=value"),
    (["lr=0.1"], "expected section.key=value"),
    (["train.=0.1"], "expected section.key=value"),
    (["model.layers=three"], r"model\.layers: expected int"),
    (["model.layers=2.5"], r"model\.layers: expected int"),
    (["train.lr=fast"], r"train\.lr: expected a number, got 'fast'"),
    (["train.speed_perturb=1"], "expected true or false"),
    (["train.speed_perturb=yes please"], "expected true or false"),
    (["features.kind=1"], r"features\.kind: expected one of fbank, mfcc, got 1"),
    (["model.subsample=4"], "subsample must be 1, 2 or 3"),
    (["model.dropout=1.5"], "dropout"),
    (["features.kind=spectrogram"], "fbank"),
    (["train.case=title"], r"train\.case: expected one of upper, lower, keep"),
    (["train.precision=fp64"], r"train\.precision: expected one of fp32, bf16"),
])
def test_override_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize("text,message", [
    ("optimizer: {lr: 1}\n", "unknown section 'optimizer'"),
    ("model: {layerz: 2}\n", r"exp\.yaml: model\.layerz: unknown key"),
    ("model: 3\n", "must be a mapping"),
    ("- model\n- train\n", "mapping of sections"),
    ("model: {layers: [2\n", "not valid YAML"),
    ("train: {epochs: '5'}\n", r"train\.epochs: expected int"),
])
def test_file_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_is_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == ExperimentConfig()
