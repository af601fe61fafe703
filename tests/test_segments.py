import numpy as np
import pytest

from asrkit.audio import SAMPLE_RATE
from asrkit.errors import ConfigError
from asrkit.segments import (SegmentConfig, Span, candidate_segments, detect_speech,
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
