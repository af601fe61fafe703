"""Exported models (TorchScript, ONNX) against the PyTorch model they came from."""

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from asrkit.asr.checkpoint import save_model
from asrkit.errors import AsrkitError, ConfigError
from asrkit.asr.export import EXAMPLE_SAMPLES, export_model, run_exported, sidecar_path
from asrkit.features import FeatureConfig
from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.text import Vocabulary

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest

FORMATS = ["torchscript", "onnx"]
# Lengths unlike the tracing example's; 300 samples is shorter than one FFT window.
BATCHES = [(7_777, 3_001), (4_000, 22_050, 300)]
CONFIGS = {
    "fbank-stack2": (ModelConfig(layers=2, hidden=16, subsample=2), FeatureConfig()),
    "mfcc-stack3": (ModelConfig(layers=1, hidden=16, subsample=3),
                    FeatureConfig(kind="mfcc", n_mels=40, n_mfcc=13)),
    "fbank-stack1": (ModelConfig(layers=1, hidden=8, subsample=1), FeatureConfig(n_mels=24)),
    "fbank-conv2-mean": (ModelConfig(layers=1, hidden=8, subsample=2, conv_channels=4,
                                     utterance_mean=True), FeatureConfig(n_mels=30)),
    "forward-lookahead-norm": (ModelConfig(layers=2, hidden=8, bidirectional=False, lookahead=3,
                                           layer_norm=True), FeatureConfig(n_mels=24)),
    "gru-norm": (ModelConfig(layers=2, hidden=8, cell="gru", layer_norm=True),
                 FeatureConfig(n_mels=24)),
}


def tiny_model(name: str) -> AsrModel:
    torch.manual_seed(0)
    config, features = CONFIGS[name]
    model = AsrModel(Vocabulary.from_texts(["hello world"]), config, features)
    with torch.no_grad():  # normalisation statistics that are not the identity
        model.normalizer.mean.uniform_(-8, -2)
        model.normalizer.std.uniform_(1, 3)
        if model.row_conv is not None:  # a new one is the identity: give the future a say
            model.row_conv.conv.weight.uniform_(-1, 1)
    return model.eval()


def batch(lengths) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded noise-and-tone waveforms ``(batch, samples)`` and their lengths."""
    generator = torch.Generator().manual_seed(sum(lengths))
    lengths = torch.tensor(lengths)
    t = torch.arange(int(lengths.max())) / 16_000
    waves = 0.05 * torch.randn(len(lengths), len(t), generator=generator)
    waves += 0.3 * torch.sin(2 * torch.pi * 440 * t)
    for i, n in enumerate(lengths.tolist()):
        waves[i, n:] = 0.0
    return waves, lengths


def require_runtime(fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed "
                            "(pip install 'asrkit[export]') so ONNX files cannot be run")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(config_name, fmt)`` → (model, path), each exported once."""
    cache = {}
    folder = tmp_path_factory.mktemp("exported")

    def get(name: str, fmt: str):
        if (name, fmt) not in cache:
            model = tiny_model(name)
            path = folder / f"{name}.{fmt}"
            export_model(model, path, fmt)
            cache[name, fmt] = model, path
        return cache[name, fmt]

    return get


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_exported_model_gives_the_same_log_probs(exported, name, fmt):
    require_runtime(fmt)
    model, path = exported(name, fmt)
    for lengths in BATCHES:
        assert max(lengths) != max(EXAMPLE_SAMPLES) and len(lengths) >= 2
        waves, wave_lengths = batch(lengths)
        with torch.no_grad():
            want, want_lengths = model(waves, wave_lengths)
        got, got_lengths = run_exported(path, fmt, waves, wave_lengths)
        assert torch.equal(got_lengths, want_lengths)
        for i, n in enumerate(want_lengths.tolist()):
            assert torch.allclose(got[i, :n], want[i, :n], atol=1e-4), (lengths, i)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["fbank-stack2", "forward-lookahead-norm"])
def test_batched_export_equals_one_by_one(exported, name, fmt):
    require_runtime(fmt)
    _, path = exported(name, fmt)
    waves, lengths = batch((12_000, 5_500))
    together, out_lengths = run_exported(path, fmt, waves, lengths)
    for i in range(2):
        n = int(lengths[i])
        alone, alone_lengths = run_exported(path, fmt, waves[i:i + 1, :n], lengths[i:i + 1])
        m = int(out_lengths[i])
        assert int(alone_lengths[0]) == m
        assert torch.allclose(alone[0, :m], together[i, :m], atol=1e-5)


def test_sidecar_describes_the_exported_file(exported):
    model, path = exported("mfcc-stack3", "torchscript")
    info = json.loads(sidecar_path(path).read_text())
    assert info["file"] == path.name and info["export_format"] == "torchscript"
    assert info["labels"] == ["<blank>"] + list(model.vocab.symbols)
    assert Vocabulary.from_dict(info["vocabulary"]) == model.vocab
    assert FeatureConfig(**info["feature_config"]) == model.feature_config
    assert ModelConfig(**info["model_config"]) == model.config
    assert info["frame_seconds"] == pytest.approx(0.03)
    assert info["sample_rate"] == 16_000 and info["gain_normalize"]["enabled"] is True


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown export format"):
        export_model(tiny_model("fbank-stack1"), tmp_path / "m.tflite", "tflite")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(AsrkitError, match="cannot write here"):
        export_model(tiny_model("fbank-stack1"), blocker / "m.pt", "torchscript")
    with pytest.raises(ConfigError, match="is a folder"):
        export_model(tiny_model("fbank-stack1"), tmp_path, "torchscript")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def cli_app() -> typer.Typer:
    from asrkit.cli import export
    app = typer.Typer()
    app.command()(export.export)
    app.command("other")(lambda: None)  # two commands, so `export` is named as typed
    return app


def test_cli_exports_a_model_file_and_checks_it(tmp_path):
    model_file = tmp_path / "tiny.pt"
    save_model(model_file, tiny_model("fbank-stack2"))
    out = tmp_path / "out" / "tiny.ts"
    result = CliRunner().invoke(cli_app(), ["export", str(model_file), "--format",
                                            "torchscript", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["max_abs_diff"] < 1e-4 and out.is_file() and sidecar_path(out).is_file()


def test_cli_exports_the_bundled_model(tmp_path):
    out = tmp_path / "an4.ts"
    result = CliRunner().invoke(cli_app(), ["export", "an4", "-f", "torchscript", "-o",
                                            str(out), "--no-check"])
    assert result.exit_code == 0, result.output
    assert json.loads(sidecar_path(out).read_text())["labels"][1] == " "


@pytest.mark.parametrize("args, code, message", [
    (["an4", "-f", "tflite", "-o", "x"], 2, "--format must be one of"),
    (["no-such-model.pt", "-f", "onnx", "-o", "x"], 1, "no such model file"),
])
def test_cli_bad_input(tmp_path, args, code, message):
    args[-1] = str(tmp_path / args[-1])
    result = CliRunner().invoke(cli_app(), ["export", *args])
    assert result.exit_code == code and message in result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_onnx_file_passes_the_onnx_checker(exported):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed "
                               "(pip install 'asrkit[export]')")
    _, path = exported("fbank-stack1", "onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["waves", "lengths"]
    assert [o.name for o in model.graph.output] == ["log_probs", "out_lengths"]
