"""Manifests: round-trips, path resolution, malformed lines, Kaldi and folder importers."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from asrkit.errors import ManifestError
from asrkit.manifest import (Utterance, find_audio_files, import_folder, import_kaldi,
                             iter_manifest, read_manifest, write_manifest)

SR = 16_000


def wav(path: Path, seconds: float = 0.1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * SR), np.float32), SR, subtype="PCM_16")
    return path


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                            for x in lines), encoding="utf-8")
    return path


# --- round-trips and paths ---

def test_round_trip_relative_inside_absolute_outside(tmp_path):
    corpus, outside = tmp_path / "corpus", tmp_path / "elsewhere"
    inside_wav, outside_wav = wav(corpus / "wav" / "a.wav"), wav(outside / "b.wav")
    utts = [Utterance("a", str(inside_wav), "HELLO", 0.0, 1.5, "spk1"),
            Utterance("b", str(outside_wav), None, 0.25, None, None),
            Utterance("c", str(inside_wav), "ÉTÉ ünïcode", 1.0, 0.5, "spk2")]
    manifest = corpus / "m.jsonl"
    assert write_manifest(manifest, utts) == 3
    stored = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert stored[0]["audio"] == "wav/a.wav"  # below the manifest: relative
    assert stored[1]["audio"] == str(outside_wav.resolve())  # outside: absolute, no "../"
    assert "offset" not in stored[0] and "text" not in stored[1]  # defaults left out
    assert read_manifest(manifest) == utts
    # The corpus folder moves as a whole: relative paths follow it.
    moved = tmp_path / "moved"
    shutil.move(corpus, moved)
    back = read_manifest(moved / "m.jsonl")
    assert back[0].audio == str((moved / "wav" / "a.wav").resolve())
    assert back[1].audio == str(outside_wav.resolve())


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path, monkeypatch):
    wav(tmp_path / "data" / "x.wav")
    manifest = write_lines(tmp_path / "data" / "m.jsonl", [{"id": "x", "audio": "x.wav"}])
    monkeypatch.chdir(tmp_path)  # not the manifest's folder
    (utt,) = read_manifest("data/m.jsonl")
    assert Path(utt.audio) == (tmp_path / "data" / "x.wav").resolve()
    assert Path(utt.audio).is_file()


def test_write_absolute_when_asked(tmp_path):
    a = wav(tmp_path / "a.wav")
    write_manifest(tmp_path / "m.jsonl", [Utterance("a", str(a))], relative=False)
    assert json.loads((tmp_path / "m.jsonl").read_text())["audio"] == str(a.resolve())


texts = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=30))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(texts, st.floats(0, 1e4), st.one_of(st.none(), st.floats(0, 1e4)),
                          st.one_of(st.none(), st.text(min_size=1, max_size=8))),
                max_size=6))
def test_round_trip_property(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("rt")
    utts = [Utterance(f"u{i}", str(folder / f"{i}.wav"), text, offset, duration, spk)
            for i, (text, offset, duration, spk) in enumerate(records)]
    write_manifest(folder / "m.jsonl", utts)
    assert read_manifest(folder / "m.jsonl") == utts


def test_blank_lines_are_skipped(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('\n{"id": "a", "audio": "a.wav"}\n\n  \n{"id": "b", "audio": "b.wav"}\n')
    assert [u.id for u in iter_manifest(m)] == ["a", "b"]


def test_write_is_atomic_on_failure(tmp_path):
    m = tmp_path / "m.jsonl"
    write_manifest(m, [Utterance("a", "a.wav")])
    before = m.read_bytes()

    def broken():
        yield Utterance("b", "b.wav")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        write_manifest(m, broken())
    assert m.read_bytes() == before  # nothing lost
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]  # no temp file left


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat
    from asrkit.io import atomic_write_text
    fresh = tmp_path / "fresh.txt"
    atomic_write_text(fresh, "x")
    reference = tmp_path / "reference.txt"
    reference.write_text("x")  # what open() gives under this process's umask
    assert stat.S_IMODE(fresh.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    os.chmod(fresh, 0o640)
    atomic_write_text(fresh, "y")  # replacing a file keeps its permissions
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640


# --- malformed manifests: ManifestError naming file:line ---

GOOD = {"id": "ok", "audio": "a.wav"}


@pytest.mark.parametrize("bad,message", [
    ('{"id": "x", "audio": ', "not valid JSON"),
    ('["id", "audio"]', "expected a JSON object"),
    ({"audio": "a.wav"}, "'id'"),
    ({"id": "x"}, "'audio'"),
    ({"id": "", "audio": "a.wav"}, "'id'"),
    ({"id": 5, "audio": "a.wav"}, "'id'"),
    ({"id": "x", "audio": "a.wav", "text": 3}, "'text'"),
    ({"id": "x", "audio": "a.wav", "duration": -1.0}, "'duration'"),
    ({"id": "x", "audio": "a.wav", "offset": -0.5}, "'offset'"),
    ({"id": "x", "audio": "a.wav", "duration": "2s"}, "'duration'"),
    ({"id": "x", "audio": "a.wav", "duration": True}, "'duration'"),
    ('{"id": "x", "audio": "a.wav", "duration": NaN}', "'duration'"),
    ('{"id": "x", "audio": "a.wav", "offset": Infinity}', "'offset'"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, message):
    m = write_lines(tmp_path / "m.jsonl", [GOOD, {"id": "ok2", "audio": "b.wav"}, bad])
    with pytest.raises(ManifestError, match=message) as err:
        read_manifest(m)
    assert f"m.jsonl:3:" in str(err.value)


def test_non_utf8_line_names_its_line(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": "\xff", "audio": "a"}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: not valid UTF-8"):
        read_manifest(m)


def test_duplicate_ids(tmp_path):
    m = write_lines(tmp_path / "m.jsonl", [GOOD, {"id": "b", "audio": "b.wav"}, GOOD])
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: duplicate id 'ok'"):
        read_manifest(m)


def test_iterating_yields_good_lines_before_the_error(tmp_path):
    m = write_lines(tmp_path / "m.jsonl", [GOOD, "oops"])
    it = iter_manifest(m)
    assert next(it).id == "ok"
    with pytest.raises(ManifestError, match=":2:"):
        next(it)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ManifestError):
        read_manifest(tmp_path)  # a folder is not a manifest


def test_root_refuses_paths_that_escape(tmp_path):
    root = tmp_path / "root"
    wav(root / "in.wav")
    wav(tmp_path / "secret.wav")
    ok = write_lines(root / "ok.jsonl", [{"id": "a", "audio": "in.wav"}])
    assert len(read_manifest(ok, root=root)) == 1
    for audio in ("../secret.wav", str(tmp_path / "secret.wav"), "sub/../../secret.wav"):
        m = write_lines(root / "bad.jsonl", [{"id": "a", "audio": "in.wav"},
                                             {"id": "b", "audio": audio}])
        with pytest.raises(ManifestError, match=r"bad\.jsonl:2: .*outside the allowed root"):
            read_manifest(m, root=root)
    assert len(read_manifest(m)) == 2  # without a root, any path is allowed


def test_root_refuses_symlink_escape(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(wav(tmp_path / "secret.wav"), root / "link.wav")
    m = write_lines(root / "m.jsonl", [{"id": "a", "audio": "link.wav"}])
    with pytest.raises(ManifestError, match="outside the allowed root"):
        read_manifest(m, root=root)


# --- Kaldi data directories ---

def kaldi_dir(tmp_path: Path, segments: bool, utt2spk: bool) -> Path:
    d = tmp_path / "kaldi"
    d.mkdir()
    wav(tmp_path / "audio" / "rec1.wav", 3.0)
    wav(tmp_path / "audio" / "rec2.wav", 2.0)
    (d / "wav.scp").write_text(f"rec1 {tmp_path / 'audio' / 'rec1.wav'}\n"
                               "rec2 ../audio/rec2.wav\n")  # absolute and relative
    if segments:
        (d / "segments").write_text("rec1-a rec1 0.00 1.25\nrec1-b rec1 1.50 2.75\n"
                                    "rec2-a rec2 0.2 1.0\n")
        (d / "text").write_text("rec1-a HELLO WORLD\nrec1-b GOOD  BYE\nrec2-a YES\n")
        if utt2spk:
            (d / "utt2spk").write_text("rec1-a alice\nrec1-b alice\nrec2-a bob\n")
    else:
        (d / "text").write_text("rec1 HELLO WORLD\nrec2 YES\n")
        if utt2spk:
            (d / "utt2spk").write_text("rec1 alice\nrec2 bob\n")
    return d


@pytest.mark.parametrize("utt2spk", [True, False])
def test_kaldi_without_segments(tmp_path, utt2spk):
    utts = import_kaldi(kaldi_dir(tmp_path, segments=False, utt2spk=utt2spk))
    assert [(u.id, u.text, u.offset, u.duration) for u in utts] == [
        ("rec1", "HELLO WORLD", 0.0, None), ("rec2", "YES", 0.0, None)]
    assert [u.speaker for u in utts] == (["alice", "bob"] if utt2spk else [None, None])
    assert all(Path(u.audio).is_file() for u in utts)
    assert utts[1].audio == str((tmp_path / "audio" / "rec2.wav").resolve())


@pytest.mark.parametrize("utt2spk", [True, False])
def test_kaldi_with_segments(tmp_path, utt2spk):
    utts = import_kaldi(kaldi_dir(tmp_path, segments=True, utt2spk=utt2spk))
    got = [(u.id, Path(u.audio).name, u.offset, u.duration, u.text) for u in utts]
    assert got == [("rec1-a", "rec1.wav", 0.0, 1.25, "HELLO WORLD"),
                   ("rec1-b", "rec1.wav", 1.5, pytest.approx(1.25), "GOOD  BYE"),
                   ("rec2-a", "rec2.wav", 0.2, pytest.approx(0.8), "YES")]
    assert [u.speaker for u in utts] == (["alice", "alice", "bob"] if utt2spk else [None] * 3)


def test_kaldi_import_writes_a_readable_manifest(tmp_path):
    utts = import_kaldi(kaldi_dir(tmp_path, segments=True, utt2spk=True))
    write_manifest(tmp_path / "m.jsonl", utts)
    assert read_manifest(tmp_path / "m.jsonl") == utts


def test_kaldi_piped_wav_scp_is_refused(tmp_path):
    d = kaldi_dir(tmp_path, segments=False, utt2spk=False)
    (d / "wav.scp").write_text("rec1 sox rec1.sph -t wav - |\n")
    with pytest.raises(ManifestError, match="command pipe"):
        import_kaldi(d)


@pytest.mark.parametrize("name,content,message", [
    ("segments", "rec1-a rec1 0.0\n", r"segments:1: expected"),
    ("segments", "rec1-a nowhere 0.0 1.0\n", "not in wav.scp"),
    ("segments", "rec1-a rec1 zero 1.0\n", "not a number"),
    ("wav.scp", "rec1\n", r"wav\.scp:1: expected"),
])
def test_kaldi_malformed_files(tmp_path, name, content, message):
    d = kaldi_dir(tmp_path, segments=True, utt2spk=False)
    (d / name).write_text(content)
    with pytest.raises(ManifestError, match=message):
        import_kaldi(d)


def test_kaldi_missing_wav_scp(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="wav.scp"):
        import_kaldi(tmp_path / "empty")


# --- folders of audio + .txt ---

def test_folder_import(tmp_path):
    wav(tmp_path / "d" / "a.wav")
    (tmp_path / "d" / "a.txt").write_text("  first one \n")
    wav(tmp_path / "d" / "sub" / "b.flac")  # soundfile picks FLAC from the extension
    (tmp_path / "d" / "sub" / "b.txt").write_text("second")
    (tmp_path / "d" / "notes.md").write_text("not audio")
    (tmp_path / "d" / ".hidden.wav").write_text("editor backup, ignored")
    utts = import_folder(tmp_path / "d")
    assert [(u.id, u.text, Path(u.audio).name) for u in utts] == [
        ("a", "first one", "a.wav"), ("sub/b", "second", "b.flac")]


def test_folder_missing_transcript(tmp_path):
    wav(tmp_path / "a.wav")
    wav(tmp_path / "b.wav")
    (tmp_path / "a.txt").write_text("A")
    with pytest.raises(ManifestError, match=r"b\.wav: no transcript b\.txt"):
        import_folder(tmp_path)
    utts = import_folder(tmp_path, require_text=False)
    assert [(u.id, u.text) for u in utts] == [("a", "A"), ("b", None)]


def test_folder_import_not_a_folder(tmp_path):
    with pytest.raises(ManifestError, match="not a folder"):
        import_folder(tmp_path / "nope")


def test_symlink_loop_is_not_followed_twice(tmp_path):
    root = tmp_path / "root"
    wav(root / "a.wav")
    wav(root / "sub" / "b.wav")
    os.symlink(root, root / "sub" / "loop")  # root/sub/loop/sub/loop/... forever
    os.symlink(root / "sub", root / "again")  # a second route to the same folder
    found = find_audio_files(root)
    assert sorted(p.name for p in found) == ["a.wav", "b.wav"]


def test_symlinked_folder_elsewhere_is_followed(tmp_path):
    wav(tmp_path / "other" / "c.wav")
    wav(tmp_path / "root" / "a.wav")
    os.symlink(tmp_path / "other", tmp_path / "root" / "linked")
    assert [p.name for p in find_audio_files(tmp_path / "root")] == ["a.wav", "c.wav"]


# --- the import commands, as a user types them ---

def run_data(*args):
    import typer
    from typer.testing import CliRunner

    from asrkit.cli import data
    app = typer.Typer()
    app.add_typer(data.app, name="data")
    return CliRunner().invoke(app, ["data", *map(str, args)])


def test_cli_import_kaldi(tmp_path):
    d = kaldi_dir(tmp_path, segments=True, utt2spk=True)
    out = tmp_path / "out" / "m.jsonl"
    result = run_data("import", "kaldi", d, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"manifest": str(out), "utterances": 3,
                                         "with_text": 3, "speakers": 2}
    assert read_manifest(out) == import_kaldi(d)


def test_cli_import_kaldi_error(tmp_path):
    d = kaldi_dir(tmp_path, segments=False, utt2spk=False)
    (d / "wav.scp").write_text("rec1 cat x.wav |\n")
    result = run_data("import", "kaldi", d, "--out", tmp_path / "m.jsonl")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "command pipe" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.jsonl").exists()


def test_cli_import_folder(tmp_path):
    wav(tmp_path / "in" / "a.wav")
    (tmp_path / "in" / "a.txt").write_text("hi")
    wav(tmp_path / "in" / "b.wav")
    out = tmp_path / "m.jsonl"
    result = run_data("import", "folder", tmp_path / "in", "--out", out)
    assert result.exit_code == 1 and "no transcript b.txt" in result.stderr
    result = run_data("import", "folder", tmp_path / "in", "--out", out, "--allow-missing-text")
    assert result.exit_code == 0, result.output
    assert "2 utterances (1 with transcripts" in result.stdout
    assert [(u.id, u.text) for u in read_manifest(out)] == [("a", "hi"), ("b", None)]
