"""``--root DIR``: a manifest may name audio only below DIR (after resolving symlinks
and ``..``); every command that reads manifests refuses one that escapes, naming the
line, before doing any work."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from asrkit.cli.main import app

runner = CliRunner()
TINY_TRAIN = ["--set", "model.layers=1", "--set", "model.hidden=16", "--set",
              "features.n_mels=40", "--set", "train.epochs=1", "--set", "train.threads=1"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def wav(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(16_000) / 16_000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16_000)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/ with two recordings and a symlink to a file outside it."""
    top = tmp_path_factory.mktemp("root")
    root = top / "root"
    wav(root / "a.wav")
    wav(root / "sub" / "b.wav")
    wav(top / "secret.wav")
    os.symlink(top / "secret.wav", root / "link.wav")
    return root


ESCAPES = {"dot_dot": "../secret.wav", "dot_dot_inside": "sub/../../secret.wav",
           "absolute": "{top}/secret.wav", "symlink": "link.wav"}
COMMANDS = {
    "transcribe": lambda m, root, out: ("transcribe", m, "--root", root, "-o", out / "t.txt"),
    "evaluate": lambda m, root, out: ("evaluate", "an4", m, "--root", root,
                                      "--results", out / "r.jsonl"),
    "train": lambda m, root, out: ("train", "--train", m, "--valid", m, "--root", root,
                                   "--out", out / "run", *TINY_TRAIN),
    "index_build": lambda m, root, out: ("index", "build", m, "--root", root,
                                         "--out", out / "idx"),
    "data_validate": lambda m, root, out: ("data", "validate", m, "--root", root,
                                           "--headers-only"),
}


def manifest(path, audios):
    path.write_text("".join(json.dumps({"id": f"u{i}", "audio": a, "text": "AB"}) + "\n"
                            for i, a in enumerate(audios)))
    return path


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("escape", ESCAPES)
def test_escaping_line_is_refused_before_any_work(tree, tmp_path, command, escape):
    audio = ESCAPES[escape].format(top=tree.parent)
    m = manifest(tree / f"m_{escape}.jsonl", ["a.wav", "sub/b.wav", audio])
    out = tmp_path / "out"
    out.mkdir()
    result = invoke(*COMMANDS[command](m, tree, out))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert f"m_{escape}.jsonl:3" in result.output and "outside the allowed root" in result.output
    assert list(out.iterdir()) == []  # nothing written
    without = invoke(*[a for a in COMMANDS[command](m, tree, out) if a not in ("--root", tree)])
    assert "outside the allowed root" not in without.output  # only --root refuses it


def test_manifest_inside_the_root_is_accepted(tree, tmp_path):
    m = manifest(tree / "ok.jsonl", ["a.wav", "sub/b.wav", str(tree / "a.wav")])
    result = invoke("transcribe", m, "--root", tree, "-f", "jsonl")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3
    assert invoke("data", "validate", m, "--root", tree, "--headers-only").exit_code == 0


def test_root_must_be_an_existing_folder(tree):
    m = manifest(tree / "ok2.jsonl", ["a.wav"])
    result = invoke("transcribe", m, "--root", tree / "nope")
    assert result.exit_code == 2 and "Traceback" not in result.output
