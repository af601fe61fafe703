"""Common Voice recipe on a tiny release written in its own layout (MP3 clips, TSV splits)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from asrkit.audio import load_audio
from asrkit.cli import data
from asrkit.corpora.commonvoice import (download_commonvoice, normalize_sentence,
                                        prepare_commonvoice)
from asrkit.errors import AsrkitError, ConfigError, ManifestError
from asrkit.manifest import read_manifest

def noise(seconds: float, rate: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.1, 0.1, int(seconds * rate)).astype(np.float32)



# ---------------------------------------------------------------- Common Voice

HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes",
          "down_votes", "age", "gender", "accents", "variant", "locale", "segment"]
SENTENCES = {
    "train": ['He said "hello," didn’t he?', "Well-known café; 42% off!",
              "The 'cat' sat.", "  Spaces   everywhere  "],
    "dev": ["Is it (really) here?"],
    "test": ["Yes — no."],
}
CLIENTS = ["a1" * 32, "b2" * 32, "c3" * 32]


def write_commonvoice(release: Path, lang: str = "en") -> Path:
    """``<release>/<lang>/{train,dev,test}.tsv`` (unquoted, by header) and MP3 clips."""
    folder = release / lang
    (folder / "clips").mkdir(parents=True)
    n = 0
    for split, sentences in SENTENCES.items():
        rows = ["\t".join(HEADER)]
        for sentence in sentences:
            name = f"common_voice_{lang}_{1000 + n}.mp3"
            sf.write(folder / "clips" / name, noise(1.5, 48000, n), 48000, format="MP3")
            values = {"client_id": CLIENTS[n % 3], "path": name, "sentence": sentence,
                      "sentence_id": f"{n:064x}", "up_votes": "2", "down_votes": "0",
                      "locale": lang}
            rows.append("\t".join(values.get(c, "") for c in HEADER))
            n += 1
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "validated.tsv").write_text("\t".join(HEADER) + "\n")
    return folder


@pytest.fixture(scope="module")
def cv_template(tmp_path_factory) -> Path:
    return write_commonvoice(tmp_path_factory.mktemp("cv") / "cv-corpus-17.0-2024-03-15")


@pytest.fixture
def cv(cv_template, tmp_path) -> Path:
    """A fresh copy per test (MP3 encoding is the slow part, so it is done once)."""
    release = tmp_path / cv_template.parent.name
    shutil.copytree(cv_template.parent, release)
    return release / cv_template.name


def test_prepare_commonvoice_keeps_sentences_as_written(cv, tmp_path):
    paths = prepare_commonvoice(cv, tmp_path / "out")
    assert set(paths) == {"train", "dev", "test"}
    train = read_manifest(paths["train"])
    assert [u.text for u in train] == ['He said "hello," didn’t he?',
                                       "Well-known café; 42% off!", "The 'cat' sat.",
                                       "Spaces everywhere"]
    assert [u.id for u in train] == [f"common_voice_en_{1000 + k}" for k in range(4)]
    assert [u.speaker for u in train] == [CLIENTS[0], CLIENTS[1], CLIENTS[2], CLIENTS[0]]
    wave = load_audio(train[0].audio)  # MP3 at 48 kHz, read at 16 kHz
    assert abs(len(wave) - 1.5 * 16000) < 0.05 * 16000
    assert [u.text for u in read_manifest(paths["test"])] == ["Yes — no."]


def test_prepare_commonvoice_upper_case_without_punctuation(cv, tmp_path):
    paths = prepare_commonvoice(cv, tmp_path / "out", splits=["train", "dev", "test"],
                                normalize="upper")
    assert [u.text for u in read_manifest(paths["train"])] == [
        "HE SAID HELLO DIDN'T HE", "WELL KNOWN CAFÉ 42 OFF", "THE 'CAT' SAT",
        "SPACES EVERYWHERE"]
    assert [u.text for u in read_manifest(paths["dev"])] == ["IS IT REALLY HERE"]
    assert [u.text for u in read_manifest(paths["test"])] == ["YES NO"]


@pytest.mark.parametrize("text, keep, upper", [
    ("Rock ’n’ roll", "Rock ’n’ roll", "ROCK 'N' ROLL"),
    ("e\u0301te\u0301", "été", "ÉTÉ"),  # NFC: one code point per accented letter
    ("« Ça va ? »", "« Ça va ? »", "ÇA VA"),
    ("' quoted '", "' quoted '", "QUOTED"),
    ("straße", "straße", "STRASSE"),
    ("東京、大阪。", "東京、大阪。", "東京 大阪"),
])
def test_normalize_sentence(text, keep, upper):
    assert normalize_sentence(text, "keep") == keep
    assert normalize_sentence(text, "upper") == upper


def test_prepare_commonvoice_is_idempotent(cv, tmp_path):
    out = tmp_path / "out"
    first = {s: p.read_bytes() for s, p in prepare_commonvoice(cv, out).items()}
    second = {s: p.read_bytes() for s, p in prepare_commonvoice(cv, out).items()}
    assert first == second
    assert sorted(p.name for p in out.iterdir()) == ["dev.jsonl", "test.jsonl", "train.jsonl"]


def test_relative_corpus_path_commonvoice(cv, tmp_path, monkeypatch):
    monkeypatch.chdir(cv.parent)
    path = prepare_commonvoice("en", "../data/cv", ["dev"])["dev"]
    assert all(Path(u.audio).is_file() for u in read_manifest(path))


def test_language_folder_is_found(cv, tmp_path):
    release = cv.parent
    direct = prepare_commonvoice(cv, tmp_path / "a")["dev"].read_bytes()
    assert prepare_commonvoice(release, tmp_path / "b")["dev"].read_bytes() == direct
    write_commonvoice(release, "fr")
    with pytest.raises(ConfigError, match=r"several languages \(en, fr\).*--language"):
        prepare_commonvoice(release, tmp_path / "c")
    fr = read_manifest(prepare_commonvoice(release, tmp_path / "c", language="fr")["dev"])
    assert fr[0].id.startswith("common_voice_fr_")
    with pytest.raises(ManifestError, match="de: no Common Voice TSV files"):
        prepare_commonvoice(release, tmp_path / "d", language="de")
    with pytest.raises(ManifestError, match="no Common Voice TSV files"):
        prepare_commonvoice(tmp_path / "nowhere", tmp_path / "d")


def edit_tsv(cv: Path, split: str, line: int, change) -> None:
    tsv = cv / f"{split}.tsv"
    lines = tsv.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = change(lines[line - 1])
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("line, change, message", [
    (1, lambda s: s.replace("sentence\t", "text\t", 1), r"train\.tsv:1: the header lacks "
                                                        r"column\(s\) sentence"),
    (3, lambda s: s + "\textra", r"train\.tsv:3: 14 tab-separated fields where the header "
                                 r"has 13"),
    (4, lambda s: s.replace("1002", "1001"), r"train\.tsv:4: duplicate clip path"),
    (5, lambda s: s.replace("1003", "9999"), r"train\.tsv:5: clip .*common_voice_en_9999"
                                             r"\.mp3 is missing"),
])
def test_malformed_tsv(cv, tmp_path, line, change, message):
    edit_tsv(cv, "train", line, change)
    with pytest.raises(ManifestError, match=message):
        prepare_commonvoice(cv, tmp_path / "out")
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_clip_path_without_extension_and_empty_sentence(cv, tmp_path, caplog):
    edit_tsv(cv, "train", 2, lambda s: s.replace(".mp3", "", 1))
    edit_tsv(cv, "train", 3, lambda s: s.replace("Well-known café; 42% off!", "?!"))
    with caplog.at_level(logging.WARNING, logger="asrkit"):
        train = read_manifest(prepare_commonvoice(cv, tmp_path / "out", normalize="upper")
                              ["train"])
    assert [u.id for u in train] == ["common_voice_en_1000", "common_voice_en_1002",
                                     "common_voice_en_1003"]
    assert Path(train[0].audio).name == "common_voice_en_1000.mp3"
    assert "left out 1 clip(s) whose sentence has no words after normalisation" in caplog.text


def test_bad_commonvoice_settings(cv, tmp_path):
    with pytest.raises(ConfigError, match="normalize must be one of keep, upper"):
        prepare_commonvoice(cv, tmp_path / "out", normalize="lower")
    with pytest.raises(ConfigError, match="'training'"):
        prepare_commonvoice(cv, tmp_path / "out", splits=["training"])
    with pytest.raises(ManifestError, match=r"other\.tsv: missing"):
        prepare_commonvoice(cv, tmp_path / "out", splits=["other"])
    assert read_manifest(prepare_commonvoice(cv, tmp_path / "out",
                                             splits=["validated"])["validated"]) == []


def test_download_commonvoice_explains_where_to_get_it(cv, tmp_path):
    with pytest.raises(AsrkitError, match="commonvoice.mozilla.org.*--data-dir") as e:
        download_commonvoice(tmp_path / "empty", "en")
    assert e.type is AsrkitError
    assert download_commonvoice(cv.parent) == cv  # already there: nothing to do


def run(*args):
    app = typer.Typer()
    app.add_typer(data.app, name="data")
    return CliRunner().invoke(app, ["data", *map(str, args)])



def test_prepare_commonvoice_command(cv, tmp_path):
    out = tmp_path / "out"
    result = run("prepare", "commonvoice", "--data-dir", cv.parent, "--language", "en",
                 "--out", out, "--normalize", "upper", "--split", "train", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"]["train"]["speakers"] == 3
    assert read_manifest(out / "train.jsonl")[0].text == "HE SAID HELLO DIDN'T HE"
    assert run("validate", out / "train.jsonl").exit_code == 0  # MP3 clips read fine
    missing = run("prepare", "commonvoice", "--data-dir", tmp_path / "none", "--out", out,
                  "--download")
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert missing.stderr.startswith("error: Common Voice has no open download")
