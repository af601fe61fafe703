"""Property tests for every parser of user files (manifests, imported Kaldi and corpus
tables, lexicons, ARPA files and LM text, configs, model and embedder files) and option
syntax: whatever the input,
the only exception is one of the package's own (:class:`asrkit.errors.AsrkitError`),
and what a writer writes, the reader reads back unchanged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asrkit.asr.checkpoint import load_record
from asrkit.asr.config import LIMITS, ExperimentConfig, config_from_dict, load_config
from asrkit.conditions import parse_conditions
from asrkit.corpora.an4 import read_an4_split
from asrkit.corpora.commonvoice import read_commonvoice_split
from asrkit.corpora.librispeech import read_librispeech_part
from asrkit.corpora.speechocean762 import read_speechocean762_split
from asrkit.decoding import make_decoder
from asrkit.decoding.config import CONFIG_KEYS, load_decoding_config, save_decoding_config
from asrkit.decoding.lexicon import read_lexicon
from asrkit.errors import AsrkitError, ConfigError
from asrkit.lm.estimate import estimate_kneser_ney, read_sentences
from asrkit.lm.ngram import read_arpa, write_arpa
from asrkit.manifest import (Utterance, import_folder, import_kaldi, iter_manifest,
                             write_manifest)
from asrkit.search.embedding import load_embedder
from asrkit.shard import Shard, parse_shard
from asrkit.text import Vocabulary

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6)
# Lines that look like text files: printable text, with now and then a control
# character, a BOM, a CR or a byte that is not UTF-8.
noisy_bytes = st.lists(
    st.one_of(st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
              st.sampled_from([b"\xef\xbb\xbf", b"\r\n", b"\n", b"\x00", b"\xff", b"\xe9",
                               b"\t", b" "])),
    max_size=12).map(b"".join)


def parses_or_refuses(parse):
    """Call ``parse()``; an AsrkitError is a fine answer, anything else fails the test."""
    try:
        return parse()
    except AsrkitError as e:
        assert str(e) and "\n" not in str(e).strip(), repr(e)  # one line for the CLI
        return None


# --- manifests ------------------------------------------------------------------------

@SETTINGS
@given(data=noisy_bytes)
def test_manifest_reader_on_any_bytes(tmp_path, data):
    path = tmp_path / "m.jsonl"
    path.write_bytes(data)
    parses_or_refuses(lambda: list(iter_manifest(path)))


@SETTINGS
@given(records=st.lists(st.dictionaries(
    st.sampled_from(["id", "audio", "text", "offset", "duration", "speaker", "x"]),
    json_values, max_size=7), max_size=4))
def test_manifest_reader_on_any_json_objects(tmp_path, records):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in records))
    utts = parses_or_refuses(lambda: list(iter_manifest(path)))
    for utt in utts or ():
        assert utt.offset >= 0 and (utt.duration is None or math.isfinite(utt.duration))


@SETTINGS
@given(utts=st.lists(st.builds(
    Utterance, id=st.text(min_size=1, max_size=8), audio=st.text(min_size=1, max_size=8),
    text=st.none() | st.text(max_size=10),
    offset=st.floats(0, 1e4) | st.floats(allow_nan=True) | st.just(-1.0),
    duration=st.none() | st.floats(0, 1e4) | st.just(math.inf)), max_size=4))
def test_manifest_writer_writes_only_what_reads_back(tmp_path, utts):
    """write_manifest refuses what iter_manifest would refuse, and nothing else."""
    path = tmp_path / "m.jsonl"
    path.unlink(missing_ok=True)
    utts = [Utterance(u.id, str(tmp_path / u.audio.replace("/", "_").replace("\0", "_")),
                      u.text, u.offset, u.duration) for u in utts]
    if parses_or_refuses(lambda: write_manifest(path, utts)) is None:
        assert not path.exists()
        return
    assert [u.id for u in iter_manifest(path)] == [u.id for u in utts]


@SETTINGS
@given(text=noisy_bytes)
def test_folder_import_of_any_transcript(tmp_path, text):
    folder = tmp_path / "f"
    folder.mkdir(exist_ok=True)
    sf.write(folder / "a.wav", np.zeros(160, np.float32), 16000, subtype="PCM_16")
    (folder / "a.txt").write_bytes(text)
    utts = parses_or_refuses(lambda: import_folder(folder))
    if utts is not None:
        out = tmp_path / "m.jsonl"
        write_manifest(out, utts)
        back = list(iter_manifest(out))
        assert [u.text for u in back] == [u.text for u in utts]
        assert "\r" not in back[0].text and "\n" not in back[0].text


# --- ARPA files ------------------------------------------------------------------------

ARPA_HEAD = "\\data\\\nngram 1=2\n\n\\1-grams:\n"


@SETTINGS
@given(body=st.text(max_size=200), head=st.booleans())
def test_arpa_reader_on_any_text(tmp_path, body, head):
    path = tmp_path / "lm.arpa"
    path.write_text((ARPA_HEAD if head else "") + body, encoding="utf-8", errors="surrogatepass")
    model = parses_or_refuses(lambda: read_arpa(path))
    if model is not None:
        for table in model.ngrams:
            # -inf is read as -99 (what SRILM writes): every value stays finite
            assert all(math.isfinite(p) and p <= 0 and math.isfinite(b)
                       for p, b in table.values())


@SETTINGS
@given(data=noisy_bytes)
def test_arpa_reader_on_any_bytes(tmp_path, data):
    path = tmp_path / "lm.arpa"
    path.write_bytes(data)
    parses_or_refuses(lambda: read_arpa(path))


words = st.sampled_from(["YES", "NO", "UP", "DOWN", "GO", "STOP"])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sentences=st.lists(st.lists(words, min_size=1, max_size=5), min_size=1, max_size=8),
       order=st.integers(1, 3))
def test_arpa_round_trip(tmp_path, sentences, order):
    model = estimate_kneser_ney(sentences, order)
    write_arpa(tmp_path / "lm.arpa", model)
    back = read_arpa(tmp_path / "lm.arpa")
    assert [set(t) for t in back.ngrams] == [set(t) for t in model.ngrams]
    for a, b in zip(model.ngrams, back.ngrams):
        for gram, (p, bow) in a.items():
            assert b[gram][0] == pytest.approx(p, abs=1e-6)
            if len(gram) < order:
                assert b[gram][1] == pytest.approx(bow, abs=1e-6)


# --- lexicons --------------------------------------------------------------------------

@SETTINGS
@given(data=noisy_bytes)
def test_lexicon_reader_on_any_bytes(tmp_path, data):
    path = tmp_path / "w.txt"
    path.write_bytes(data)
    found = parses_or_refuses(lambda: read_lexicon(path))
    for word in found or ():
        assert word and not any(c.isspace() or c == "\0" for c in word)


@SETTINGS
@given(lexicon=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl",
                                                                      "Zp")),
                                min_size=1, max_size=8)
                        .filter(lambda w: not any(c.isspace() or c == "\ufeff" for c in w)),
                        min_size=1, max_size=8),
       crlf=st.booleans(), bom=st.booleans())
def test_lexicon_round_trip(tmp_path, lexicon, crlf, bom):
    text = ("\ufeff" if bom else "") + ("\r\n" if crlf else "\n").join(lexicon) + "\n"
    (tmp_path / "w.txt").write_text(text, encoding="utf-8", newline="")
    assert read_lexicon(tmp_path / "w.txt") == lexicon


# --- decoding configs -------------------------------------------------------------------

VOCAB = Vocabulary(tuple(" AB"))


@SETTINGS
@given(options=st.dictionaries(st.sampled_from(sorted(CONFIG_KEYS - {"lm", "lexicon"})),
                               json_values, max_size=5))
def test_decoding_config_reader_on_any_values(tmp_path, options):
    path = tmp_path / "dec.json"
    path.write_text(json.dumps(options, allow_nan=True))
    loaded = parses_or_refuses(lambda: load_decoding_config(path))
    if loaded is not None:
        loaded = dict(loaded)
        kind = loaded.pop("decoder")
        parses_or_refuses(lambda: make_decoder(kind, VOCAB, 0.03, **loaded))


@SETTINGS
@given(options=st.fixed_dictionaries({}, optional={
    "beam_size": st.integers(1, 64), "alpha": st.floats(0, 5), "beta": st.floats(-5, 5),
    "hotwords": st.lists(st.sampled_from(["AB", "BA B"]), max_size=2),
    "hotword_weight": st.floats(0, 10), "beam_threshold": st.floats(0.5, 100)}))
def test_decoding_config_round_trip(tmp_path, options):
    save_decoding_config(tmp_path / "dec.json", {"decoder": "beam", **options})
    assert load_decoding_config(tmp_path / "dec.json") == {"decoder": "beam", **options}


# --- YAML configs and --set ---------------------------------------------------------------

sections = st.sampled_from(["model", "features", "augment", "train", "other"])
keys = st.sampled_from(sorted({k.split(".")[1] for k in LIMITS}
                              | {"layers", "hidden", "dropout", "kind", "case", "x"}))


@SETTINGS
@given(data=st.dictionaries(sections, st.dictionaries(keys, json_values, max_size=3)
                            | json_values, max_size=3))
def test_config_from_any_mapping(data):
    config = parses_or_refuses(lambda: config_from_dict(data))
    if config is not None:  # what was accepted writes and reads back the same
        assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config


@SETTINGS
@given(data=noisy_bytes)
def test_yaml_config_file_of_any_bytes(tmp_path, data):
    (tmp_path / "c.yaml").write_bytes(data)
    parses_or_refuses(lambda: load_config(tmp_path / "c.yaml"))


@SETTINGS
@given(items=st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(sorted(LIMITS) + ["train.case"]),
              st.text(max_size=12) | st.floats(allow_nan=True).map(str)
              | st.integers(-5, 10**6).map(str))), max_size=3))
def test_set_overrides_of_any_text(items):
    config = parses_or_refuses(lambda: load_config(None, items))
    if config is not None:
        for key, (low, high, open_low) in LIMITS.items():
            section, name = key.split(".")
            value = getattr(getattr(config, section), name)
            for v in value if isinstance(value, tuple) else (value,):
                assert math.isfinite(v) and (v > low if open_low else v >= low) and v <= high


def test_default_config_round_trips_through_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text(ExperimentConfig().to_yaml())
    assert load_config(tmp_path / "c.yaml") == ExperimentConfig()


# --- --shard and --span --------------------------------------------------------------------

@SETTINGS
@given(text=st.text(max_size=12) | st.builds(lambda a, b: f"{a}/{b}", st.integers(-3, 9),
                                             st.integers(-3, 9)))
def test_shard_syntax(text):
    shard = parses_or_refuses(lambda: parse_shard(text))
    if shard is not None:
        assert 1 <= shard.index <= shard.count and parse_shard(str(shard)) == shard


@SETTINGS
@given(count=st.integers(1, 50), data=st.data())
def test_shard_round_trip(count, data):
    index = data.draw(st.integers(1, count))
    assert parse_shard(f" {index} / {count} ") == Shard(index, count)


@pytest.fixture(scope="module")
def query_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("span") / "talk.wav"
    t = np.arange(16000 * 2) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)
    return path


@SETTINGS
@given(tail=st.text(max_size=15) | st.builds(
    lambda a, b: f"{a}-{b}", st.floats(allow_nan=True, allow_infinity=True).map(str)
    | st.integers(0, 5).map(str), st.floats(0, 5).map(str) | st.text(max_size=4)))
def test_span_syntax(query_wav, tail):
    from asrkit.search.query import parse_span
    query = parses_or_refuses(lambda: parse_span(f"{query_wav}:{tail}"))
    if query is not None:
        assert 0 < len(query.wave) <= 2 * 16000 and np.isfinite(query.wave).all()


def test_unknown_set_section_names_it():
    with pytest.raises(ConfigError, match="unknown section 'nope'"):
        load_config(None, ["nope.x=1"])


# --- the other files users give: Kaldi tables, LM text, corpus tables, model files ------

@SETTINGS
@given(wav_scp=noisy_bytes, text=noisy_bytes, segments=st.none() | noisy_bytes)
def test_kaldi_import_of_any_tables(tmp_path, wav_scp, text, segments):
    folder = tmp_path / "kaldi"
    folder.mkdir(exist_ok=True)
    sf.write(folder / "a.wav", np.zeros(1600, np.float32), 16000, subtype="PCM_16")
    (folder / "wav.scp").write_bytes(b"a " + str(folder / "a.wav").encode() + b"\n" + wav_scp)
    (folder / "text").write_bytes(text)
    (folder / "segments").unlink(missing_ok=True)
    if segments is not None:
        (folder / "segments").write_bytes(segments)
    utts = parses_or_refuses(lambda: import_kaldi(folder))
    if utts:  # what is imported is a manifest that reads back
        write_manifest(tmp_path / "m.jsonl", utts)
        assert [u.id for u in iter_manifest(tmp_path / "m.jsonl")] == [u.id for u in utts]


@SETTINGS
@given(data=noisy_bytes)
def test_lm_text_of_any_bytes(tmp_path, data):
    (tmp_path / "lm.txt").write_bytes(data)
    sentences = parses_or_refuses(lambda: list(read_sentences(tmp_path / "lm.txt")))
    for words in sentences or []:
        assert words and all(w and not any(c.isspace() for c in w) for w in words)


@SETTINGS
@given(text=st.text(max_size=40))
def test_conditions_of_any_text(text):
    parses_or_refuses(lambda: parse_conditions(text))


@SETTINGS
@given(transcription=noisy_bytes, fileids=noisy_bytes)
def test_an4_tables_of_any_bytes(tmp_path, transcription, fileids):
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "an4_train.transcription").write_bytes(transcription)
    (tmp_path / "etc" / "an4_train.fileids").write_bytes(fileids)
    parses_or_refuses(lambda: read_an4_split(tmp_path, "train"))


@SETTINGS
@given(trans=noisy_bytes)
def test_librispeech_transcripts_of_any_bytes(tmp_path, trans):
    chapter = tmp_path / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True, exist_ok=True)
    (chapter / "84-121123.trans.txt").write_bytes(trans)
    parses_or_refuses(lambda: read_librispeech_part(tmp_path / "dev-clean"))


@SETTINGS
@given(tsv=noisy_bytes)
def test_commonvoice_table_of_any_bytes(tmp_path, tsv):
    (tmp_path / "clips").mkdir(exist_ok=True)
    (tmp_path / "train.tsv").write_bytes(b"client_id\tpath\tsentence\n" + tsv)
    parses_or_refuses(lambda: read_commonvoice_split(tmp_path, "train"))


@SETTINGS
@given(text=noisy_bytes, wav_scp=noisy_bytes, utt2spk=noisy_bytes)
def test_speechocean762_tables_of_any_bytes(tmp_path, text, wav_scp, utt2spk):
    (tmp_path / "train").mkdir(exist_ok=True)
    for name, data in (("text", text), ("wav.scp", wav_scp), ("utt2spk", utt2spk)):
        (tmp_path / "train" / name).write_bytes(data)
    parses_or_refuses(lambda: read_speechocean762_split(tmp_path, "train"))


@SETTINGS
@given(data=st.binary(max_size=400), zipped=st.booleans())
def test_model_and_embedder_files_of_any_bytes(tmp_path, data, zipped):
    """Garbage, and garbage in the zip container torch files use: refused, never run."""
    path = tmp_path / "m.pt"
    if zipped:
        import zipfile
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("m/data.pkl", data)
            z.writestr("m/version", b"3\n")
    else:
        path.write_bytes(data)
    parses_or_refuses(lambda: load_record(path))
    parses_or_refuses(lambda: load_embedder(path))
