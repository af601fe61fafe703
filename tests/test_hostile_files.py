"""Hostile files, table-driven, through the real CLI: broken audio of every kind and
every format soundfile writes; user text files (manifests, lexicons, LM text, ARPA
files); the folder and Kaldi importers. The exit codes and the one-line error contract
are test_hostile.py's (options, configs and decoding settings are tested there)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from test_hostile import RATE, assert_error, no_traceback, run, tiny, tone, wav  # noqa: F401

# --- audio: every kind of broken file, and every format soundfile writes ----------------

BROKEN_AUDIO = {  # file: (how it is made, regex of the reason given)
    "empty.wav": (lambda p: p.write_bytes(b""), "not a readable audio file"),
    "header_only.wav": (lambda p: sf.write(p, np.zeros(0, np.float32), RATE, subtype="PCM_16"),
                        "holds no audio samples"),
    "garbage.wav": (lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)),
                    "not a readable audio file"),
    "garbage.flac": (lambda p: p.write_bytes(b"fLaC" + bytes(300)), "not a readable|unreadable"),
    "truncated.wav": (lambda p: (sf.write(p, tone(1.0), RATE, subtype="PCM_16"),
                                 p.write_bytes(p.read_bytes()[:9000])), "truncated"),
    "one_sample.wav": (lambda p: sf.write(p, np.full(1, 0.5, np.float32), RATE,
                                          subtype="PCM_16"), "too short"),
    "ten_ms.wav": (lambda p: sf.write(p, tone(0.01), RATE, subtype="PCM_16"), "too short"),
    "nan.wav": (lambda p: sf.write(p, np.full(RATE // 2, np.nan, np.float32), RATE,
                                   subtype="FLOAT"), "NaN or infinite"),
    "inf.wav": (lambda p: sf.write(p, np.where(tone(0.5) > 0, np.inf, 0).astype(np.float32),
                                   RATE, subtype="FLOAT"), "NaN or infinite"),
    "text.wav": (lambda p: p.write_text("RIFF but not really\n"), "not a readable audio file"),
}
SUBTYPES = ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"]
RATES = [8000, 22050, 44100, 48000]
CHANNELS = [1, 2, 3, 4, 5, 6]
FORMAT_SECONDS = 0.25


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    """Every broken file, and a good file for each sample format × rate × channel count."""
    folder = tmp_path_factory.mktemp("hostile") / "audio"
    (folder / "broken").mkdir(parents=True)
    (folder / "good").mkdir()
    for name, (make, _) in BROKEN_AUDIO.items():
        make(folder / "broken" / name)
    for subtype in SUBTYPES:
        for rate in RATES:
            for channels in CHANNELS:
                sf.write(folder / "good" / f"{subtype}_{rate}_{channels}.wav",
                         tone(FORMAT_SECONDS, rate, channels), rate, subtype=subtype)
    return folder


def _good_names():
    return [f"{s}_{r}_{c}" for s in SUBTYPES for r in RATES for c in CHANNELS]


@pytest.fixture(scope="module")
def transcribed(tiny, audio_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("tr") / "out.jsonl"
    result = run("transcribe", "-m", tiny, audio_folder, "-f", "jsonl", "-o", out)
    records = {json.loads(x)["id"]: json.loads(x) for x in out.read_text().splitlines()}
    return result, records


def test_transcribe_broken_audio_is_partial_success(transcribed):
    result, records = transcribed
    no_traceback(result)
    assert result.exit_code == 3, result.output
    assert len(records) == len(_good_names())


@pytest.mark.parametrize("name", sorted(BROKEN_AUDIO))
def test_transcribe_skips_each_broken_file_naming_it(transcribed, name):
    result, records = transcribed
    reason = BROKEN_AUDIO[name][1]
    assert any(name in line and re.search(reason, line) for line in result.stderr.splitlines()), \
        result.stderr
    assert f"broken/{Path(name).stem}" not in records


@pytest.mark.parametrize("name", _good_names())
def test_transcribe_reads_every_format_rate_and_channel_count(transcribed, name):
    _, records = transcribed
    record = records[f"good/{name}"]
    assert record["duration"] == pytest.approx(FORMAT_SECONDS, abs=0.04)
    assert set(record["text"]) <= set(" AB")


@pytest.mark.parametrize("name", sorted(BROKEN_AUDIO))
def test_evaluate_lists_broken_audio_and_scores_the_rest(tiny, audio_folder, tmp_path, name):
    records = [{"id": "good", "audio": str(audio_folder / "good" / "PCM_16_8000_1.wav"),
                "text": "AB"},
               {"id": "bad", "audio": str(audio_folder / "broken" / name), "text": "AB"}]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run("evaluate", tiny, m, "--json")
    no_traceback(result)
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["utterances"] == 1
    assert re.search(BROKEN_AUDIO[name][1], result.stderr)


@pytest.fixture(scope="module")
def aligned(tiny, audio_folder, tmp_path_factory):
    """`align` over a manifest of every broken file and a few good ones, each with text."""
    folder = tmp_path_factory.mktemp("align")
    good = [audio_folder / "good" / f"{n}.wav" for n in _good_names()[:3]]
    records = [{"id": name, "audio": str(audio_folder / "broken" / name), "text": "AB"}
               for name in sorted(BROKEN_AUDIO)]
    records += [{"id": p.stem, "audio": str(p), "text": "AB"} for p in good]
    (folder / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run("align", tiny, "--manifest", folder / "m.jsonl", "-o", folder / "a.jsonl")
    aligned = [json.loads(x)["id"] for x in (folder / "a.jsonl").read_text().splitlines()]
    return result, aligned, [p.stem for p in good]


def test_align_broken_audio_is_partial_success(aligned):
    result, done, good = aligned
    no_traceback(result)
    assert result.exit_code == 3, result.output
    assert sorted(done) == sorted(good)


@pytest.mark.parametrize("name", sorted(BROKEN_AUDIO))
def test_align_skips_each_broken_file_naming_it(aligned, name):
    result, done, _ = aligned
    assert any(line.startswith(f"  {name}: ") and re.search(BROKEN_AUDIO[name][1], line)
               for line in result.stderr.splitlines()), result.stderr
    assert name not in done


def test_evaluate_with_nothing_scored_is_an_error(tiny, audio_folder, tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"id": "a", "audio": str(audio_folder / "broken" / "one_sample.wav"),
                             "text": "A"}) + "\n")
    result = run("evaluate", tiny, m)
    no_traceback(result)
    assert result.exit_code == 1 and "WER" not in result.stdout
    assert result.stderr.splitlines()[-1].startswith("error: ") and "m.jsonl" in result.stderr


@pytest.mark.parametrize("command", ["evaluate", "search eval"])
def test_empty_manifest_is_an_error_not_a_score(tiny, tmp_path, command):
    m = tmp_path / "empty.jsonl"
    m.write_text("\n\n")
    args = [tiny, m] if command == "evaluate" else [m]
    result = run(*command.split(), *args)
    assert_error(result, 1, "empty.jsonl")
    assert "WER" not in result.stdout and "MAP" not in result.stdout


def test_search_eval_without_a_repeated_word_is_an_error(audio_folder, tmp_path):
    m = tmp_path / "words.jsonl"
    good = audio_folder / "good"
    m.write_text(json.dumps({"id": "a", "audio": str(good / "PCM_16_8000_1.wav"),
                             "text": "YES"}) + "\n" +
                 json.dumps({"id": "b", "audio": str(good / "PCM_24_8000_1.wav"),
                             "text": "NO"}) + "\n")
    assert_error(run("search", "eval", m), 1, "spoken twice")


# --- user text files: manifests, lexicons, LM text and ARPA files --------------------

def _manifest_line(audio: Path) -> bytes:
    return json.dumps({"id": "a", "audio": str(audio), "text": "AB"}).encode()


TEXT_CLASSES = {  # name: (bytes from a good line, error regex or None when handled)
    "bom": (lambda line: b"\xef\xbb\xbf" + line + b"\n", None),
    "crlf": (lambda line: line + b"\r\n" + line.replace(b'"a"', b'"b"') + b"\r\n", None),
    "not_utf8": (lambda line: line + b"\n" + line.replace(b'"AB"', b'"\xe9t\xe9"') + b"\n",
                 r":2: .*not valid UTF-8"),
    "nul": (lambda line: line + b"\n" + b"\x00" * 8 + b"\n", r":2: "),
    "binary": (lambda line: bytes(range(256)), r":1: "),
}


@pytest.mark.parametrize("command", ["transcribe", "evaluate", "data validate", "train"])
@pytest.mark.parametrize("case", sorted(TEXT_CLASSES))
def test_manifest_text_classes(tiny, wav, tmp_path, command, case):
    make, error = TEXT_CLASSES[case]
    m = tmp_path / "m.jsonl"
    m.write_bytes(make(_manifest_line(wav)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.jsonl").write_text("finished earlier\n")
    args = {"transcribe": ["transcribe", "-m", tiny, m, "-f", "jsonl", "-o", out / "old.jsonl"],
            "evaluate": ["evaluate", tiny, m, "--results", out / "old.jsonl"],
            "data validate": ["data", "validate", m, "--model", tiny],
            "train": ["train", "--train", m, "--valid", m, "--out", out, "--set",
                      "train.max_steps=1", "--set", "model.hidden=8", "--set", "model.layers=1",
                      "--set", "train.threads=1", "--set", "features.n_mels=20"]}[command]
    result = run(*args)
    no_traceback(result)
    if error is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    assert re.search("m.jsonl" + error, result.output), result.output
    if command != "data validate":  # validate prints a report of every problem
        assert_error(result, 1, "m.jsonl")
    assert (out / "old.jsonl").read_text() == "finished earlier\n"


@pytest.fixture(scope="module")
def arpa(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "lm.arpa"
    path.write_text("\\data\\\nngram 1=4\nngram 2=1\n\n\\1-grams:\n-1.0\t<s>\t-0.3\n"
                    "-0.5\t</s>\n-0.5\tAB\t-0.2\n-0.7\t<unk>\n\n\\2-grams:\n-0.2\t<s> AB\n"
                    "\n\\end\\\n", encoding="utf-8")
    return path


LEXICONS = {  # name: (bytes, error regex or None)
    "plain": (b"AB\nBA\n", None),
    "bom_crlf": (b"\xef\xbb\xbfAB\r\nBA\r\n", None),
    "pronunciations": (b"AB A B\nBA B A\n", None),
    "not_utf8": (b"AB\n\xe9t\xe9\n", r"w\.txt:2: not valid UTF-8"),
    "nul": (b"AB\nB\x00A\n", r"w\.txt:2: .*NUL"),
    "binary": (bytes(range(256)), r"w\.txt:1"),
    "empty": (b"\n\n", r"w\.txt: the lexicon holds no words"),
    "unspellable": (b"XYZ\n", r"no lexicon word can be spelled"),
}


@pytest.mark.parametrize("case", sorted(LEXICONS))
def test_lexicon_text_classes(tiny, wav, tmp_path, case):
    data, error = LEXICONS[case]
    (tmp_path / "w.txt").write_bytes(data)
    result = run("transcribe", "-m", tiny, wav, "--decoder", "beam", "--beam-size", "2",
                 "--lexicon", tmp_path / "w.txt")
    if error is None:
        no_traceback(result)
        assert result.exit_code == 0, result.output
        assert set(result.stdout.split()[-1:]) <= {"AB", "BA", "a"}
    else:
        assert re.search(error, assert_error(result, 1))


ARPA_FILES = {  # name: (how the good ARPA text is spoiled, error regex or None)
    "bom": (lambda t: b"\xef\xbb\xbf" + t, None),
    "crlf": (lambda t: t.replace(b"\n", b"\r\n"), None),
    "gzipped": (lambda t: gzip.compress(t), None),
    "not_utf8": (lambda t: t.replace(b"AB", b"\xe9\xe9"), "not a UTF-8 ARPA file"),
    "nul": (lambda t: t.replace(b"-0.5\tAB", b"-0.5\tA\x00B\x00\x00"), r"lm\.\w+:\d+: .*NUL"),
    "binary": (lambda t: bytes(range(256)), r"lm\.\w+"),
    "empty": (lambda t: b"", r"lm\.\w+:?\d*: expected '\\data\\'"),
    "no_end": (lambda t: t.replace(b"\\end\\", b""), r"lm\.\w+: the file ends inside"),
    "count_mismatch": (lambda t: t.replace(b"ngram 1=4", b"ngram 1=5"), r"promises 5"),
    "nan_prob": (lambda t: t.replace(b"-0.5\tAB", b"nan\tAB"), r"lm\.\w+:\d+"),
    "positive_prob": (lambda t: t.replace(b"-0.5\tAB", b"2.5\tAB"), r"lm\.\w+:\d+"),
    "word_prob": (lambda t: t.replace(b"-0.5\tAB", b"high\tAB"), r"lm\.\w+:\d+: not a number"),
    "missing_field": (lambda t: t.replace(b"-0.5\tAB", b"-0.5"), r"lm\.\w+:\d+"),
    "bad_gzip": (lambda t: gzip.compress(t)[:30], r"lm\.\w+"),
    # What KenLM and SRILM write for an n-gram that never occurs (<s> as a word): read.
    "minus_inf_prob": (lambda t: t.replace(b"-1.0\t<s>", b"-inf\t<s>"), None),
    "srilm_minus_99": (lambda t: t.replace(b"-1.0\t<s>", b"-99\t<s>"), None),
    # No tool writes these; KenLM refuses a non-finite backoff too.
    "inf_prob": (lambda t: t.replace(b"-0.5\tAB", b"inf\tAB"), r"lm\.arpa:8: log10 probability"),
    "nan_backoff": (lambda t: t.replace(b"\t-0.3", b"\tnan"), r"lm\.arpa:6: backoff"),
    "inf_backoff": (lambda t: t.replace(b"\t-0.2\n", b"\tinf\n"), r"lm\.arpa:8: backoff"),
    "minus_inf_backoff": (lambda t: t.replace(b"\t-0.3", b"\t-inf"), r"lm\.arpa:6: backoff"),
}


@pytest.mark.parametrize("case", sorted(ARPA_FILES))
def test_arpa_file_classes(tiny, wav, arpa, tmp_path, case):
    spoil, error = ARPA_FILES[case]
    path = tmp_path / ("lm.arpa.gz" if case in ("gzipped", "bad_gzip") else "lm.arpa")
    path.write_bytes(spoil(arpa.read_bytes()))
    result = run("transcribe", "-m", tiny, wav, "--decoder", "beam", "--beam-size", "2",
                 "--lm", path)
    if error is None:
        no_traceback(result)
        assert result.exit_code == 0, result.output
    else:
        assert re.search(error, assert_error(result, 1))


@pytest.mark.parametrize("case,data,error", [
    ("not_utf8", b"AB BA\n\xe9t\xe9\n", r"t\.txt:2: not valid UTF-8"),
    ("nul", b"AB BA\nAB\x00\n", r"t\.txt:2: .*NUL"),
    ("empty", b"\n", r"holds no words"),
])
def test_lm_build_text_classes(tmp_path, case, data, error):
    (tmp_path / "t.txt").write_bytes(data)
    result = run("lm", "build", tmp_path / "t.txt", "-o", tmp_path / "lm.arpa")
    assert re.search(error, assert_error(result, 1))
    assert not (tmp_path / "lm.arpa").exists()


def test_lm_build_reads_bom_and_crlf(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbfab ba\r\nab\r\n")
    result = run("lm", "build", tmp_path / "t.txt", "-o", tmp_path / "lm.arpa")
    assert result.exit_code == 0, result.output
    assert "\ufeff" not in (tmp_path / "lm.arpa").read_text(encoding="utf-8")


# --- importers: never a manifest that reading or `data validate` refuses --------------

def _validates(manifest: Path) -> None:
    result = run("data", "validate", manifest)
    no_traceback(result)
    assert result.exit_code == 0, result.output


def test_folder_import_same_stem_bom_and_crlf(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(0.5), RATE, subtype="PCM_16")
    sf.write(folder / "a.flac", tone(0.5), RATE)
    (folder / "a.txt").write_bytes(b"\xef\xbb\xbfHELLO\r\n  THERE \r\n")
    sf.write(folder / "b.wav", tone(0.5), RATE, subtype="PCM_16")
    (folder / "b.txt").write_bytes(b"B\r\n")
    result = run("data", "import", "folder", folder, "--out", tmp_path / "m.jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["a.flac", "a.wav", "b"]
    assert {r["text"] for r in records} == {"HELLO THERE", "B"}
    _validates(tmp_path / "m.jsonl")


@pytest.mark.parametrize("case,data,named", [
    ("nul", b"HELLO\n\x00\x00\n", r"a\.txt:2: .*NUL"),
    ("not_utf8", b"H\xe9LLO\n", r"a\.txt:1: not valid UTF-8"),
])
def test_folder_import_refuses_a_bad_transcript(tmp_path, case, data, named):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(0.5), RATE, subtype="PCM_16")
    (folder / "a.txt").write_bytes(data)
    result = run("data", "import", "folder", folder, "--out", tmp_path / "m.jsonl")
    assert re.search(named, assert_error(result, 1))
    assert not (tmp_path / "m.jsonl").exists()


def _kaldi(folder: Path, wav: Path, **files: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"wav.scp": f"r1 {wav}\nr2 {wav}\n".encode(), "text": b"u1 AB\nu2 BA\n",
              "segments": b"u1 r1 0.0 0.2\nu2 r2 0.1 -1\n"}
    for name, data in {**tables, **files}.items():
        if data is not None:
            (folder / name).write_bytes(data)
    return folder


def test_kaldi_import_bom_crlf_and_open_end_segments(wav, tmp_path):
    d = _kaldi(tmp_path / "k", wav, **{"wav.scp": f"\ufeffr1 {wav}\r\nr2 {wav}\r\n".encode(),
                                       "text": b"\xef\xbb\xbfu1 AB\r\nu2 BA\r\n"})
    result = run("data", "import", "kaldi", d, "--out", tmp_path / "m.jsonl")
    assert result.exit_code == 0, result.output
    records = {json.loads(x)["id"]: json.loads(x)
               for x in (tmp_path / "m.jsonl").read_text().splitlines()}
    assert records["u1"]["text"] == "AB" and records["u1"]["duration"] == pytest.approx(0.2)
    assert "duration" not in records["u2"] and records["u2"]["offset"] == pytest.approx(0.1)
    _validates(tmp_path / "m.jsonl")


KALDI_BAD = {
    "text_not_utf8": ({"text": b"u1 AB\nu2 \xe9\n"}, r"text:2: not valid UTF-8"),
    "wav_scp_nul": ({"wav.scp": b"r1 a.wav\n\x00\n"}, r"wav\.scp:2: .*NUL"),
    "repeated_recording": ({"wav.scp": b"r1 a.wav\nr1 b.wav\n"}, r"wav\.scp:2: 'r1' is listed twice"),
    "repeated_segment": ({"segments": b"u1 r1 0 0.2\nu1 r2 0 0.2\n"}, r"segments:2: duplicate"),
    "end_before_start": ({"segments": b"u1 r1 0.5 0.2\n"}, r"segments:1: .*start <= end"),
    "negative_start": ({"segments": b"u1 r1 -1 0.2\n"}, r"segments:1: .*start <= end"),
    "nan_time": ({"segments": b"u1 r1 nan 0.2\n"}, r"segments:1: .*start <= end"),
    "word_time": ({"segments": b"u1 r1 zero 0.2\n"}, r"segments:1: 'zero' is not a number"),
}


@pytest.mark.parametrize("case", sorted(KALDI_BAD))
def test_kaldi_import_refuses_bad_tables(wav, tmp_path, case):
    files, named = KALDI_BAD[case]
    d = _kaldi(tmp_path / "k", wav, **files)
    result = run("data", "import", "kaldi", d, "--out", tmp_path / "m.jsonl")
    assert re.search(named, assert_error(result, 1))
    assert not (tmp_path / "m.jsonl").exists()
