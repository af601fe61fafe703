"""AN4 recipe on a tiny corpus written in AN4's own layout."""

from __future__ import annotations

import re
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from asrkit.cli import data
from asrkit.corpora.an4 import download_an4, prepare_an4, read_an4_split
from asrkit.errors import ConfigError, ManifestError
from asrkit.manifest import read_manifest

SR = 16_000
TRAIN_SPEAKERS = ["fash", "fbbh", "fclc", "mcen", "mdxs", "menk", "mjgm", "mtos"]
TEST_SPEAKERS = ["fcaw", "mjwl"]
WORDS = ["YES", "NO", "GO", "RUBOUT", "ERASE", "A", "B", "C", "ONE", "TWO", "THREE"]


def write_an4(root: Path, per_speaker: int = 3) -> Path:
    """AN4's layout: etc/ transcription and fileids, wav/<split dir>/<spk>/<id>.wav."""
    rng = np.random.default_rng(0)
    for split, folder, speakers, bracketed in (
            ("train", "an4_clstk", TRAIN_SPEAKERS, True),
            ("test", "an4test_clstk", TEST_SPEAKERS, False)):
        trans, fileids = [], []
        for s, spk in enumerate(speakers):
            for k in range(per_speaker):
                uid = f"an{100 + 10 * s + k}-{spk}-b"
                words = " ".join(rng.choice(WORDS, size=rng.integers(1, 4)))
                trans.append(f"<s> {words} </s> ({uid})" if bracketed else f"{words} ({uid})")
                fileids.append(f"{folder}/{spk}/{uid}")
                wav = root / "wav" / folder / spk / f"{uid}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                sf.write(wav, rng.uniform(-0.1, 0.1, 19200).astype(np.float32), SR,
                         subtype="PCM_16")
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc" / f"an4_{split}.transcription").write_text("\n".join(trans) + "\n")
        (root / "etc" / f"an4_{split}.fileids").write_text("\n".join(fileids) + "\n")
    return root


@pytest.fixture
def an4(tmp_path) -> Path:
    return write_an4(tmp_path / "an4")


def test_prepare_writes_three_splits(an4, tmp_path):
    paths = prepare_an4(an4, tmp_path / "out", valid_speakers=2)
    assert set(paths) == {"train", "valid", "test"}
    splits = {name: read_manifest(p) for name, p in paths.items()}
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [18, 6, 6]
    for utts in splits.values():
        for u in utts:
            assert Path(u.audio).is_file()
            assert u.text and "<s>" not in u.text and "(" not in u.text
            assert u.text == " ".join(u.text.split())
            assert u.id.split("-")[1] == u.speaker
    assert {u.speaker for u in splits["test"]} == set(TEST_SPEAKERS)
    first = (an4 / "etc" / "an4_train.transcription").read_text().splitlines()[0]
    by_id = {u.id: u for u in splits["train"] + splits["valid"]}
    uid = first.rsplit("(", 1)[1].rstrip(")")
    assert by_id[uid].text == first.removeprefix("<s> ").split(" </s>")[0]


@pytest.mark.parametrize("seed", range(4))
def test_valid_split_holds_whole_speakers(an4, tmp_path, seed):
    paths = prepare_an4(an4, tmp_path / "out", valid_speakers=3, seed=seed)
    where = defaultdict(set)
    for name in ("train", "valid"):
        for u in read_manifest(paths[name]):
            where[u.speaker].add(name)
    assert all(len(splits) == 1 for splits in where.values())  # never split across
    assert sum(splits == {"valid"} for splits in where.values()) == 3
    assert set(where) == set(TRAIN_SPEAKERS)  # every training utterance is kept
    assert sum(1 for _ in read_manifest(paths["train"])) == 15


def test_rerunning_is_idempotent(an4, tmp_path):
    out = tmp_path / "out"
    first = {n: p.read_bytes() for n, p in prepare_an4(an4, out).items()}
    second = {n: p.read_bytes() for n, p in prepare_an4(an4, out).items()}
    assert first == second
    assert sorted(p.name for p in out.iterdir()) == ["test.jsonl", "train.jsonl", "valid.jsonl"]


@pytest.mark.parametrize("n", [len(TRAIN_SPEAKERS), len(TRAIN_SPEAKERS) + 5, -1])
def test_impossible_valid_speaker_counts(an4, tmp_path, n):
    with pytest.raises(ConfigError, match="valid"):
        prepare_an4(an4, tmp_path / "out", valid_speakers=n)
    assert not (tmp_path / "out").exists()


def test_no_valid_speakers(an4, tmp_path):
    paths = prepare_an4(an4, tmp_path / "out", valid_speakers=0)
    assert paths["valid"].read_text() == ""
    assert len(read_manifest(paths["train"])) == 24


@pytest.mark.parametrize("line", ["YES NO", "<s> YES </s> (an999-nobody-b)", "(an100-fash-b"])
def test_malformed_transcription(an4, line):
    trans = an4 / "etc" / "an4_train.transcription"
    lines = trans.read_text().splitlines()
    lines[4] = line
    trans.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match=r"an4_train\.transcription:5:"):
        read_an4_split(an4, "train")


def test_not_an_an4_folder(tmp_path):
    with pytest.raises(ManifestError, match="an4_train.transcription: missing"):
        prepare_an4(tmp_path, tmp_path / "out")


def test_download_is_a_no_op_when_present(an4):
    assert download_an4(an4) == an4  # no git, no network


def run(*args):
    app = typer.Typer()
    app.add_typer(data.app, name="data")
    return CliRunner().invoke(app, ["data", *map(str, args)])


def test_prepare_command(an4, tmp_path):
    out = tmp_path / "out"
    result = run("prepare", "an4", "--data-dir", an4, "--out", out, "--download",
                 "--valid-speakers", "2")
    assert result.exit_code == 0, result.output
    assert re.search(r"train +18 utterances +6 speakers", result.stdout)
    assert f"next: asrkit data validate {out / 'train.jsonl'}" in result.stdout
    as_json = json.loads(run("prepare", "an4", "--data-dir", an4, "--out", out, "--json",
                             "--valid-speakers", "2").stdout)
    assert {k: v["utterances"] for k, v in as_json["splits"].items()} == \
        {"train": 18, "valid": 6, "test": 6}
    assert run("validate", out / "train.jsonl").exit_code == 0


def test_prepare_command_error(tmp_path):
    result = run("prepare", "an4", "--data-dir", tmp_path / "nothing", "--out", tmp_path / "o")
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    assert "an AN4 corpus folder" in result.stderr and "Traceback" not in result.output
