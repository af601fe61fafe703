import numpy as np
import pytest

from asrkit.audio import SAMPLE_RATE
from asrkit.errors import ConfigError
from asrkit.search.segments import (SegmentConfig, Span, candidate_segments, detect_speech,
                             trim_silence, windows_in)

from _speech import synth_word

RNG = np.random.default_rng(0)


def signal(parts):
    """[(seconds, amplitude of a 200 Hz tone or 0 for silence)] → noisy waveform."""
    out = []
    for seconds, amp in parts:
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        out.append(amp * np.sin(2 * np.pi * 200 * t))
    wave = np.concatenate(out).astype(np.float32)
    return wave + 0.001 * RNG.standard_normal(len(wave)).astype(np.float32)


def test_detects_bursts_at_their_positions():
    wave = signal([(0.5, 0), (0.4, 0.3), (0.8, 0), (0.6, 0.3), (0.5, 0)])
    spans = detect_speech(wave, SegmentConfig(pad=0.0))
    assert len(spans) == 2
    for span, (start, end) in zip(spans, [(0.5, 0.9), (1.7, 2.3)]):
        assert abs(span.start - start) < 0.03 and abs(span.end - end) < 0.04


def test_short_pause_is_bridged_and_click_dropped():
    wave = signal([(0.5, 0), (0.3, 0.3), (0.1, 0), (0.3, 0.3), (0.5, 0), (0.03, 0.5),
                   (0.5, 0)])
    spans = detect_speech(wave, SegmentConfig(pad=0.0, min_silence=0.2, min_speech=0.1))
    assert len(spans) == 1  # the 0.1 s pause is bridged; the 30 ms click is dropped
    assert abs(spans[0].start - 0.5) < 0.03 and abs(spans[0].end - 1.2) < 0.04


def test_silence_and_empty_input_have_no_speech():
    assert detect_speech(np.zeros(SAMPLE_RATE, np.float32)) == []
    assert detect_speech(np.zeros(0, np.float32)) == []
    assert candidate_segments(np.zeros(SAMPLE_RATE, np.float32)) == []


def test_all_speech_input_is_one_region():
    """A trimmed word has no quiet frames: the whole of it is speech."""
    wave = synth_word("computer")
    spans = detect_speech(wave, SegmentConfig(pad=0.0))
    assert spans[0].start < 0.1 and spans[-1].end > len(wave) / SAMPLE_RATE - 0.1


def test_trim_silence_keeps_the_word():
    word = synth_word("elephant")
    pad = np.zeros(int(0.7 * SAMPLE_RATE), np.float32)
    trimmed = trim_silence(np.concatenate([pad, word, pad]), SegmentConfig(pad=0.05))
    assert abs(len(trimmed) - len(word)) / SAMPLE_RATE < 0.2


def test_windows_cover_the_region_with_every_duration():
    config = SegmentConfig(durations=(0.3, 0.5), hop=0.1)
    region = Span(1.0, 2.0)
    wins = windows_in(region, config)
    assert all(region.start - 1e-9 <= w.start and w.end <= region.end + 1e-9 for w in wins)
    assert {round(w.duration, 3) for w in wins} == {0.3, 0.5}
    for d in (0.3, 0.5):  # the last window of each length ends at the region's end
        assert max(w.end for w in wins if round(w.duration, 3) == d) == pytest.approx(2.0)
    starts = sorted(w.start for w in wins if round(w.duration, 3) == 0.3)
    assert np.allclose(np.diff(starts[:-1]), 0.1)


def test_short_region_is_its_own_candidate():
    wins = windows_in(Span(0.0, 0.2), SegmentConfig(durations=(0.3, 0.5)))
    assert wins == [Span(0.0, 0.2)]


@pytest.mark.parametrize("bad", [dict(durations=()), dict(durations=(0.3, -1)),
                                 dict(hop=0), dict(min_silence=-0.1)])
def test_bad_config_is_refused(bad):
    with pytest.raises(ConfigError):
        SegmentConfig(**bad)


def test_config_round_trips_through_a_dict():
    from dataclasses import asdict
    config = SegmentConfig(durations=(0.4, 0.8), hop=0.05)
    assert SegmentConfig.from_dict(asdict(config)) == config


# --- candidates from a recogniser's word alignment ---------------------------------

from asrkit.search.segments import (MAX_WORD_SPAN, aligned_word_spans, with_asr_model,  # noqa: E402
                             word_run_spans)

WORDS = SegmentConfig(kind="words", asr_model="an4", asr_fingerprint="x", word_pad=0.1,
                      word_tail=0.1)


def test_word_runs_are_single_words_and_neighbour_pairs_padded_and_clipped():
    words = [(0.05, 0.3), (0.6, 0.9), (1.5, 1.8)]
    spans = word_run_spans(words, WORDS, total=1.85)
    assert spans == [Span(0.0, 0.4), Span(0.0, 1.0), Span(0.5, 1.0), Span(0.5, 1.85),
                     Span(1.4, 1.85)]
    alone = word_run_spans(words, SegmentConfig(**{**WORDS.__dict__, "max_words": 1}), 1.85)
    assert alone == [Span(0.0, 0.4), Span(0.5, 1.0), Span(1.4, 1.85)]


def test_word_tail_stops_at_the_next_word_and_the_end_of_speech():
    config = SegmentConfig(**{**WORDS.__dict__, "word_pad": 0.05, "word_tail": 0.3})
    words = [(0.5, 0.6), (0.75, 0.9), (1.5, 1.6)]
    speech = [Span(0.45, 1.0), Span(1.4, 3.0)]
    from asrkit.search.segments import word_extents
    extents = np.array(word_extents(words, config, 3.0, speech))
    assert np.allclose(extents, [(0.45, 0.75), (0.7, 1.0), (1.45, 1.9)])
    no_detector = np.array(word_extents(words, config, 3.0))
    assert np.allclose(no_detector, [(0.45, 0.75), (0.7, 1.2), (1.45, 1.9)])


def test_overlong_word_runs_are_dropped():
    spans = word_run_spans([(0.0, 0.5), (0.6, MAX_WORD_SPAN + 1.0)], WORDS, total=10.0)
    assert Span(0.0, 0.6) in spans and all(s.duration < MAX_WORD_SPAN + 0.3 for s in spans)


def test_spans_follow_a_known_ctc_alignment():
    """Log-probs whose best path spells "NO GO" at known frames: the spans are those
    words' frames, padded."""
    import torch
    from asrkit.text import Vocabulary
    vocab = Vocabulary(list(" GNO"))
    path = [0] * 100
    for frame, symbol in [(10, "N"), (11, "N"), (16, "O"), (30, " "), (50, "G"), (58, "O")]:
        path[frame] = vocab.symbols.index(symbol) + 1
    log_probs = torch.full((100, len(vocab)), -8.0)
    log_probs[torch.arange(100), torch.tensor(path)] = -0.01
    spans = aligned_word_spans(log_probs, vocab, 0.02, WORDS, total=2.0)
    assert spans == [Span(0.1, 0.44), Span(0.1, 1.28), Span(0.9, 1.28)]


def test_word_kinds_default_to_the_bundled_model_and_need_a_known_kind():
    assert SegmentConfig(kind="words").asr_model == "an4"  # as `index build` defaults
    assert SegmentConfig().asr_model is None  # windows need no model
    with pytest.raises(ConfigError):
        SegmentConfig(kind="phones", asr_model="an4")
    with pytest.raises(ConfigError):
        SegmentConfig(kind="words", asr_model="an4", max_words=0)


def test_word_config_round_trips_and_old_settings_read_as_windows():
    from dataclasses import asdict
    assert SegmentConfig.from_dict(asdict(WORDS)) == WORDS
    old = {k: v for k, v in asdict(SegmentConfig()).items()
           if k not in ("kind", "asr_model", "asr_fingerprint", "max_words", "word_pad",
                        "word_tail")}
    assert SegmentConfig.from_dict(old).kind == "windows"


def spoken_words(words, voice, gap=0.4):
    """espeak-ng ``words`` separated by ``gap`` s of near-silence → wave, true spans."""
    rng = np.random.default_rng(1)
    parts, truth, t = [np.zeros(int(gap * SAMPLE_RATE), np.float32)], [], gap
    for w in words:
        x = synth_word(w, voice)
        truth.append((t, t + len(x) / SAMPLE_RATE))
        parts += [x, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        t = truth[-1][1] + gap
    wave = np.concatenate(parts)
    return wave + 0.003 * rng.standard_normal(len(wave)).astype(np.float32), truth


@pytest.mark.parametrize("voice", ["en-us+m3", "en-gb+f4"])
def test_bundled_model_places_word_segments_on_the_words(voice, one_thread):
    """AN4 command words by espeak-ng: the AN4 model misspells them, but its word
    runs sit on the words — every word is hit and nearly every run overlaps a word."""
    wave, truth = spoken_words(["yes", "no", "stop", "help", "go", "enter"], voice)
    config = with_asr_model(SegmentConfig(kind="words", asr_model="an4"))
    assert len(config.asr_fingerprint) == 64
    spans = candidate_segments(wave, config)

    def overlap(s, a, b):
        return min(s.end, b) - max(s.start, a)
    singles = [s for s in spans if s.duration < 1.0]
    assert all(any(overlap(s, a, b) > 0.05 for s in spans) for a, b in truth)
    on_words = [s for s in singles if any(overlap(s, a, b) > 0 for a, b in truth)]
    assert len(on_words) >= 0.8 * len(singles)
    both = candidate_segments(wave, SegmentConfig(**{**config.__dict__, "kind": "both"}))
    windows = candidate_segments(wave, SegmentConfig())
    assert set(both) == set(windows) | set(spans)


# --- the speech detector: energy or silero -----------------------------------------


def test_detector_round_trips_and_settings_stored_without_one_read_as_energy():
    from dataclasses import asdict
    config = SegmentConfig(detector="silero", hop=0.2)
    assert SegmentConfig.from_dict(asdict(config)) == config
    old = {k: v for k, v in asdict(config).items() if k != "detector"}
    assert SegmentConfig.from_dict(old).detector == "energy"
    with pytest.raises(ConfigError, match="detector"):
        SegmentConfig(detector="webrtc")


@pytest.mark.parametrize("noise", [0.003, 0.05])
def test_silero_finds_planted_words_and_little_else(noise):
    """Words planted at known times in quiet and in loud noise (about 5 dB SNR): the
    silero detector covers them and hardly anything else."""
    pytest.importorskip("silero_vad")
    wave, truth = spoken_words(["umbrella", "window", "garden"], "en-us+m3", gap=1.0)
    wave = wave + noise * np.random.default_rng(2).standard_normal(len(wave)).astype(np.float32)
    config = SegmentConfig(detector="silero", pad=0.0)
    spans = detect_speech(wave, config)
    grid = np.arange(0, len(wave) / SAMPLE_RATE, 0.01)
    said = np.any([(grid >= a) & (grid < b) for a, b in truth], axis=0)
    found = np.any([(grid >= s.start) & (grid < s.end) for s in spans], axis=0)
    assert (said & ~found).sum() <= 0.1 * said.sum()  # at most a tenth of the speech missed
    assert (found & ~said).sum() <= 0.2 * (~said).sum()  # and a fifth of the rest taken
    assert len(spans) == len(truth)  # one region per word: the 1 s pauses are seen


def test_an_index_records_its_detector(tmp_path, one_thread):
    """An index built with the silero detector says so when reopened, and resuming it
    with other settings is refused."""
    pytest.importorskip("silero_vad")
    from asrkit.audio import write_audio
    from asrkit.search.index import SearchIndex, build_index
    wave, _ = spoken_words(["umbrella", "window"], "en-us+m3")
    write_audio(tmp_path / "a" / "rec.wav", wave)
    config = SegmentConfig(detector="silero")
    build_index(tmp_path / "a", tmp_path / "idx", None, config)
    with SearchIndex(tmp_path / "idx") as idx:
        assert idx.segment_config == config
    with pytest.raises(ConfigError, match="other segment settings"):
        build_index(tmp_path / "a", tmp_path / "idx", None, SegmentConfig(detector="energy"))
