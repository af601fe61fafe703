"""Hostile input, table-driven: every command × every input class, through the real CLI.

Each case states the exit code (0 done, 1 error, 2 invalid usage or configuration,
3 partial: some inputs skipped and listed) and, for errors, that stderr is one
``error:`` line naming the option, the config key or the file (and line where there is
one), with no traceback, and that an output written earlier is left as it was.

Files of every kind (audio, text, importers) are in test_hostile_files.py. A tiny random
model (3 labels, one small LSTM layer) keeps the whole file within a
couple of minutes on one core: what is tested is the handling of input, not accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from asrkit.asr.config import LIMITS
from asrkit.cli.main import app

RATE = 16_000
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output


def assert_error(result, code: int, *names: str) -> str:
    """Exit ``code`` with exactly one ``error:`` line on stderr that names ``names``."""
    no_traceback(result)
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def tone(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return wave if channels == 1 else np.tile(wave[:, None], (1, channels))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    import torch

    from asrkit.asr.checkpoint import save_model
    from asrkit.asr.model import AsrModel, ModelConfig
    from asrkit.text import Vocabulary
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, AsrModel(Vocabulary(tuple(" AB")),
                              ModelConfig(layers=1, hidden=16, subsample=3)))
    return path


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "a.wav"
    sf.write(path, tone(0.5), RATE, subtype="PCM_16")
    return path


# --- numeric options: found in the command tree, so a new option cannot be missed -----

def _numeric_options():
    found = []

    def walk(cmd, path):
        if hasattr(cmd, "commands"):  # a group
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, path + [name])
            return
        for p in cmd.params:
            kind = p.type_descriptor.annotation
            if isinstance(p, typer.core.TyperOption) and kind in (int, float):
                found.append((tuple(path), max(p.opts, key=len), kind is float))

    walk(typer.main.get_command(app), [])
    return found


NUMERIC = _numeric_options()


def test_the_command_tree_has_numeric_options():
    assert len(NUMERIC) >= 40  # the walk sees the whole tree (guards the test itself)


@pytest.mark.parametrize("command,option,is_float", NUMERIC,
                         ids=[" ".join(c) + " " + o for c, o, _ in NUMERIC])
def test_every_numeric_option_is_checked_at_parse_time(command, option, is_float):
    for value in (["nan", "inf", "-inf"] if is_float else ["-1"]):
        result = run(*command, option, value)
        assert_error(result, 2, option, value)


OUT_OF_RANGE = [  # (arguments, option): values that are numbers but meaningless
    (["transcribe", "--beam-size", "0"], "--beam-size"),
    (["transcribe", "--batch-seconds", "0"], "--batch-seconds"),
    (["transcribe", "--alpha", "-0.5"], "--alpha"),
    (["evaluate", "--worst", "-3"], "--worst"),
    (["lm", "tune", "--beam-size", "0"], "--beam-size"),
    (["lm", "build", "--order", "0"], "--order"),
    (["lm", "build", "--order", "10"], "--order"),
    (["search", "query", "--top", "0"], "--top"),
    (["search", "query", "--threshold", "1.5"], "--threshold"),
    (["serve", "--port", "0"], "--port"),
    (["serve", "--port", "65536"], "--port"),
    (["serve", "--max-upload-mb", "0"], "--max-upload-mb"),
    (["index", "build", "--threads", "0"], "--threads"),
    (["index", "build", "--hop", "0"], "--hop"),
    (["embedder", "train", "--epochs", "0"], "--epochs"),
    (["embedder", "train", "--lr", "0"], "--lr"),
    (["data", "synth", "--valid-fraction", "1.5"], "--valid-fraction"),
    (["data", "synth", "--reverb", "-0.1"], "--reverb"),
    (["data", "synth", "--utterances", "0"], "--utterances"),
    (["data", "synth-archive", "--files", "0"], "--files"),
]


@pytest.mark.parametrize("args,option", OUT_OF_RANGE, ids=[" ".join(a) for a, _ in OUT_OF_RANGE])
def test_out_of_range_numbers_are_usage_errors(args, option):
    line = assert_error(run(*args), 2, option, args[-1])
    assert "expected" in line  # and the allowed range is stated


@pytest.mark.parametrize("value", ["-1", "nan", "0,nan", "abc", ","])
def test_index_durations_list_is_checked(tmp_path, value):
    assert_error(run("index", "build", tmp_path, "--out", tmp_path / "idx",
                     "--durations", value), 2, "--durations")
    assert not (tmp_path / "idx").exists()


# --- experiment configs: every ranged key, by --set and by YAML --------------------

def _below(key: str) -> str:
    low, _, open_low = LIMITS[key]
    if key == "augment.speed_factors":
        return "[-1]"
    return str(low if open_low else low - 1)


@pytest.mark.parametrize("key", sorted(LIMITS))
def test_every_config_range_is_enforced(tmp_path, key):
    for value in (_below(key), "nan"):
        result = run("train", "--train", tmp_path / "t.jsonl", "--valid", tmp_path / "v.jsonl",
                     "--out", tmp_path / "run", "--set", f"{key}={value}")
        line = assert_error(result, 2, key.split(".")[1])
        assert not (tmp_path / "run").exists(), line


BAD_SETTINGS = [
    ("augment.speed_factors=abc", "speed_factors"),
    ("augment.speed_factors=[-1]", "allowed: 0.25 to 4"),
    ("augment.speed_factors=[]", "speed_factors is empty"),
    ("augment.speed_factors=[1, x]", "speed_factors"),
    ("augment.speed_factors={a: 1}", "speed_factors"),
    ("train.epochs=0", "train.epochs=0"),
    ("train.epochs=1.5", "train.epochs"),
    ("train.epochs=true", "train.epochs"),
    ("train.lr=nan", "train.lr=nan"),
    ("train.lr=-1", "train.lr=-1"),
    ("train.lr=.inf", "train.lr=inf"),
    ("train.batch_seconds=0", "train.batch_seconds=0"),
    ("train.batch_seconds=abc", "train.batch_seconds"),
    ("train.precision=fp64", "train.precision"),
    ("train.speed_perturb=3", "train.speed_perturb"),
    ("model.layers=0", "model.layers"),
    ("model.dropout=1.5", "model.dropout"),
    ("features.kind=wavelets", "features.kind"),
    ("features.n_mels=0", "features.n_mels=0"),
    ("train.nope=1", "unknown key"),
    ("nope.lr=1", "unknown section"),
    ("trainlr=1", "section.key=value"),
]


@pytest.mark.parametrize("setting,named", BAD_SETTINGS, ids=[s for s, _ in BAD_SETTINGS])
def test_bad_config_values_exit_2_naming_key_and_value(tmp_path, setting, named):
    result = run("train", "--train", tmp_path / "t.jsonl", "--valid", tmp_path / "v.jsonl",
                 "--out", tmp_path / "run", "--set", setting)
    assert_error(result, 2, named)
    assert not (tmp_path / "run").exists()


YAML_FILES = {  # name: (bytes of the file, text the error names besides the file)
    "not_utf8": (b"train:\n  lr: 0.001 \xff\xfe\n", "UTF-8"),
    "nul": (b"train:\n  lr: 0.001\x00\n", "YAML"),
    "binary": (bytes(range(256)) * 4, ""),
    "list": (b"- 1\n- 2\n", "mapping"),
    "section_not_mapping": (b"train: 5\n", "mapping"),
    "nan": (b"train:\n  lr: .nan\n", "train.lr"),
    "negative": (b"train:\n  epochs: -2\n", "train.epochs"),
    "wrong_type": (b"train:\n  epochs: [1]\n", "train.epochs"),
    "speed_factors": (b"augment:\n  speed_factors: [0.9, -1]\n", "speed_factors"),
}


@pytest.mark.parametrize("case", sorted(YAML_FILES))
def test_bad_yaml_configs(tmp_path, case):
    data, named = YAML_FILES[case]
    (tmp_path / "c.yaml").write_bytes(data)
    result = run("train", "--train", tmp_path / "t.jsonl", "--valid", tmp_path / "v.jsonl",
                 "--out", tmp_path / "run", "--config", tmp_path / "c.yaml")
    assert_error(result, 2, "c.yaml", named)


def test_yaml_config_with_bom_and_crlf_is_read(tmp_path):
    from asrkit.asr.config import load_config
    (tmp_path / "c.yaml").write_bytes(b"\xef\xbb\xbftrain:\r\n  lr: 0.004\r\n")
    assert load_config(tmp_path / "c.yaml").train.lr == 0.004


# --- decoding options and decoding configs ------------------------------------------

DECODING_CONFIGS = {  # name: (JSON text, what the error names besides the file)
    "beam_size_words": ('{"beam_size": "many"}', "beam_size"),
    "beam_size_zero": ('{"beam_size": 0}', "beam_size"),
    "beam_size_negative": ('{"beam_size": -4}', "beam_size"),
    "beam_size_float": ('{"beam_size": 2.5}', "beam_size"),
    "beam_size_bool": ('{"beam_size": true}', "beam_size"),
    "alpha_nan": ('{"alpha": NaN}', "alpha"),
    "alpha_negative": ('{"alpha": -1}', "alpha"),
    "alpha_text": ('{"alpha": "x"}', "alpha"),
    "beta_inf": ('{"beta": Infinity}', "beta"),
    "nbest_zero": ('{"nbest": 0}', "nbest"),
    "nbest_over_beam": ('{"beam_size": 2, "nbest": 3}', "nbest"),
    "threshold_zero": ('{"beam_threshold": 0}', "beam_threshold"),
    "token_beam_zero": ('{"beam_size_token": 0}', "beam_size_token"),
    "hotwords_string": ('{"hotwords": "AB"}', "hotwords"),
    "lm_number": ('{"lm": 5}', "lm"),
    "decoder_number": ('{"decoder": 1}', "decoder"),
    "decoder_unknown": ('{"decoder": "viterbi"}', "viterbi"),
    "greedy_with_lexicon": ('{"decoder": "greedy", "lexicon": "w.txt"}', "greedy"),
    "unknown_key": ('{"beam": 3}', "unknown decoding option"),
    "not_object": ('[1, 2]', "JSON object"),
    "not_json": ('beam_size = 3', "not a decoding config"),
}


@pytest.mark.parametrize("case", sorted(DECODING_CONFIGS))
def test_bad_decoding_configs_exit_2(tiny, wav, tmp_path, case):
    text, named = DECODING_CONFIGS[case]
    (tmp_path / "dec.json").write_text(text, encoding="utf-8")
    out = tmp_path / "old.jsonl"
    out.write_text("finished earlier\n")
    result = run("transcribe", "-m", tiny, wav, "-f", "jsonl", "-o", out,
                 "--decoding-config", tmp_path / "dec.json")
    assert_error(result, 2, named)
    if case not in ("decoder_unknown", "greedy_with_lexicon"):  # raised by the decoder
        assert "dec.json" in result.stderr
    assert out.read_text() == "finished earlier\n"


def test_decoding_config_not_utf8_and_with_bom(tiny, wav, tmp_path):
    (tmp_path / "dec.json").write_bytes(b'{"beam_size": 3, "x": "\xff"}')
    assert_error(run("transcribe", "-m", tiny, wav, "--decoding-config", tmp_path / "dec.json"),
                 2, "dec.json")
    (tmp_path / "dec.json").write_bytes(b'\xef\xbb\xbf{"beam_size": 3}\r\n')
    result = run("transcribe", "-m", tiny, wav, "--decoding-config", tmp_path / "dec.json")
    no_traceback(result)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("flag", [("--lm", "x.arpa"), ("--lexicon", "w.txt"),
                                  ("--hotwords", "AB"), ("--beam-size", "3")])
def test_beam_options_with_greedy_exit_2(tiny, wav, flag):
    assert_error(run("transcribe", "-m", tiny, wav, "--decoder", "greedy", *flag), 2,
                 "greedy", flag[0].lstrip("-").replace("-", "_"))


# --- serve ---------------------------------------------------------------------------

def test_serve_on_a_busy_port_is_one_error_line_and_no_url(tmp_path, monkeypatch):
    pytest.importorskip("uvicorn")
    import socket

    import asrkit.serve.app
    monkeypatch.setattr(asrkit.serve.app, "create_app", lambda *a, **k: object())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", tmp_path, "--port", port)
    line = assert_error(result, 1, f"127.0.0.1:{port}", "in use")
    assert "http://" not in result.output, line
