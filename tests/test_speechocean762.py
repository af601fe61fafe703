"""speechocean762: manifests from the Kaldi-style layout (either path convention), and a
download that verifies, records and refuses digests (a local archive, no network)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from asrkit.cli.main import app
from asrkit.corpora import speechocean762 as so
from asrkit.errors import AsrkitError, ManifestError
from asrkit.manifest import read_manifest

SPEAKERS = ("0001", "0002", "0003", "0004")
TEXTS = ("WE CALL IT BEAR", "ZERO THREE FIVE ONE", "MARK IS GOING TO SEE ELEPHANT")


def write_corpus(root: Path, write_wav, original: bool = True) -> Path:
    """A tiny corpus: 4 training and 2 test speakers, 3 utterances each. ``original``:
    ``WAVE/SPEAKERnnnn/<id>.WAV`` relative to the corpus folder; otherwise the
    re-encoded copy's ``../audio/SPEAKERnnnn/<id>.ogg`` relative to the split."""
    rng = np.random.default_rng(0)
    for split, speakers in (("train", SPEAKERS), ("test", ("0101", "0102"))):
        d = root / split
        d.mkdir(parents=True)
        text, scp, spk = [], [], []
        for s in speakers:
            for k, words in enumerate(TEXTS):
                uid = f"0{s}{k:04d}"
                if original:
                    rel = f"WAVE/SPEAKER{s}/{uid}.WAV"
                    write_wav(root / rel, 0.1 * rng.standard_normal(8000))
                else:
                    rel = f"../audio/SPEAKER{s}/{uid}.ogg"
                    write_wav(root / f"audio/SPEAKER{s}/{uid}.wav",
                              0.1 * rng.standard_normal(8000)).rename(
                        root / f"audio/SPEAKER{s}/{uid}.ogg")
                text.append(f"{uid}\t{words}")
                scp.append(f"{uid}\t{rel}")
                spk.append(f"{uid} {s}")
        for name, lines in (("text", text), ("wav.scp", scp), ("utt2spk", spk)):
            (d / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("original", [True, False])
def test_prepare_writes_speaker_disjoint_splits(tmp_path, write_wav, original):
    corpus = write_corpus(tmp_path / "speechocean762", write_wav, original)
    paths = so.prepare_speechocean762(tmp_path, tmp_path / "out", valid_speakers=1)
    splits = {name: read_manifest(p) for name, p in paths.items()}
    assert [len(splits[n]) for n in ("train", "valid", "test")] == [9, 3, 6]
    speakers = {n: {u.speaker for u in utts} for n, utts in splits.items()}
    assert not speakers["train"] & speakers["valid"]
    assert all(Path(u.audio).is_file() for utts in splits.values() for u in utts)
    assert {u.text for u in splits["test"]} == set(TEXTS)
    again = so.prepare_speechocean762(corpus, tmp_path / "again", valid_speakers=1)
    assert all(again[n].read_bytes() == paths[n].read_bytes() for n in paths)


def test_missing_audio_and_layout_are_reported(tmp_path, write_wav):
    corpus = write_corpus(tmp_path / "c", write_wav)
    with pytest.raises(ManifestError, match="no train/ and test/"):
        so.prepare_speechocean762(tmp_path / "elsewhere", tmp_path / "out")
    next((corpus / "WAVE").rglob("*.WAV")).unlink()
    with pytest.raises(ManifestError, match="missing; extract the archive again"):
        so.prepare_speechocean762(corpus, tmp_path / "out")


def make_archive(tmp_path: Path, write_wav) -> Path:
    corpus = write_corpus(tmp_path / "src" / "speechocean762", write_wav)
    served = tmp_path / "server"
    served.mkdir()
    with tarfile.open(served / so.ARCHIVE, "w:gz") as tar:
        tar.add(corpus, arcname="speechocean762")
    return served / so.ARCHIVE


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_verifies_records_and_is_then_a_no_op(tmp_path, write_wav):
    archive = make_archive(tmp_path, write_wav)
    target = tmp_path / "data"
    corpus = so.download_speechocean762(target, archive.parent.as_uri(), md5=md5(archive))
    assert (corpus / "train" / "text").is_file() and not (target / so.ARCHIVE).exists()
    assert (target / f"{so.ARCHIVE}.md5").read_text().split()[0] == md5(archive)
    archive.unlink()  # the corpus is there: nothing is fetched again
    assert so.download_speechocean762(target, archive.parent.as_uri()) == corpus
    assert len(read_manifest(so.prepare_speechocean762(target, tmp_path / "m", 1)["test"])) == 6


def test_download_with_wrong_checksum_is_refused(tmp_path, write_wav):
    archive = make_archive(tmp_path, write_wav)
    target = tmp_path / "data"
    with pytest.raises(AsrkitError, match="MD5"):
        so.download_speechocean762(target, archive.parent.as_uri(), md5="0" * 32)
    assert not any(target.glob("*.tar.gz*")) and not (target / "speechocean762").exists()


def test_recorded_digest_guards_a_later_archive(tmp_path, write_wav):
    archive = make_archive(tmp_path, write_wav)
    target = tmp_path / "data"
    target.mkdir()
    (target / f"{so.ARCHIVE}.md5").write_text(f"{'f' * 32}  {so.ARCHIVE}\n")
    (target / so.ARCHIVE).write_bytes(archive.read_bytes())  # fetched by hand
    with pytest.raises(AsrkitError, match="differs"):
        so.download_speechocean762(target, archive.parent.as_uri())


def test_cli_prepare(tmp_path, write_wav):
    archive = make_archive(tmp_path, write_wav)
    result = CliRunner().invoke(app, [
        "data", "prepare", "speechocean762", "--data-dir", str(tmp_path / "data"), "--out",
        str(tmp_path / "m"), "--download", "--mirror", archive.parent.as_uri(),
        "--md5", md5(archive), "--valid-speakers", "2", "--json"])
    assert result.exit_code == 0, result.output
    splits = json.loads(result.stdout)["splits"]
    assert {n: s["utterances"] for n, s in splits.items()} == {"train": 6, "valid": 6,
                                                                "test": 6}
