"""Bundled model names against folders: one rule, used by every command that takes a model.

The case that used to fail: `asrkit data prepare an4` leaves a folder `an4/` (audio, no
model) in the working folder, and then every `an4` meant that folder.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

from asrkit.asr.checkpoint import load_model, save_model
from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.errors import ConfigError, ModelFileError
from asrkit.features import FeatureConfig
from asrkit.pretrained import (PRETRAINED_DIR, bundled_names, list_models, names_model,
                               resolve_model)
from asrkit.cli.main import app
from asrkit.text import Vocabulary
from tones import make_tone_corpus

runner = CliRunner()
BUNDLED = PRETRAINED_DIR / "an4.pt"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def in_tmp(tmp_path):
    """Run in a fresh working folder that holds an `an4/` folder with audio, no model."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    manifest = make_tone_corpus(tmp_path / "an4", 2, seed=1)
    yield tmp_path, manifest
    os.chdir(cwd)


def tiny_model(path):
    torch.manual_seed(0)
    model = AsrModel(Vocabulary(list(" ABC")), ModelConfig(layers=1, hidden=8),
                     FeatureConfig(n_mels=20)).eval()
    save_model(path, model)


def test_an4_is_bundled_and_listed():
    assert "an4" in bundled_names() and "embedder" not in bundled_names()
    assert [m.name for m in list_models()] == bundled_names()
    # which bundled models take `transcribe --stream`: what check_streamable says
    from asrkit.asr.checkpoint import load_model
    from asrkit.asr.streaming import check_streamable
    for m in list_models():
        try:
            check_streamable(load_model(m.name))
            assert m.streams, m.name
        except ConfigError:
            assert not m.streams, m.name
    assert {m.name: m.streams for m in list_models()}["an4-stream"]
    assert resolve_model("an4") == BUNDLED and resolve_model("an4.pt") == BUNDLED


def test_a_folder_without_a_model_does_not_hide_the_bundled_name(in_tmp):
    assert (in_tmp[0] / "an4").is_dir()
    assert resolve_model("an4") == BUNDLED
    assert names_model("an4")


def test_a_folder_or_file_with_a_model_wins_over_the_bundled_name(in_tmp):
    tiny_model(in_tmp[0] / "an4" / "last.pt")
    assert resolve_model("an4").resolve() == in_tmp[0] / "an4" / "last.pt"
    tiny_model(in_tmp[0] / "an4" / "best.pt")
    assert resolve_model("an4").resolve() == in_tmp[0] / "an4" / "best.pt"
    assert load_model("an4").vocab.symbols == tuple(" ABC")


def test_an_explicit_path_to_an_empty_folder_names_both_ways(in_tmp):
    with pytest.raises(ModelFileError) as e:
        resolve_model("./an4")
    assert "./an4/ holds no best.pt or last.pt" in str(e.value)
    assert "bundled model 'an4' is reached by its bare name `an4`" in str(e.value)
    (in_tmp[0] / "empty").mkdir()
    with pytest.raises(ModelFileError, match=r"empty/ holds no best.pt or last.pt, and no "
                                             r"bundled model is named 'empty' \(bundled: an4"):
        resolve_model("empty")
    with pytest.raises(ModelFileError, match="nothing.pt: no such model file or folder"):
        resolve_model("nothing.pt")
    with pytest.raises(ModelFileError, match="bare name `an4`"):
        resolve_model("elsewhere/an4.pt")  # a path is never the bundled model


def test_transcribe_takes_a_bundled_name_as_positional_model(in_tmp):
    root, manifest = in_tmp
    wav = root / "an4" / "utt0000.wav"
    by_option = invoke("transcribe", "-m", "an4", wav, "-f", "jsonl")
    positional = invoke("transcribe", "an4", wav, "-f", "jsonl")
    default = invoke("transcribe", wav, "-f", "jsonl")
    assert positional.exit_code == 0, positional.output
    assert positional.stdout == by_option.stdout == default.stdout
    assert json.loads(positional.stdout)["id"] == "utt0000"


def test_transcribe_reads_a_lone_argument_and_dot_paths_as_inputs(in_tmp):
    root, _ = in_tmp
    folder = invoke("transcribe", "./an4", "-f", "jsonl")  # the folder of audio
    assert folder.exit_code == 0, folder.output
    assert len(folder.stdout.splitlines()) == 2
    tiny_model(root / "run.pt")
    with_model = invoke("transcribe", "run.pt", root / "an4" / "utt0001.wav")
    assert with_model.exit_code == 0, with_model.output
    assert with_model.stdout.startswith("utt0001\t")


def test_evaluate_and_export_accept_the_bundled_name_beside_an4_folder(in_tmp, tmp_path):
    root, manifest = in_tmp
    result = invoke("evaluate", "an4", manifest, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["utterances"] == 2
    result = invoke("export", "an4", "-f", "torchscript", "-o", root / "an4.ts", "--no-check")
    assert result.exit_code == 0, result.output
    assert (root / "an4.ts").is_file()


def test_index_words_resolves_the_default_model_beside_an4_folder(in_tmp, one_thread):
    root, _ = in_tmp
    result = invoke("index", "build", root / "an4", "-o", root / "idx", "--segments", "words",
                    "--threads", "1", "--json")
    assert result.exit_code in (0, 3), result.output  # tones may hold no word at all
    assert "holds no best.pt" not in result.output


def test_models_json_matches_the_library():
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [m.to_dict() for m in list_models()]


def test_error_for_an_unknown_model_is_one_line(in_tmp):
    shutil.rmtree(in_tmp[0] / "an4")
    (in_tmp[0] / "an4").mkdir()
    result = invoke("export", "./an4", "-f", "torchscript", "-o", "x.ts")
    assert result.exit_code == 1
    assert result.stderr.count("error:") == 1 and "reached by its bare name" in result.stderr


def test_example_clips_are_shipped_readable_and_in_the_bundled_vocabulary():
    from asrkit.audio import audio_info
    from asrkit.manifest import read_manifest
    from asrkit.pretrained import EXAMPLE_CLIPS
    clips = read_manifest(EXAMPLE_CLIPS, root=EXAMPLE_CLIPS.parent)  # none may point outside
    assert len(clips) == 6
    symbols = set(load_model(BUNDLED).vocab.symbols)
    for utt in clips:
        assert abs(audio_info(utt.audio).duration - utt.duration) < 0.01, utt.id
        assert set(utt.text) <= symbols, utt.id
