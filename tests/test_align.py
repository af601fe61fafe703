"""Forced alignment: our Viterbi equals torchaudio's, words land where they were spoken,
text that does not match is flagged, windows equal the whole, writers and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as TAF
from typer.testing import CliRunner

from asrkit.asr.alignment import (AlignConfig, Labels, align, align_log_probs, plan_windows,
                                  text_labels, viterbi)
from asrkit.asr.alignment_output import format_alignment
from asrkit.cli.main import app
from asrkit.errors import AlignmentError, VocabularyError
from asrkit.manifest import Utterance, write_manifest
from asrkit.text import Vocabulary, ctc_min_frames
from tones import RATE, letter_wave, make_tone_corpus

VOCAB = Vocabulary(tuple(" ABCD"))
TOLERANCE = 0.08  # seconds: four model frames


@pytest.fixture(scope="module")
def tone_model(tmp_path_factory):
    """A model trained for seconds on the tone language (see tones.py): it really hears
    which tone is which letter."""
    from asrkit.asr.checkpoint import load_model
    from asrkit.asr.config import load_config
    from asrkit.asr.training import train
    from asrkit.manifest import read_manifest
    root = tmp_path_factory.mktemp("tones")
    cfg = load_config(None, [
        "model.layers=1", "model.hidden=32", "model.dropout=0.0", "features.n_mels=40",
        "train.batch_seconds=4", "train.warmup_steps=10", "train.lr=0.01", "train.threads=1",
        "train.epochs=10", "train.patience=40", "train.spec_augment=false",
        "train.speed_perturb=false"])
    train(read_manifest(make_tone_corpus(root / "train", 64, seed=1)),
          read_manifest(make_tone_corpus(root / "valid", 8, seed=2, prefix="v")),
          root / "run", cfg)
    return root / "run", load_model(root / "run")


def tone_recording(path, words, seed=0, pause=0.15):
    """Write the tone words with ``pause`` s between them; return each word's true
    ``(start, end)`` in seconds."""
    rng = np.random.default_rng(seed)
    gap = np.zeros(int(pause * RATE), np.float32)
    parts, spans, at = [gap], [], len(gap)
    for word in words:
        start = at
        for letter in word:
            parts.append(letter_wave(letter, rng))
            at += len(parts[-1])
        spans.append((start / RATE, at / RATE))
        parts.append(gap)
        at += len(gap)
    wave = 0.3 * np.concatenate(parts)
    sf.write(path, wave + 0.01 * rng.standard_normal(len(wave)).astype(np.float32), RATE,
             subtype="PCM_16")
    return spans


def peaky_log_probs(labels: Labels, seed=0, blanks=(1, 4), hold=(1, 3)) -> torch.Tensor:
    """Log-probs ``(frames, vocab)`` of a confident model that heard ``labels``: each
    label held for a few frames, blanks between, a little noise."""
    rng = np.random.default_rng(seed)
    frame_ids = [0] * int(rng.integers(*blanks))
    for label in labels.ids:
        frame_ids += [label] * int(rng.integers(*hold)) + [0] * int(rng.integers(*blanks))
    logits = torch.from_numpy(rng.normal(0, 1, (len(frame_ids), len(VOCAB))).astype(np.float32))
    logits[torch.arange(len(frame_ids)), torch.tensor(frame_ids)] += 6.0
    return logits.log_softmax(-1)


def test_viterbi_equals_torchaudio_forced_align_on_random_log_probs():
    g = torch.Generator().manual_seed(0)
    cases = 0
    for frames, n in [(5, 2), (12, 6), (30, 10), (60, 29), (80, 40), (200, 60)] * 6:
        labels = torch.randint(1, 4, (n,), generator=g)  # 3 symbols: many repeats
        if ctc_min_frames(labels.tolist()) > frames:
            continue
        lp = (3 * torch.randn(frames, 5, generator=g)).log_softmax(-1)
        states, score = viterbi(lp, labels.tolist())
        expected, frame_scores = TAF.forced_align(lp[None], labels[None].int(), blank=0)
        ext = np.zeros(2 * n + 1, np.int64)
        ext[1::2] = labels.numpy()
        np.testing.assert_array_equal(ext[states], expected[0].numpy())
        assert score == pytest.approx(float(frame_scores.sum()), abs=1e-3)
        # The same token spans: one run of frames per label, in order.
        spans = [(s.start, s.end) for s in TAF.merge_tokens(expected[0], frame_scores[0])]
        ours = [(int(np.flatnonzero(states == 2 * i + 1)[0]),
                 int(np.flatnonzero(states == 2 * i + 1)[-1]) + 1) for i in range(n)]
        assert ours == spans
        cases += 1
    assert cases >= 30


def test_true_transcript_lands_where_the_words_were_spoken(tone_model, tmp_path):
    _, model = tone_model
    words = ["AB", "C", "DAB", "BC", "A", "CDA"]
    spans = tone_recording(tmp_path / "r.wav", words, seed=5)
    [al] = align(model, [Utterance("r", str(tmp_path / "r.wav"), " ".join(words).lower())])
    assert [w.word for w in al.words] == words  # normalised as the vocabulary does
    for w, (start, end) in zip(al.words, spans):
        assert abs(w.start - start) < TOLERANCE, (w, start)
        assert w.end <= end + TOLERANCE and w.end > start, (w, end)
        assert w.flag is None and w.score > -1.0, w
        assert "".join(c.char for c in w.chars) == w.word
        assert all(a.end <= b.start for a, b in zip(w.chars, w.chars[1:]))
    assert al.windows == 1 and al.duration == pytest.approx(spans[-1][1] + 0.15, abs=0.05)


def test_text_that_is_not_in_the_audio_is_flagged(tone_model, tmp_path):
    _, model = tone_model
    tone_recording(tmp_path / "r.wav", ["AB", "C", "DAB"], seed=6)
    [al] = align(model, [Utterance("r", str(tmp_path / "r.wav"), "AB C DCB")])
    assert [w.flag for w in al.words] == [None, None, "low_score"], al.words
    assert al.words[0].score > -1.0 > -3.0 > al.words[2].score
    assert min(c.score for c in al.words[2].chars) == al.words[2].score  # the wrong C
    # Another recording's text: its words land somewhere, but flagged, not silently.
    [other] = align(model, [Utterance("r", str(tmp_path / "r.wav"), "DD BA CC")])
    assert [w.word for w in other.words if w.flag == "low_score"] == ["DD", "CC"]


def test_audio_too_short_for_the_text_is_a_clear_error(tone_model, tmp_path):
    _, model = tone_model
    tone_recording(tmp_path / "short.wav", ["A"], seed=7)
    skipped = []
    out = list(align(model, [Utterance("s", str(tmp_path / "short.wav"), "ABCD " * 8)],
                     on_skip=lambda u, why: skipped.append(why)))
    assert out == []
    [why] = skipped
    assert str(tmp_path / "short.wav") in why and "too short" in why
    assert "check that the text belongs to this recording" in why
    labels = text_labels(VOCAB, "AA AA")  # repeats need a blank between them
    with pytest.raises(AlignmentError, match="need at least 7"):
        align_log_probs(torch.zeros(6, 6).log_softmax(-1), labels, VOCAB, 0.02)


def test_text_is_normalised_and_unknown_characters_are_named_or_dropped():
    labels = text_labels(VOCAB, "  ab\tcd ")
    assert labels.words == ("AB", "CD") and VOCAB.decode(labels.ids) == "AB CD"
    assert labels.word_of == (0, 0, -1, 1, 1)
    with pytest.raises(VocabularyError, match=r"'!,X'.*--drop-unknown"):
        text_labels(VOCAB, "ab, x cd!")
    assert text_labels(VOCAB, "ab, x cd!", drop_unknown=True).words == ("AB", "CD")
    with pytest.raises(VocabularyError, match="no words"):
        text_labels(VOCAB, "x!", drop_unknown=True)


def test_windowed_alignment_equals_whole_and_stays_within_the_bound():
    text = " ".join(["AB", "CDA", "B", "DD", "CAB", "A", "BCD", "DA"] * 5)
    labels = text_labels(VOCAB, text)
    lp = peaky_log_probs(labels, seed=1)
    whole, whole_score, n = align_log_probs(lp, labels, VOCAB, 0.02)
    assert n == 1
    limit = 4_000  # the whole trellis is about 40 times larger
    windows = plan_windows(lp, labels, limit)
    assert len(windows) > 5 and all(w.cells <= limit for w in windows)
    assert [(w.frame0, w.label0) for w in windows[1:]] == \
        [(w.frame1, w.label1) for w in windows[:-1]]  # they tile the trellis
    windowed, score, n = align_log_probs(lp, labels, VOCAB, 0.02, AlignConfig(max_cells=limit))
    assert n == len(windows)
    assert windowed == whole
    assert score == pytest.approx(whole_score, abs=1e-3)


def test_a_long_recording_in_chunks_and_windows_equals_it_whole(tone_model, tmp_path,
                                                               monkeypatch):
    """Log-probs computed chunk by chunk and aligned in windows of a bounded size give
    the words where whole alignment puts them."""
    import asrkit.asr.transcription as T
    _, model = tone_model
    rng = np.random.default_rng(3)
    words = ["".join(rng.choice(list("ABCD"), rng.integers(1, 4))) for _ in range(40)]
    spans = tone_recording(tmp_path / "long.wav", words, seed=4)
    utt = Utterance("long", str(tmp_path / "long.wav"), " ".join(words))
    [whole] = align(model, [utt])
    monkeypatch.setattr(T, "CHUNK_SECONDS", 5.0)
    monkeypatch.setattr(T, "CONTEXT_SECONDS", 1.0)
    [windowed] = align(model, [utt], AlignConfig(max_cells=int(whole.duration / 0.02 * 16)))
    assert whole.windows == 1 and windowed.windows >= 4
    starts = np.array([w.start for w in windowed.words])
    assert np.abs(starts - [w.start for w in whole.words]).max() <= 0.02  # one frame
    assert np.abs(starts - [s for s, _ in spans]).max() < TOLERANCE
    assert sum(w.flag is not None for w in windowed.words) == 0


def test_long_input_without_recognised_words_fails_instead_of_growing():
    labels = text_labels(VOCAB, "ABCD " * 40)
    lp = torch.zeros(600, 6).log_softmax(-1)  # a model that heard nothing
    with pytest.raises(AlignmentError, match="bounded memory.*does not agree.*--max-cells"):
        align_log_probs(lp, labels, VOCAB, 0.02, AlignConfig(max_cells=10_000))


def _alignment(tmp_path, tone_model, words=("AB", "C", "DAB")):
    _, model = tone_model
    tone_recording(tmp_path / "r.wav", list(words), seed=8)
    [al] = align(model, [Utterance("r", str(tmp_path / "r.wav"), " ".join(words))])
    return al


def parse_textgrid(text: str) -> dict[str, list[tuple[float, float, str]]]:
    """Interval tiers of a long-format TextGrid: name → [(xmin, xmax, text)]."""
    tiers, name = {}, None
    for block in re.split(r"\n\s*(?=item \[\d+\]:|intervals \[\d+\]:)", text):
        if block.lstrip().startswith("item ["):
            name = re.search(r'name = "(.*)"', block).group(1)
            tiers[name] = []
        elif block.lstrip().startswith("intervals ["):
            a, b = (float(x) for x in re.findall(r"xm(?:in|ax) = ([\d.]+)", block))
            tiers[name].append((a, b, re.search(r'text = "(.*)"', block).group(1)))
    return tiers


def test_textgrid_tiers_cover_the_recording_without_gaps_or_overlaps(tone_model, tmp_path):
    al = _alignment(tmp_path, tone_model)
    text = format_alignment(al, "textgrid")
    assert text.startswith('File type = "ooTextFile"\nObject class = "TextGrid"')
    tiers = parse_textgrid(text)
    assert list(tiers) == ["words", "chars"]
    for intervals in tiers.values():
        assert intervals[0][0] == 0.0 and intervals[-1][1] == al.duration
        assert all(a[1] == b[0] for a, b in zip(intervals, intervals[1:]))
        assert all(a < b for a, b, _ in intervals)
    assert [t for *_, t in tiers["words"] if t] == ["AB", "C", "DAB"]
    assert "".join(t for *_, t in tiers["chars"]) == "ABCDAB"
    assert [(a, b) for a, b, t in tiers["words"] if t] == [(w.start, w.end) for w in al.words]


def test_subtitles_have_one_timed_cue_per_group_of_words(tone_model, tmp_path):
    al = _alignment(tmp_path, tone_model)
    srt = format_alignment(al, "srt").strip().split("\n\n")
    vtt = format_alignment(al, "vtt")
    assert vtt.startswith("WEBVTT\n\n") and "AB C DAB" in vtt
    [cue] = srt  # three words, short pauses: one cue
    number, times, words = cue.split("\n")
    assert number == "1" and words == "AB C DAB"
    start, end = re.fullmatch(r"00:00:(\d\d,\d{3}) --> 00:00:(\d\d,\d{3})", times).groups()
    assert float(start.replace(",", ".")) == al.words[0].start
    assert float(end.replace(",", ".")) == al.words[-1].end
    record = json.loads(format_alignment(al, "jsonl"))
    assert [w["word"] for w in record["words"]] == ["AB", "C", "DAB"]
    assert set(record["words"][0]) == {"word", "start", "end", "score", "flag", "chars"}


def test_cli_aligns_a_manifest_skipping_bad_lines(tone_model, tmp_path):
    run, _ = tone_model
    for i, words in enumerate([["AB", "C"], ["DAB"], ["C", "DD"]]):
        tone_recording(tmp_path / f"ok{i}.wav", words, seed=10 + i)
    tone_recording(tmp_path / "short.wav", ["A"], seed=9)
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [
        Utterance("ok0", str(tmp_path / "ok0.wav"), "AB C"),
        Utterance("missing", str(tmp_path / "missing.wav"), "AB"),
        Utterance("ok1", str(tmp_path / "ok1.wav"), "DAB"),
        Utterance("short", str(tmp_path / "short.wav"), "ABCD " * 8),
        Utterance("unknown", str(tmp_path / "ok0.wav"), "AB X"),
        Utterance("ok2", str(tmp_path / "ok2.wav"), "C DD")])
    runner = CliRunner()
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["align", str(run), "--manifest", str(manifest), "-o", str(out),
                                 "--json"])
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout) | {"seconds": 0} == {
        "aligned": 3, "skipped": 3, "words": 5, "flagged": 0, "seconds": 0,
        "audio_seconds": pytest.approx(json.loads(result.stdout)["audio_seconds"])}
    assert "skipped 3 recording(s)" in result.stderr
    assert "missing:" in result.stderr and "short:" in result.stderr
    assert "'X'" in result.stderr and "Traceback" not in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["ok0", "ok1", "ok2"]  # finished work is kept

    grids = runner.invoke(app, ["align", str(run), "--manifest", str(manifest), "-f",
                                "textgrid", "--output-dir", str(tmp_path / "tg")])
    assert grids.exit_code == 3
    assert sorted(p.name for p in (tmp_path / "tg").iterdir()) == \
        ["ok0.TextGrid", "ok1.TextGrid", "ok2.TextGrid"]
    one = runner.invoke(app, ["align", str(run), str(tmp_path / "ok1.wav"), "--text", "dab",
                              "-f", "vtt"])
    assert one.exit_code == 0 and one.stdout.startswith("WEBVTT") and "DAB" in one.stdout
    short = runner.invoke(app, ["align", str(run), str(tmp_path / "short.wav"), "--text",
                                "ABCD " * 8])
    assert short.exit_code == 1 and short.stderr.startswith("error: ")
    assert "too short" in short.stderr and "short.wav" in short.stderr
    usage = runner.invoke(app, ["align", str(run), str(tmp_path / "ok1.wav")])
    assert usage.exit_code == 2 and "--text" in usage.stderr
