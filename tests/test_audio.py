"""Audio loading: formats, sample widths, rates, channels, segments, streaming, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from asrkit.audio import (PEAK_TARGET, SAMPLE_RATE, audio_info, load_audio, normalize_gain,
                          resample, stream_audio, write_audio)
from asrkit.errors import AudioError


def sine(freq: float = 440.0, seconds: float = 1.0, rate: int = SAMPLE_RATE,
         amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(wave: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


# Largest error of one quantisation step (8-bit WAV is unsigned, 1/128 full scale).
SUBTYPE_TOLERANCE = {"PCM_U8": 1 / 128, "PCM_16": 1 / 2**15, "PCM_24": 1 / 2**23,
                     "PCM_32": 1 / 2**31, "FLOAT": 1e-7, "DOUBLE": 1e-7}


@pytest.mark.parametrize("subtype", list(SUBTYPE_TOLERANCE))
def test_wav_sample_widths_round_trip(tmp_path, subtype):
    wave = sine(330.0, 0.5)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, wave, SAMPLE_RATE, subtype=subtype)
    loaded = load_audio(path)
    assert loaded.dtype == np.float32 and loaded.shape == wave.shape
    np.testing.assert_allclose(loaded, wave, atol=SUBTYPE_TOLERANCE[subtype] + 1e-7)
    assert audio_info(path).subtype == subtype


@pytest.mark.parametrize("ext,subtype", [("flac", "PCM_16"), ("flac", "PCM_24"),
                                         ("ogg", "VORBIS")])
def test_compressed_formats(tmp_path, ext, subtype):
    wave = sine(440.0, 1.0)
    path = tmp_path / f"a.{ext}"
    sf.write(path, wave, SAMPLE_RATE, subtype=subtype)
    loaded = load_audio(path)
    assert abs(len(loaded) - len(wave)) <= 1  # Vorbis may pad a frame's worth, not more
    if subtype == "VORBIS":  # lossy: the tone must survive, not the samples
        assert abs(dominant_frequency(loaded) - 440.0) < 2.0
        assert abs(np.sqrt(np.mean(loaded**2)) - np.sqrt(np.mean(wave**2))) < 0.02
    else:
        np.testing.assert_allclose(loaded, wave, atol=1 / 2**15 + 1e-7)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_other_rates_are_resampled(tmp_path, rate):
    path = tmp_path / f"{rate}.wav"
    sf.write(path, sine(440.0, 1.5, rate), rate, subtype="PCM_16")
    loaded = load_audio(path)
    assert abs(len(loaded) - int(1.5 * SAMPLE_RATE)) <= 1  # duration is kept
    assert abs(dominant_frequency(loaded) - 440.0) < 1.0  # and so is the pitch
    assert audio_info(path).sample_rate == rate


def test_load_at_another_target_rate(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, sine(1000.0, 1.0), SAMPLE_RATE)
    loaded = load_audio(path, sample_rate=8000)
    assert len(loaded) == 8000
    assert abs(dominant_frequency(loaded, 8000) - 1000.0) < 1.0


def test_resample_identity_and_length():
    wave = sine(200.0, 0.25)
    assert resample(wave, SAMPLE_RATE, SAMPLE_RATE) is wave
    assert len(resample(wave, SAMPLE_RATE, 48000)) == 3 * len(wave)


@pytest.mark.parametrize("channels", [2, 3, 6])
def test_channels_are_averaged_to_mono(tmp_path, channels):
    rng = np.random.default_rng(channels)
    data = rng.uniform(-0.5, 0.5, (4000, channels)).astype(np.float32)
    path = tmp_path / "multi.wav"
    sf.write(path, data, SAMPLE_RATE, subtype="FLOAT")
    loaded = load_audio(path)
    assert loaded.shape == (4000,)
    np.testing.assert_allclose(loaded, data.mean(axis=1), atol=1e-6)
    assert audio_info(path).channels == channels


def test_opposite_channels_cancel(tmp_path):
    wave = sine(440.0, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([wave, -wave], axis=1), SAMPLE_RATE, subtype="FLOAT")
    assert np.max(np.abs(load_audio(path))) < 1e-6


def test_gain_normalisation(tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, sine(440.0, 0.5, amplitude=0.01), SAMPLE_RATE, subtype="FLOAT")
    loud = load_audio(path, normalize=True)
    assert np.max(np.abs(loud)) == pytest.approx(PEAK_TARGET, rel=1e-5)
    np.testing.assert_allclose(loud / PEAK_TARGET * 0.01, load_audio(path), atol=1e-6)
    silence = np.zeros(1000, np.float32)
    assert normalize_gain(silence) is silence  # nothing to scale: left alone
    tiny = np.full(100, 1e-7, np.float32)
    assert normalize_gain(tiny) is tiny  # below MIN_PEAK: noise floor, not amplified


def test_offset_and_duration_select_a_segment(tmp_path):
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 2 * SAMPLE_RATE).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    seg = load_audio(path, offset=0.5, duration=0.25)
    np.testing.assert_array_equal(seg, wave[8000:12000])
    tail = load_audio(path, offset=1.5)
    np.testing.assert_array_equal(tail, wave[24000:])
    past_end = load_audio(path, offset=1.9, duration=5.0)  # clipped at the end of the file
    np.testing.assert_array_equal(past_end, wave[30400:])
    with pytest.raises(AudioError, match="outside the file"):
        load_audio(path, offset=2.5)
    with pytest.raises(AudioError, match="outside the file"):
        load_audio(path, offset=-0.1)


def test_segment_of_a_resampled_file(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, sine(440.0, 2.0, 44100), 44100)
    seg = load_audio(path, offset=0.5, duration=1.0)
    assert abs(len(seg) - SAMPLE_RATE) <= 1
    assert abs(dominant_frequency(seg) - 440.0) < 1.5


@pytest.mark.parametrize("overlap", [0.0, 0.1])
def test_stream_chunks_concatenate_to_the_file(tmp_path, overlap):
    wave = np.random.default_rng(1).uniform(-0.5, 0.5, 50_000).astype(np.float32)
    path = tmp_path / "s.wav"
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    chunks = list(stream_audio(path, chunk_seconds=0.7, overlap_seconds=overlap))
    hop = int(0.7 * SAMPLE_RATE) - int(overlap * SAMPLE_RATE)
    assert [start for start, _ in chunks] == pytest.approx(
        [i * hop / SAMPLE_RATE for i in range(len(chunks))])
    for start, chunk in chunks:  # each chunk is the file at its start time
        i = int(round(start * SAMPLE_RATE))
        np.testing.assert_array_equal(chunk, wave[i:i + len(chunk)])
    rebuilt = np.concatenate([chunk[:hop] for _, chunk in chunks[:-1]] + [chunks[-1][1]])
    np.testing.assert_array_equal(rebuilt, wave)


def test_stream_resamples(tmp_path):
    path = tmp_path / "s.wav"
    sf.write(path, sine(440.0, 3.0, 8000), 8000)
    total = sum(len(c) for _, c in stream_audio(path, chunk_seconds=1.0))
    assert abs(total - 3 * SAMPLE_RATE) <= 3


def test_stream_rejects_overlap_longer_than_chunk(tmp_path):
    path = write_audio_file(tmp_path)
    with pytest.raises(ValueError):
        list(stream_audio(path, chunk_seconds=0.1, overlap_seconds=0.2))


def test_write_audio_round_trip(tmp_path):
    wave = sine(500.0, 0.3)
    path = tmp_path / "sub" / "w.wav"
    write_audio(path, wave)
    np.testing.assert_allclose(load_audio(path), wave, atol=1 / 2**15 + 1e-7)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    assert info.duration == pytest.approx(0.3)


def write_audio_file(folder, name="ok.wav", seconds=0.5):
    path = folder / name
    sf.write(path, sine(440.0, seconds), SAMPLE_RATE, subtype="PCM_16")
    return path


# --- bad input: every case is an AudioError, never a crash from libsndfile or numpy ---

def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def _bad_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "header_only.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    _truncate(write_audio_file(tmp_path, "truncated.wav", 2.0))
    flac = tmp_path / "truncated.flac"
    sf.write(flac, sine(440.0, 2.0), SAMPLE_RATE)
    _truncate(flac)
    (tmp_path / "text.wav").write_text("this is not audio\n" * 50)
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        wave = sine(440.0, 0.2)
        wave[100] = value
        sf.write(tmp_path / name, wave, SAMPLE_RATE, subtype="FLOAT")
    (tmp_path / "folder.wav").mkdir()


BAD = ["missing.wav", "empty.wav", "header_only.wav", "truncated.wav", "truncated.flac",
       "text.wav", "nan.wav", "inf.wav", "folder.wav"]


@pytest.mark.parametrize("name", BAD)
def test_bad_files_raise_audio_error(tmp_path, name):
    _bad_files(tmp_path)
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / name)
    assert name in str(err.value)  # the message names the file
    if name == "header_only.wav":  # nothing to stream: no chunks rather than an error
        assert list(stream_audio(tmp_path / name, chunk_seconds=0.25)) == []
        return
    with pytest.raises(AudioError):
        list(stream_audio(tmp_path / name, chunk_seconds=0.25))


def test_audio_info_on_bad_headers(tmp_path):
    _bad_files(tmp_path)
    for name in ("missing.wav", "empty.wav", "text.wav", "folder.wav", "truncated.wav"):
        with pytest.raises(AudioError):
            audio_info(tmp_path / name)
    assert audio_info(tmp_path / "header_only.wav").frames == 0


def test_piped_wav_of_unknown_length_is_still_read(tmp_path):
    """A WAV written to a pipe declares data length 0xFFFFFFFF; that is not truncation."""
    path = write_audio_file(tmp_path, "piped.wav", 0.25)
    data = bytearray(path.read_bytes())
    pos = data.index(b"data")
    data[pos + 4:pos + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert len(load_audio(path)) == 4000
