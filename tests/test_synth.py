"""Synthetic corpus and archive: determinism, voice splits, noise, rooms, exact spans."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import typer
from typer.testing import CliRunner

from asrkit.audio import audio_info, load_audio
from asrkit.errors import ConfigError
from asrkit.manifest import read_manifest
from asrkit.synth import (Prosody, SynthesisError, Voice, builtin_words, clean_label,
                          list_voices, plan_corpus, select_voices, split_speakers,
                          synthesize, text_source, word_samples)
from asrkit.synth import synth_corpus as make_corpus  # the fixture is called synth_corpus
from asrkit.synth.corpus import render
from asrkit.synth import effects, voices as voices_module
from conftest import TINY_VOICES, require_espeak, tiny_config

SR = 16_000


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- voices ------------------------------------------------------------------------

def test_espeak_voices_cover_eight_accents_and_share_speakers():
    require_espeak()
    voices = [v for v in list_voices() if v.engine == "espeak-ng"]
    accents = {v.name.split("+")[0] for v in voices}
    assert accents == set(voices_module.ESPEAK_ACCENTS)
    f3 = {v.id for v in voices if v.speaker == "espeak-f3"}
    assert f3 == {f"espeak-ng:{a}+f3" for a in voices_module.ESPEAK_ACCENTS}


def test_select_voices_globs_and_engine_names():
    require_espeak()
    chosen = select_voices(["espeak-ng:en-gb+*", "espeak-ng:en-us"])
    assert {v.id for v in chosen} >= {"espeak-ng:en-us", "espeak-ng:en-gb+f3"}
    assert all(v.id == "espeak-ng:en-us" or v.name.startswith("en-gb+") for v in chosen)
    assert {v.engine for v in select_voices(["espeak-ng"])} == {"espeak-ng"}
    with pytest.raises(SynthesisError, match="no installed voice matches"):
        select_voices(["espeak-ng:xx-nowhere"])


@pytest.mark.parametrize("engine, package", [
    ("festival", "festvox-kallpc16k"), ("flite", "flite"), ("espeak-ng", "espeak-ng")])
def test_missing_synthesiser_error_names_debian_package(monkeypatch, engine, package):
    real_which = shutil.which
    monkeypatch.setattr(voices_module.shutil, "which",
                        lambda name: None if name == engine else real_which(name))
    with pytest.raises(SynthesisError, match=package):
        select_voices([f"{engine}:*"])


def test_nothing_installed_asks_for_espeak(monkeypatch):
    monkeypatch.setattr(voices_module.shutil, "which", lambda name: None)
    with pytest.raises(SynthesisError, match="install at least the Debian package espeak-ng"):
        select_voices(None)


def test_synthesiser_vanishing_midway_names_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SynthesisError, match="Debian package flite"):
        synthesize(Voice("flite", "slt", "slt"), "HELLO")


@pytest.mark.parametrize("voice_id", ["espeak-ng:en-gb+m3", "flite:slt", "flite:kal",
                                      "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts"])
def test_every_engine_speaks_and_rate_changes_duration(voice_id):
    try:
        voice = select_voices([voice_id])[0]
    except SynthesisError as e:
        pytest.skip(str(e))
    (slow, rate), (fast, rate2) = [synthesize(voice, "ENTER SIX TWO FOUR", Prosody(r, 0.0))
                                   for r in (0.8, 1.3)]
    assert rate == rate2 and rate >= 8000
    slow, fast = (effects.trim_silence(w) for w in (slow, fast))
    assert np.abs(slow).max() > 0.05
    assert len(fast) < 0.85 * len(slow)


def test_spelled_letter_a_is_said_as_a_letter_by_espeak():
    assert voices_module._espeak_text("B A C") == "B [['eI]] C"
    assert voices_module._espeak_text("ERASE A") == "ERASE [['eI]]"
    assert voices_module._espeak_text("A CAT") == "A CAT"  # the article stays


# --- texts -------------------------------------------------------------------------

def test_builtin_sets_are_an4_words():
    assert builtin_words("commands") == ("YES", "NO", "REPEAT", "STOP", "HELP", "GO", "START",
                                         "ENTER", "ERASE", "RUBOUT")
    assert len(builtin_words("letters")) == 26 and "OH" in builtin_words("digits")
    rng = np.random.default_rng(0)
    texts = text_source("mixed", max_words=4).texts(300, rng)
    vocab = set(builtin_words("commands") + builtin_words("digits") + builtin_words("letters"))
    assert all(1 <= len(t.split()) <= 4 and set(t.split()) <= vocab for t in texts)


def test_word_list_and_sentence_files(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# my words\nhello\n\nworld!\n", encoding="utf-8")
    source = text_source(words_file=words, min_words=2, max_words=3)
    assert source.items == ("HELLO", "WORLD")
    assert all(2 <= len(t.split()) <= 3 for t in source.texts(50, np.random.default_rng(1)))
    sentences = tmp_path / "s.txt"
    sentences.write_text("Turn left.\nDon't stop, now\nGo home\n", encoding="utf-8")
    drawn = text_source(sentences_file=sentences).texts(6, np.random.default_rng(2))
    # every sentence once per round, in a shuffled order
    assert sorted(drawn[:3]) == sorted(drawn[3:]) == ["DON'T STOP NOW", "GO HOME", "TURN LEFT"]


@pytest.mark.parametrize("kwargs", [
    {"builtin": "klingon"}, {"min_words": 3, "max_words": 2},
    {"words_file": "EMPTY"}, {"words_file": "missing.txt"},
    {"words_file": "EMPTY", "sentences_file": "EMPTY"}])
def test_bad_text_settings_raise_config_error(tmp_path, kwargs):
    (tmp_path / "EMPTY").write_text("# nothing\n\n", encoding="utf-8")
    kwargs = {k: tmp_path / v if k.endswith("file") else v for k, v in kwargs.items()}
    with pytest.raises(ConfigError):
        text_source(**kwargs)


def test_clean_label():
    assert clean_label("  Don't  stop!  ") == "DON'T STOP"
    assert clean_label("snake_case, ok?") == "SNAKE CASE OK"


# --- effects -----------------------------------------------------------------------

@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_colored_noise_has_unit_power_and_its_spectral_slope(exponent):
    noise = effects.colored_noise(SR * 8, exponent, np.random.default_rng(0))
    assert np.mean(noise.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-3)
    freqs, psd = scipy.signal.welch(noise, fs=SR, nperseg=4096)
    band = (freqs > 100) & (freqs < 6000)
    slope = np.polyfit(np.log(freqs[band]), np.log(psd[band]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)


@pytest.mark.parametrize("rt60, drr_db", [(0.2, 0.0), (0.6, 8.0)])
def test_room_impulse_response_decays_at_rt60_with_the_asked_drr(rt60, drr_db):
    ir = effects.room_impulse_response(rt60, np.random.default_rng(1), drr_db)
    assert ir[0] == 1.0
    assert 10 * np.log10(1.0 / np.sum(ir[1:] ** 2)) == pytest.approx(drr_db, abs=1e-6)
    # Schroeder backward integration of the tail; fit the -5..-25 dB decay, extrapolate
    start = int(effects.DIRECT_PATH_SECONDS * SR)
    edc = np.cumsum(ir[start:][::-1] ** 2)[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    fit = (edc_db < -5) & (edc_db > -25)
    slope = np.polyfit(np.arange(len(edc_db))[fit] / SR, edc_db[fit], 1)[0]
    assert -60 / slope == pytest.approx(rt60, rel=0.15)


def test_trim_silence_keeps_the_loud_part():
    wave = np.zeros(SR, np.float32)
    wave[4000:8000] = 0.5 * np.sin(np.arange(4000) * 0.3)
    trimmed = effects.trim_silence(wave)
    assert 4000 <= len(trimmed) <= 4000 + 2 * effects.FRAME
    assert effects.trim_silence(np.zeros(SR, np.float32)).size == 0


# --- the corpus --------------------------------------------------------------------

def test_corpus_manifests_load_and_audio_is_16k_pcm(synth_corpus):
    words = set(builtin_words("commands"))
    assert set(synth_corpus.manifests) == {"train", "valid", "test"}
    assert synth_corpus.utterances == {"train": 14, "valid": 5, "test": 5}
    for split, path in synth_corpus.manifests.items():
        for utt in read_manifest(path):
            info = audio_info(utt.audio)
            assert (info.sample_rate, info.channels, info.subtype) == (SR, 1, "PCM_16")
            assert utt.duration == pytest.approx(info.duration)
            wave = load_audio(utt.audio)
            assert 0.1 < np.abs(wave).max() < 1.0 and np.isfinite(wave).all()
            assert 1 <= len(utt.text.split()) <= 2 and set(utt.text.split()) <= words
            assert Path(utt.audio).parent.name == split


def test_splits_share_no_voice_and_no_speaker(synth_corpus):
    speaker_of = {v.id: v.speaker for v in list_voices()}
    heard = {s: {u.speaker for u in read_manifest(p)} for s, p in synth_corpus.manifests.items()}
    speakers = {s: {speaker_of[v] for v in ids} for s, ids in heard.items()}
    for a, b in [("train", "valid"), ("train", "test"), ("valid", "test")]:
        assert not heard[a] & heard[b] and not speakers[a] & speakers[b]
        assert not set(synth_corpus.speakers[a]) & set(synth_corpus.speakers[b])
    assert {s: set(v) for s, v in synth_corpus.voices.items()} == heard
    settings = json.loads((synth_corpus.out_dir / "synth.json").read_text())
    assert settings["splits"]["test"]["speakers"] == list(synth_corpus.speakers["test"])


def test_split_speakers_holds_out_each_kind_and_refuses_too_few():
    voices = [Voice("espeak-ng", f"en-us+v{i}", f"espeak-v{i}") for i in range(10)]
    voices += [Voice("flite", n, n) for n in ("kal", "awb", "rms", "slt")]
    voices += [Voice("festival", "kal_diphone", "kal")]
    splits = split_speakers(voices, 0.1, 0.1, np.random.default_rng(0))
    assert sum(map(len, splits.values())) == 14
    for split in ("valid", "test"):
        assert {n.startswith("espeak") for n in splits[split]} == {True, False}
    with pytest.raises(ConfigError, match="too few speakers"):
        split_speakers(voices[:2], 0.1, 0.1, np.random.default_rng(0))
    only_train = split_speakers(voices[:1], 0.0, 0.0, np.random.default_rng(0))
    assert only_train == {"train": ["espeak-v0"], "valid": [], "test": []}


def test_same_seed_gives_byte_identical_corpus_other_seed_does_not(synth_corpus, tmp_path):
    make_corpus(tmp_path / "again", tiny_config())
    assert _files(tmp_path / "again") == _files(synth_corpus.out_dir)
    make_corpus(tmp_path / "other", tiny_config(seed=8))
    assert _files(tmp_path / "other")["train.jsonl"] != _files(tmp_path / "again")["train.jsonl"]


class _Stop(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(synth_corpus, tmp_path):
    out = tmp_path / "resumed"

    def stop_early(done, total):
        if done >= 6:
            raise _Stop

    with pytest.raises(_Stop):
        make_corpus(out, tiny_config(), workers=1, progress=stop_early)
    assert not (out / "train.jsonl").exists()  # manifests only once all audio is there
    partial = len(list(out.rglob("*.wav")))
    assert 6 <= partial < 24
    seen = []
    resumed = make_corpus(out, tiny_config(), progress=lambda d, t: seen.append(d))
    assert (resumed.skipped, resumed.generated) == (partial, 24 - partial)
    assert seen[0] == partial and seen[-1] == 24
    assert _files(out) == _files(synth_corpus.out_dir)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_resume_refuses_a_folder_made_with_other_settings(synth_corpus):
    with pytest.raises(ConfigError, match="n_utterances"):
        make_corpus(synth_corpus.out_dir, tiny_config(n_utterances=25))


def test_plan_draws_do_not_depend_on_the_snr_list():
    require_espeak()
    a, _ = plan_corpus(tiny_config(snrs=(None,)))
    b, _ = plan_corpus(tiny_config(snrs=(5.0, 10.0)))
    strip = lambda p: (p.text, p.voice, p.prosody, p.speed, p.rt60, p.lead, p.seed)  # noqa: E731
    assert [strip(p) for p in a] == [strip(p) for p in b]
    assert {p.snr for p in b} == {5.0, 10.0}


def test_vocal_tract_shift_leaves_other_draws_and_held_out_voices_alone():
    require_espeak()
    a, _ = plan_corpus(tiny_config(vocal_tract_range=(1.0, 1.0)))
    b, _ = plan_corpus(tiny_config(vocal_tract_range=(1.0, 1.3)))
    strip = lambda p: dataclasses.replace(p, vocal_tract=1.0)  # noqa: E731
    assert [strip(p) for p in a] == [strip(p) for p in b]
    assert {p.vocal_tract for p in a} == {1.0}
    shifts = {p.split: [] for p in b}
    for p in b:
        shifts[p.split].append(p.vocal_tract)
    assert set(shifts["valid"]) == set(shifts["test"]) == {1.0}
    assert all(1.0 <= f <= 1.3 for f in shifts["train"]) and len(set(shifts["train"])) > 3


def test_vocal_tract_shift_raises_the_spectrum_at_the_same_tempo():
    require_espeak()
    plan, _ = plan_corpus(tiny_config(vocal_tract_range=(1.0, 1.0)))
    dry = dataclasses.replace(plan[0], text="SEVEN SEVEN", speed=1.0, rt60=None, snr=None,
                              prosody=Prosody(1.0, 0.0), lead=0.0, trail=0.0)

    def rendered(factor):
        item = dataclasses.replace(dry, vocal_tract=factor)
        assert item.said.rate == pytest.approx(1.0 / factor)
        wave, rate = synthesize(item.voice, item.text, item.said)
        return effects.trim_silence(render(item, wave, rate)).astype(np.float64)

    def centroid(x):
        freqs, power = scipy.signal.welch(x, SR, nperseg=1024)
        return np.sum(freqs * power) / np.sum(power)

    plain, shifted = rendered(1.0), rendered(1.25)
    assert len(shifted) == pytest.approx(len(plain), rel=0.1)
    assert 1.08 < centroid(shifted) / centroid(plain) < 1.4  # 1.15 measured for espeak-ng


def test_added_noise_has_the_requested_snr(tmp_path):
    require_espeak()
    common = dict(n_utterances=6, valid_fraction=0.0, test_fraction=0.0,
                  voices=TINY_VOICES[:2], reverb_probability=0.5)
    clean = make_corpus(tmp_path / "clean", tiny_config(snrs=(None,), **common))
    noisy = make_corpus(tmp_path / "noisy", tiny_config(snrs=(10.0,), **common))
    pairs = zip(read_manifest(clean.manifests["train"]), read_manifest(noisy.manifests["train"]))
    for c, n in pairs:
        x, y = load_audio(c.audio).astype(np.float64), load_audio(n.audio).astype(np.float64)
        assert len(x) == len(y)
        speech = np.flatnonzero(x)  # the padding of the clean file is digital silence
        gain = np.dot(y, x) / np.dot(x, x)  # the two files were peak-normalised apart
        noise = y - gain * x
        power = gain ** 2 * np.mean(x[speech[0]:speech[-1] + 1] ** 2)
        assert 10 * np.log10(power / np.mean(noise ** 2)) == pytest.approx(10.0, abs=0.5)


# --- the archive -------------------------------------------------------------------

def test_archive_spans_hold_exactly_the_word_samples(synth_archive_spans):
    spans = synth_archive_spans
    assert len(spans) == 16 and len({s.file for s in spans}) == 2
    voices = {v.id: v for v in list_voices()}
    for file in sorted({s.file for s in spans}):
        audio = load_audio(file)
        mine = [s for s in spans if s.file == file]
        inside = np.zeros(len(audio), bool)
        for s in mine:
            a, b = round(s.start * SR), round(s.end * SR)
            assert a == s.start * SR and b == s.end * SR  # whole samples
            inside[a:b] = True
            expected = word_samples(*synthesize(voices[s.voice], s.word))
            assert b - a == len(expected)
            assert np.abs(audio[a:b] - expected).max() <= 1.0 / 32768 + 1e-7
            head, tail = audio[a:a + effects.FRAME], audio[b - effects.FRAME:b]
            assert np.abs(head).max() > 1e-3 and np.abs(tail).max() > 1e-3
        assert not audio[~inside].any()  # nothing but silence between the words
        assert [s.start for s in mine] == sorted(s.start for s in mine)


def test_archive_manifests_match_the_spans(synth_archive_spans):
    folder = Path(synth_archive_spans[0].file).parents[1]
    words = read_manifest(folder / "words.jsonl")
    assert [(u.text, u.audio, u.speaker) for u in words] == \
        [(s.word, s.file, s.voice) for s in synth_archive_spans]
    np.testing.assert_allclose([(u.offset, u.offset + u.duration) for u in words],
                               [(s.start, s.end) for s in synth_archive_spans], atol=1e-9)
    recordings = read_manifest(folder / "recordings.jsonl")
    assert [r.text.split() for r in recordings] == \
        [[s.word for s in synth_archive_spans if s.file == r.audio] for r in recordings]
    segment = load_audio(words[3].audio, offset=words[3].offset, duration=words[3].duration)
    assert len(segment) == round(words[3].duration * SR)


def test_noisy_archive_fills_the_gaps_and_keeps_the_words(tmp_path):
    require_espeak()
    from asrkit.synth import synth_archive
    spans = synth_archive(["yes", "stop"], 1, tmp_path, words_per_file=4,
                          voices=TINY_VOICES[:2], snr=20.0, seed=1)
    audio = load_audio(spans[0].file)
    assert np.abs(audio[: round(spans[0].start * SR)]).max() > 0  # noise before the first word
    voices = {v.id: v for v in list_voices()}
    for s in spans:
        expected = word_samples(*synthesize(voices[s.voice], s.word))
        got = audio[round(s.start * SR): round(s.end * SR)]
        assert np.corrcoef(got, expected)[0, 1] > 0.95


# --- the command line --------------------------------------------------------------

@pytest.fixture(scope="module")
def cli():
    from asrkit.cli import synth as synth_cli
    app, data = typer.Typer(), typer.Typer()
    data.command("synth")(synth_cli.synth)
    data.command("synth-archive")(synth_cli.synth_archive)
    app.add_typer(data, name="data")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["data", *args])


def test_cli_synth_writes_a_corpus_and_resumes(cli, tmp_path):
    require_espeak()
    args = ["synth", str(tmp_path), "-n", "12", "--texts", "digits", "--voices",
            ",".join(TINY_VOICES), "--valid-fraction", "0.2", "--test-fraction", "0.2",
            "--snr", "clean,20", "--json"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["generated"] == 12
    assert sum(s["utterances"] for s in summary["splits"].values()) == 12
    texts = [u.text for u in read_manifest(summary["splits"]["train"]["manifest"])]
    assert all(set(t.split()) <= set(builtin_words("digits")) for t in texts)
    again = json.loads(cli(*args).stdout)
    assert (again["generated"], again["skipped"]) == (0, 12)


def test_cli_synth_errors_are_one_line_with_exit_codes(cli, tmp_path):
    require_espeak()
    unknown = cli("synth", str(tmp_path), "--voices", "festival:nobody")
    assert unknown.exit_code == 1 and unknown.output.startswith("error: ")
    assert "Traceback" not in unknown.output
    assert cli("synth").exit_code == 2  # no output folder
    bad_snr = cli("synth", str(tmp_path), "--snr", "loud")
    assert bad_snr.exit_code == 2 and "'loud'" in bad_snr.output
    for value in ("1.2", "1.3,1.0", "a,b", "1,1.1,1.2"):
        bad = cli("synth", str(tmp_path), "--vocal-tract", value)
        assert bad.exit_code == 2 and "--vocal-tract" in bad.output, value


def test_cli_list_voices_and_archive(cli, tmp_path):
    require_espeak()
    listed = json.loads(cli("synth", "--list-voices", "--json").stdout)
    assert "espeak-ng:en-us+f3" in {v["id"] for v in listed["voices"]}
    made = cli("synth-archive", str(tmp_path), "--texts", "digits", "--files", "2",
               "--words-per-file", "3", "--voices", TINY_VOICES[0], "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["words"] == 6
    assert len(read_manifest(tmp_path / "words.jsonl")) == 6
    assert sf.info(str(tmp_path / "audio" / "archive-001.wav")).samplerate == SR
