"""LibriSpeech recipe on a tiny corpus written in its own layout.

Downloads come from ``file://`` URLs or a stand-in for ``urlopen``: never the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from asrkit.cli import data
from asrkit.corpora import librispeech
from asrkit.corpora.librispeech import (DownloadProgress, download_librispeech,
                                        prepare_librispeech, safe_extract)
from asrkit.errors import AsrkitError, ConfigError, ManifestError
from asrkit.manifest import read_manifest

WORDS = ["THE", "CAT", "SAT", "ON", "A", "MAT", "HE'S", "GONE"]
# speaker → chapters; three utterances a chapter
CHAPTERS = {"dev-clean": {"84": ["121123"], "174": ["50561", "84280"]},
            "test-clean": {"61": ["70968"]}}


def noise(seconds: float, rate: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.1, 0.1, int(seconds * rate)).astype(np.float32)


def write_librispeech(root: Path, per_chapter: int = 3) -> Path:
    """``LibriSpeech/<part>/<spk>/<chapter>/`` with a ``.trans.txt`` and FLAC files."""
    rng = np.random.default_rng(0)
    (root / "LibriSpeech").mkdir(parents=True)
    (root / "LibriSpeech" / "README.TXT").write_text("LibriSpeech ASR corpus\n")
    for part, speakers in CHAPTERS.items():
        for spk, chapters in speakers.items():
            for chapter in chapters:
                folder = root / "LibriSpeech" / part / spk / chapter
                folder.mkdir(parents=True)
                lines = []
                for k in range(per_chapter):
                    uid = f"{spk}-{chapter}-{k:04d}"
                    lines.append(f"{uid} {' '.join(rng.choice(WORDS, size=3))}")
                    sf.write(folder / f"{uid}.flac", noise(0.2, 16000, k), 16000)
                (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def libri(tmp_path) -> Path:
    return write_librispeech(tmp_path / "corpus")


def make_tarball(path: Path, members: dict[str, bytes | None]) -> Path:
    """A .tar.gz of the given members (None = folder), written exactly as named."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def part_tarball(libri: Path, mirror: Path, part: str = "dev-clean") -> Path:
    """The part's archive as openslr ships it: LibriSpeech/<part>/... plus the docs."""
    mirror.mkdir(exist_ok=True)
    archive = mirror / f"{part}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(libri / "LibriSpeech" / "README.TXT", "LibriSpeech/README.TXT")
        tar.add(libri / "LibriSpeech" / part, f"LibriSpeech/{part}")
    return archive


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- LibriSpeech: prepare


def test_prepare_librispeech_writes_one_manifest_per_part(libri, tmp_path):
    paths = prepare_librispeech(libri, tmp_path / "out", parts=["dev-clean", "test-clean"])
    assert {p: path.name for p, path in paths.items()} == \
        {"dev-clean": "dev-clean.jsonl", "test-clean": "test-clean.jsonl"}
    dev = read_manifest(paths["dev-clean"])
    assert [u.id for u in dev] == [f"{s}-{c}-{k:04d}" for s, c in
                                   [("174", "50561"), ("174", "84280"), ("84", "121123")]
                                   for k in range(3)]
    trans = libri / "LibriSpeech/dev-clean/84/121123/84-121123.trans.txt"
    first = trans.read_text().splitlines()[0]
    by_id = {u.id: u for u in dev}
    assert by_id["84-121123-0000"].text == first.split(" ", 1)[1]
    for u in dev:
        assert u.speaker == u.id.split("-")[0]
        assert Path(u.audio).name == f"{u.id}.flac" and sf.info(u.audio).format == "FLAC"
    assert {u.speaker for u in read_manifest(paths["test-clean"])} == {"61"}


def test_prepare_librispeech_is_idempotent_and_takes_either_folder(libri, tmp_path):
    out, parts = tmp_path / "out", ["dev-clean", "test-clean"]
    first = {p: f.read_bytes() for p, f in prepare_librispeech(libri, out, parts).items()}
    second = {p: f.read_bytes() for p, f in prepare_librispeech(libri, out, parts).items()}
    inner = {p: f.read_bytes() for p, f in
             prepare_librispeech(libri / "LibriSpeech", out, parts).items()}
    assert first == second == inner
    assert sorted(p.name for p in out.iterdir()) == ["dev-clean.jsonl", "test-clean.jsonl"]


def test_relative_corpus_path(libri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = prepare_librispeech("corpus", "data/libri", ["test-clean"])["test-clean"]
    assert all(Path(u.audio).is_file() for u in read_manifest(path))


@pytest.mark.parametrize("line", ["84-121123-0001", "84-999999-0001 THE CAT",
                                  "85-121123-0001 THE CAT", "84-121123-x1 THE CAT",
                                  "THE CAT SAT"])
def test_malformed_transcript_line(libri, tmp_path, line):
    trans = libri / "LibriSpeech/dev-clean/84/121123/84-121123.trans.txt"
    lines = trans.read_text().splitlines()
    lines[1] = line
    trans.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match=r"84-121123\.trans\.txt:2: expected"):
        prepare_librispeech(libri, tmp_path / "out", ["dev-clean"])
    assert not (tmp_path / "out" / "dev-clean.jsonl").exists()


def test_transcript_line_without_its_flac(libri, tmp_path):
    (libri / "LibriSpeech/dev-clean/174/84280/174-84280-0002.flac").unlink()
    with pytest.raises(ManifestError,
                       match=r"174-84280\.trans\.txt:3: audio 174-84280-0002\.flac is missing"):
        prepare_librispeech(libri, tmp_path / "out", ["dev-clean"])


def test_bad_parts(libri, tmp_path):
    with pytest.raises(ConfigError, match="'dev-cleen'.*choose from dev-clean"):
        prepare_librispeech(libri, tmp_path / "out", ["dev-cleen"])
    with pytest.raises(ConfigError):
        prepare_librispeech(libri, tmp_path / "out", [])
    with pytest.raises(ManifestError, match=r"dev-other: missing; extract dev-other\.tar\.gz"):
        prepare_librispeech(libri, tmp_path / "out", ["dev-other"])
    with pytest.raises(ManifestError, match="no such folder"):
        prepare_librispeech(tmp_path / "nowhere", tmp_path / "out", ["dev-clean"])


# ---------------------------------------------------------------- LibriSpeech: download


def test_download_verifies_extracts_and_is_then_a_no_op(libri, tmp_path, monkeypatch):
    archive = part_tarball(libri, tmp_path / "mirror")
    monkeypatch.setitem(librispeech.MD5, "dev-clean", md5(archive))
    target, seen = tmp_path / "target", []
    download_librispeech(target, ["dev-clean"], archive.parent.as_uri(), progress=seen.append)
    assert sorted(p.name for p in target.iterdir()) == ["LibriSpeech"]  # archive removed
    assert sorted(p.name for p in (target / "LibriSpeech").iterdir()) == \
        ["README.TXT", "dev-clean"]
    size = archive.stat().st_size
    assert DownloadProgress("dev-clean.tar.gz", "download", size, size) in seen
    assert DownloadProgress("dev-clean.tar.gz", "verify", size, size) in seen
    assert [p.stage for p in seen][-1] == "extract"
    got = read_manifest(prepare_librispeech(target, tmp_path / "a", ["dev-clean"])["dev-clean"])
    ref = read_manifest(prepare_librispeech(libri, tmp_path / "b", ["dev-clean"])["dev-clean"])
    assert [(u.id, u.text) for u in got] == [(u.id, u.text) for u in ref]
    assert all(Path(u.audio).read_bytes() == Path(r.audio).read_bytes()
               for u, r in zip(got, ref))
    archive.unlink()  # a second run must not need the mirror at all
    download_librispeech(target, ["dev-clean"], archive.parent.as_uri())


def test_download_with_wrong_checksum_is_refused(libri, tmp_path, monkeypatch):
    archive = part_tarball(libri, tmp_path / "mirror")
    monkeypatch.setitem(librispeech.MD5, "dev-clean", "0" * 32)
    target = tmp_path / "target"
    with pytest.raises(AsrkitError, match=f"MD5 is {md5(archive)}, not the published 0+") as e:
        download_librispeech(target, ["dev-clean"], archive.parent.as_uri())
    assert e.type is AsrkitError
    assert list(target.iterdir()) == []  # the bad download is deleted, nothing unpacked


def test_archive_fetched_by_hand_is_verified_and_kept(libri, tmp_path, monkeypatch):
    target = tmp_path / "target"
    archive = part_tarball(libri, target)
    monkeypatch.setitem(librispeech.MD5, "dev-clean", md5(archive))
    nowhere = (tmp_path / "no-mirror").as_uri()
    download_librispeech(target, ["dev-clean"], nowhere)
    assert archive.exists() and (target / "LibriSpeech/dev-clean/84").is_dir()
    monkeypatch.setitem(librispeech.MD5, "test-clean", "f" * 32)
    part_tarball(libri, target, "test-clean")
    with pytest.raises(AsrkitError, match="test-clean.tar.gz: MD5 differs") as e:
        download_librispeech(target, ["test-clean"], nowhere)
    assert e.type is AsrkitError and (target / "test-clean.tar.gz").exists()


def test_stale_partial_download_is_replaced(libri, tmp_path, monkeypatch):
    archive = part_tarball(libri, tmp_path / "mirror")
    monkeypatch.setitem(librispeech.MD5, "dev-clean", md5(archive))
    target = tmp_path / "target"
    target.mkdir()
    (target / "dev-clean.tar.gz.partial").write_bytes(b"junk from an older attempt")
    download_librispeech(target, ["dev-clean"], archive.parent.as_uri())  # file: ignores Range
    assert (target / "LibriSpeech/dev-clean").is_dir()
    assert not (target / "dev-clean.tar.gz.partial").exists()


class PartialContent:
    """What an HTTP server answers to a Range request it honours."""

    def __init__(self, body: bytes):
        self.status, self.headers, self._body = 206, {"Content-Length": str(len(body))}, \
            io.BytesIO(body)

    def read(self, n: int) -> bytes:
        return self._body.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_interrupted_download_continues_with_a_range_request(libri, tmp_path, monkeypatch):
    archive = part_tarball(libri, tmp_path / "mirror")
    whole = archive.read_bytes()
    monkeypatch.setitem(librispeech.MD5, "dev-clean", md5(archive))
    target, half = tmp_path / "target", len(whole) // 2
    target.mkdir()
    (target / "dev-clean.tar.gz.partial").write_bytes(whole[:half])
    asked = []

    def urlopen(request, timeout):
        asked.append((request.full_url, request.get_header("Range")))
        return PartialContent(whole[half:])

    monkeypatch.setattr(librispeech.urllib.request, "urlopen", urlopen)
    seen = []
    download_librispeech(target, ["dev-clean"], "https://mirror.test/12", progress=seen.append)
    assert asked == [("https://mirror.test/12/dev-clean.tar.gz", f"bytes={half}-")]
    assert seen[0] == DownloadProgress("dev-clean.tar.gz", "download", len(whole), len(whole))
    assert (target / "LibriSpeech/dev-clean/84/121123").is_dir()


def test_unreachable_mirror(tmp_path):
    with pytest.raises(AsrkitError, match="dev-clean.tar.gz: download failed") as e:
        download_librispeech(tmp_path / "t", ["dev-clean"], (tmp_path / "none").as_uri())
    assert e.type is AsrkitError


@pytest.mark.parametrize("bad", ["../escaped.txt", "LibriSpeech/../../escaped.txt",
                                 "/tmp/asrkit-absolute-escape.txt"])
def test_tar_members_escaping_the_target_are_refused(tmp_path, bad):
    archive = make_tarball(tmp_path / "evil.tar.gz", {"LibriSpeech": None,
                                                      "LibriSpeech/ok.txt": b"fine",
                                                      bad: b"gotcha"})
    dest = tmp_path / "a" / "b"
    with pytest.raises(AsrkitError, match=f"refusing to extract '{bad}'") as e:
        safe_extract(archive, dest)
    assert e.type is AsrkitError
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not Path("/tmp/asrkit-absolute-escape.txt").exists()


def test_tar_links_are_refused(tmp_path):
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("LibriSpeech/passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(AsrkitError, match="links and special files"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out/LibriSpeech/passwd").exists()


def test_escaping_archive_leaves_no_partial_part(libri, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    flac = next((libri / "LibriSpeech/dev-clean").rglob("*.flac"))
    archive = make_tarball(mirror / "dev-clean.tar.gz", {
        "LibriSpeech/dev-clean/84/121123/x.flac": flac.read_bytes(),
        "LibriSpeech/dev-clean/../../../escaped.txt": b"gotcha"})
    monkeypatch.setitem(librispeech.MD5, "dev-clean", md5(archive))
    target = tmp_path / "target"
    with pytest.raises(AsrkitError, match="refusing to extract"):
        download_librispeech(target, ["dev-clean"], mirror.as_uri())
    # No scratch folder and no part; the verified download stays for the next attempt.
    assert [p.name for p in target.iterdir()] == ["dev-clean.tar.gz"]
    assert not list(tmp_path.rglob("escaped.txt"))


def test_damaged_or_wrong_archives(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a gzip file at all")
    with pytest.raises(AsrkitError, match="junk.tar.gz: cannot extract"):
        safe_extract(junk, tmp_path / "out")
    other = make_tarball(tmp_path / "dev-clean.tar.gz", {"LibriSpeech/test-clean/x": b"x"})
    with pytest.raises(AsrkitError, match="holds no LibriSpeech/dev-clean/ folder"):
        librispeech.extract_part(other, tmp_path / "t", "dev-clean")
    assert list((tmp_path / "t").iterdir()) == []


# ---------------------------------------------------------------- command line


def run(*args):
    app = typer.Typer()
    app.add_typer(data.app, name="data")
    return CliRunner().invoke(app, ["data", *map(str, args)])



def test_prepare_librispeech_command(libri, tmp_path, monkeypatch):
    archive = part_tarball(libri, tmp_path / "mirror")
    monkeypatch.setitem(librispeech.MD5, "dev-clean", md5(archive))
    target, out = tmp_path / "target", tmp_path / "out"
    result = run("prepare", "librispeech", "--data-dir", target, "--out", out, "--download",
                 "--part", "dev-clean", "--mirror", archive.parent.as_uri())
    assert result.exit_code == 0, result.output
    assert "dev-clean       9 utterances     2 speakers" in result.stdout
    assert f"next: asrkit data validate {out / 'dev-clean.jsonl'}" in result.stdout
    as_json = json.loads(run("prepare", "librispeech", "--data-dir", libri, "--out", out,
                             "--part", "dev-clean", "--part", "test-clean", "--json").stdout)
    assert {k: v["utterances"] for k, v in as_json["splits"].items()} == \
        {"dev-clean": 9, "test-clean": 3}
    bad = run("prepare", "librispeech", "--data-dir", libri, "--out", out, "--part", "dev")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: unknown LibriSpeech part")
