"""Live transcription: a forward-only model and its decoders fed audio in chunks give the
offline transcript, whatever the chunk sizes, and a word once final never changes."""

from __future__ import annotations

import json
import statistics
import warnings

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from asrkit.asr.checkpoint import load_model, save_model
from asrkit.asr.config import load_config
from asrkit.asr.export_stream import (STREAM_INPUTS, export_stream, min_window_samples,
                                      run_stream)
from asrkit.asr.streaming import AcousticStream, StreamingTranscriber
from asrkit.asr.training import train
from asrkit.asr.transcription import transcribe
from asrkit.audio import load_audio, peak_gain
from asrkit.cli.main import app
from asrkit.decoding import make_decoder
from asrkit.errors import ConfigError
from asrkit.lm.estimate import estimate_kneser_ney
from asrkit.lm.ngram import write_arpa
from asrkit.manifest import Utterance, read_manifest

from test_model_options import tiny_model
from tones import make_tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

FORWARD = {  # forward-only variants of every part a stream must carry between chunks
    "stacked": dict(bidirectional=False),
    "stacked-lookahead": dict(bidirectional=False, lookahead=3),
    "gru-norm-stack3": dict(bidirectional=False, subsample=3, lookahead=2, cell="gru",
                            layer_norm=True),
    "conv-lookahead": dict(bidirectional=False, conv_channels=4, lookahead=2),
    "conv-stride3": dict(bidirectional=False, conv_channels=4, subsample=3),
    "no-subsampling": dict(bidirectional=False, subsample=1),
}


def chunks(wave: np.ndarray, sizes: list[int]):
    """``wave`` cut into consecutive pieces of ``sizes`` (repeated as needed)."""
    i, k = 0, 0
    while i < len(wave):
        n = sizes[k % len(sizes)]
        yield wave[i:i + n]
        i, k = i + n, k + 1


def streamed_log_probs(model, wave, sizes):
    stream = AcousticStream(model)
    out = [stream.push(piece) for piece in chunks(wave, sizes)]
    return torch.cat(out + [stream.finish()])


@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("samples", [100, 512, 700, 5_000, 16_001])
def test_acoustic_stream_equals_the_offline_model(name, samples):
    model = tiny_model(**FORWARD[name])
    wave = 0.1 * np.random.default_rng(samples).standard_normal(samples).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(wave)[None])[0][0]
    for sizes in ([1] if samples <= 5_000 else [], [160], [333, 7, 1, 1200], [4_000],
                  [samples]):
        if sizes:
            got = streamed_log_probs(model, wave, sizes)
            assert got.shape == want.shape, sizes
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_bidirectional_model_cannot_stream():
    with pytest.raises(ConfigError, match="bidirectional=false"):
        AcousticStream(tiny_model())
    with pytest.raises(ConfigError, match="utterance_mean=false"):
        AcousticStream(tiny_model(bidirectional=False, utterance_mean=True))


# --- a tiny forward-only model that really learns the tone language -------------------

TINY = ["model.layers=2", "model.hidden=48", "model.dropout=0.0", "features.n_mels=40",
        "model.bidirectional=false", "model.lookahead=4", "model.subsample=3",
        "train.batch_seconds=4", "train.warmup_steps=10", "train.lr=0.01", "train.threads=1",
        "train.epochs=20",
        "train.patience=40", "train.spec_augment=false", "train.speed_perturb=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(forward-only model, test utterances, ARPA LM of the training texts)."""
    root = tmp_path_factory.mktemp("stream")
    train_utts = read_manifest(make_tone_corpus(root / "train", 96, seed=1))
    valid_utts = read_manifest(make_tone_corpus(root / "valid", 16, seed=2, prefix="v"))
    test_utts = read_manifest(make_tone_corpus(root / "test", 6, seed=3, prefix="t"))
    train(train_utts, valid_utts, root / "run", load_config(None, TINY))
    lm = root / "lm.arpa"
    write_arpa(lm, estimate_kneser_ney((u.text.split() for u in train_utts), 2))
    return load_model(root / "run"), test_utts, lm, root / "run"


def decoder(model, kind, lm):
    if kind == "greedy":
        return make_decoder("greedy", model.vocab, model.frame_seconds)
    return make_decoder("beam", model.vocab, model.frame_seconds, beam_size=8, lm=str(lm),
                        alpha=0.5, beta=1.0)


def stream_utterance(model, dec, utt, sizes):
    """Feed ``utt``'s audio in ``sizes`` pieces: (every update, the transcriber)."""
    raw = load_audio(utt.audio, normalize=False)
    tr = StreamingTranscriber(model, dec, gain=peak_gain(float(np.abs(raw).max())))
    updates = [tr.feed(piece) for piece in chunks(raw, sizes)]
    updates.append(tr.finish())
    return updates, tr


def check_against_offline(model, dec, utt, sizes):
    offline = next(transcribe(model, [utt], dec)).hypothesis
    updates, tr = stream_utterance(model, dec, utt, sizes)
    final = [w for u in updates for w in u.final]
    # final words come once each, in order, and are the words of the whole transcript
    assert tuple(final) == tr.hypothesis.words
    assert tr.hypothesis.text == offline.text
    assert [(w.word, w.start, w.end) for w in final] == \
        [(w.word, w.start, w.end) for w in offline.words]
    assert [w.confidence for w in final] == pytest.approx(
        [w.confidence for w in offline.words], abs=1e-3)
    assert updates[-1].done and not updates[-1].partial
    return updates


def test_the_tiny_forward_model_learned(trained):
    model, utts, _, _ = trained
    dec = decoder(model, "greedy", None)
    hyps = [t.text for t in transcribe(model, utts, dec)]
    # Chance is a CER near 100 %: it has to hear which tone is which. (A forward-only
    # model learns this language more slowly than the bidirectional one.)
    assert jiwer.cer([u.text for u in utts], hyps) < 0.4, hyps


@pytest.mark.parametrize("kind", ["greedy", "beam-lm"])
def test_streamed_equals_offline_in_chunks_of_one_sample(trained, kind):
    model, utts, lm, _ = trained
    check_against_offline(model, decoder(model, kind, lm), utts[0], [1])


@pytest.mark.parametrize("kind", ["greedy", "beam-lm"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 6_000), min_size=1, max_size=6), which=st.integers(0, 5))
def test_streamed_equals_offline_for_any_chunk_sizes(trained, kind, sizes, which):
    model, utts, lm, _ = trained
    check_against_offline(model, decoder(model, kind, lm), utts[which], sizes)


@pytest.mark.parametrize("kind", ["greedy", "beam-lm"])
def test_words_become_final_before_the_end(trained, kind, tmp_path):
    """On a longer recording (the test utterances one after another), final words
    arrive while audio is still coming, never before their own end."""
    model, utts, lm, _ = trained
    wave = np.concatenate([load_audio(u.audio, normalize=False) for u in utts])
    path = tmp_path / "long.wav"
    sf.write(path, wave, 16_000, subtype="FLOAT")
    utt = Utterance("long", str(path), " ".join(u.text for u in utts))
    updates = check_against_offline(model, decoder(model, kind, lm), utt, [1_600])
    early = [(w, u.seconds) for u in updates[:-1] for w in u.final]
    assert early, "no word was final before the end of the audio"
    for word, seconds in early:
        assert word.end <= seconds


# --- the command line -----------------------------------------------------------------

runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def final_words(jsonl: str) -> list[tuple[str, float, float]]:
    records = [json.loads(line) for line in jsonl.splitlines() if line.startswith("{")]
    assert records[-1]["type"] == "end"
    return [(r["word"], r["start"], r["end"]) for r in records if r["type"] == "final"]


def test_stream_from_the_command_line(trained):
    """A file (as fast as it goes) gives the offline transcript's words and times (its
    gain is the offline one); raw PCM on standard input gives what the library gives
    for those samples with the gain of the loudest sample so far."""
    model, utts, _, run = trained
    utt = utts[0]
    offline = next(transcribe(model, [utt])).hypothesis
    want = [(w.word, w.start, w.end) for w in offline.words]
    result = invoke("transcribe", "--stream", "--fast", "-f", "jsonl", run, utt.audio)
    assert result.exit_code == 0, result.output
    assert final_words(result.stdout) == want
    result = invoke("transcribe", "--stream", "--fast", run, utt.audio)  # txt, not a terminal
    assert result.stdout.split()[2::4] == [w for w, _, _ in want]
    pcm = (load_audio(utt.audio, normalize=False) * 32768).round().astype("<i2")
    result = invoke("transcribe", "--stream", "-f", "jsonl", run, "-", "--rate", 16000,
                    "--chunk-ms", 30, input=pcm.tobytes())
    assert result.exit_code == 0, result.output
    live = StreamingTranscriber(model)
    for piece in chunks(pcm.astype(np.float32) / 32768, [480]):
        live.feed(piece)
    live.finish()
    assert final_words(result.stdout) == [(w.word, w.start, w.end) for w in live.final_words]


def test_the_bundled_streaming_model_transcribes_real_speech_live():
    """`asrkit transcribe --stream an4-stream` on the AN4 speakers' clips shipped with
    asrkit (no bundled model heard them): the words offline transcription gives, and
    nearly all of them right."""
    from asrkit.pretrained import EXAMPLE_CLIPS
    clips = [u for u in read_manifest(EXAMPLE_CLIPS) if u.id.startswith("an4-")]
    model = load_model("an4-stream")
    refs, hyps = [], []
    for utt in clips:
        offline = next(transcribe(model, [utt])).hypothesis
        result = invoke("transcribe", "--stream", "--fast", "-f", "jsonl", "an4-stream",
                        utt.audio)
        assert result.exit_code == 0, result.output
        assert final_words(result.stdout) == [(w.word, w.start, w.end) for w in offline.words]
        refs.append(utt.text)
        hyps.append(" ".join(w for w, _, _ in final_words(result.stdout)))
    assert len(clips) == 3 and jiwer.wer(refs, hyps) <= 0.25, hyps


def test_stream_refusals(tmp_path):
    save_model(tmp_path / "bi.pt", tiny_model())
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16_000)
    result = invoke("transcribe", "--stream", tmp_path / "bi.pt", wav)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "bidirectional=false" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    save_model(tmp_path / "fwd.pt", tiny_model(bidirectional=False))
    result = invoke("transcribe", "--stream", tmp_path / "fwd.pt", "-")
    assert result.exit_code == 2 and "--rate" in result.stderr


# --- the exported streaming graph -----------------------------------------------------

@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", ["stacked-lookahead", "gru-norm-stack3", "conv-lookahead"])
def test_exported_stream_graph_equals_the_offline_model(tmp_path, fmt, name):
    """Streaming a recording through the exported graph, window by window as a runtime
    would, gives the PyTorch model's log-probs for the whole recording."""
    if fmt == "onnx":
        onnxruntime = pytest.importorskip("onnxruntime")
    model = tiny_model(**FORWARD[name])
    out = tmp_path / f"stream.{fmt}"
    sidecar = export_stream(model, out, fmt)
    info = json.loads(sidecar.read_text())
    assert info["streaming"] and info["min_window_samples"] == min_window_samples(model)
    if fmt == "torchscript":
        with warnings.catch_warnings():  # TorchScript is deprecated, still supported
            warnings.simplefilter("ignore", FutureWarning)
            step = torch.jit.load(str(out))
    else:
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])

        def step(*inputs):
            feed = {n: x.numpy() for n, x in zip(STREAM_INPUTS, inputs)}
            return [torch.from_numpy(o) for o in session.run(None, feed)]
    for samples in (300, 7_000, 20_001):
        wave = 0.1 * torch.from_numpy(
            np.random.default_rng(samples).standard_normal(samples).astype(np.float32))
        with torch.no_grad():
            want = model(wave[None])[0][0]
        for chunk in (160, 999, 8_000):
            got = run_stream(step, model, wave, chunk)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_export_stream_from_the_command_line(tmp_path):
    save_model(tmp_path / "fwd.pt", tiny_model(**FORWARD["conv-lookahead"]))
    result = invoke("export", tmp_path / "fwd.pt", "--stream", "-f", "torchscript",
                    "-o", tmp_path / "s.pt", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_diff"] < 1e-4
    save_model(tmp_path / "bi.pt", tiny_model())
    result = invoke("export", tmp_path / "bi.pt", "--stream", "-f", "onnx", "-o",
                    tmp_path / "s.onnx")
    assert result.exit_code == 2 and "bidirectional=false" in result.stderr


# --- the decoder streams alone, on random log-probs ----------------------------------

@pytest.mark.parametrize("kind", ["greedy", "beam"])
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), blocks=st.lists(st.integers(1, 300), min_size=1,
                                                      max_size=5))
def test_decoder_stream_equals_decoding_all_frames(kind, seed, blocks):
    """Long enough (1,000 frames) for the beam's arrays to grow and its prefix table to
    be rebuilt several times on the way."""
    from asrkit.text import Vocabulary
    vocab = Vocabulary(tuple(" ABC"))
    gen = torch.Generator().manual_seed(seed)
    lp = (3 * torch.randn(1_000, len(vocab), generator=gen)).log_softmax(-1)
    dec = make_decoder(kind, vocab, 0.02, **({"beam_size": 6} if kind == "beam" else {}))
    stream, final, i, k = dec.stream(), [], 0, 0
    while i < len(lp):
        n = blocks[k % len(blocks)]
        stream.advance(lp[i:i + n])
        final += stream.update()[0]
        i, k = i + n, k + 1
    hyp = stream.finish()
    want = dec.decode(lp[None])[0]
    assert hyp.text == want.text and hyp.words == want.words
    assert tuple(final) == hyp.words[:len(final)]
    # On noise like this the beam may keep rival prefixes to the end; greedy may not.
    assert final or kind == "beam"


def test_greedy_words_become_final_soon_after_they_are_said():
    """Peaky frames, as a trained model gives: each word is final within a few frames
    of its end (the word-end shift), long before the stream ends. (The beam stream makes
    a word final only once every prefix in the beam agrees on it, which on frames like
    these can take until the end: see README, "Live transcription".)"""
    from asrkit.text import Vocabulary
    vocab = Vocabulary(tuple(" ABC"))
    path = ("A" + "-" * 3 + "B" + "-" * 8 + " " + "-" * 10) * 20  # "AB " every 23 frames
    lp = torch.full((len(path), len(vocab)), 0.02)
    for t, c in enumerate(path):
        lp[t, 0 if c == "-" else vocab.symbols.index(c) + 1] = 0.9
    lp = (lp / lp.sum(-1, keepdim=True)).log()
    dec = make_decoder("greedy", vocab, 0.02)
    stream, when = dec.stream(), []
    for t in range(len(lp)):
        stream.advance(lp[t:t + 1])
        when += [(t + 1, w) for w in stream.update()[0]]
    words = stream.finish().words
    assert [w for _, w in when] == list(words[:len(when)]) and len(when) == 20
    for seen, w in when:  # final no later than 0.2 s after its (moved) end
        assert seen * 0.02 <= w.end + 0.2


def test_a_long_beam_stream_keeps_the_beams_prefixes_only():
    """Prefixes that fell out of the beam are dropped as the stream goes: 10,000 frames
    at beam 8 keep the beam's own prefixes (on frames this noisy, a chain per entry),
    not 8 new nodes per frame, and decode as the whole does."""
    from asrkit.decoding.beam_kernel import ST_NODES
    from asrkit.text import Vocabulary
    vocab = Vocabulary(tuple(" ABC"))
    path = ("A" + "-" * 3 + "B" + "-" * 8 + " " + "-" * 10) * 435  # 10,440 frames
    gen = torch.Generator().manual_seed(3)
    lp = torch.rand(len(path), len(vocab), generator=gen) * 0.2
    for t, c in enumerate(path):
        lp[t, 0 if c == "-" else vocab.symbols.index(c) + 1] += 0.7
    lp = (lp / lp.sum(-1, keepdim=True)).log()
    dec = make_decoder("beam", vocab, 0.02, beam_size=8)
    stream, final = dec.stream(), []
    for i in range(0, len(lp), 5):  # 100 ms blocks
        stream.advance(lp[i:i + 5])
        final += stream.update()[0]
    hyp = stream.finish()
    want = dec.decode(lp[None])[0]
    assert hyp.text == want.text and hyp.words == want.words
    assert tuple(final) == hyp.words[:len(final)]
    labels = sum(len(w.word) + 1 for w in hyp.words)
    stream._drop_dead_nodes()
    assert int(stream.st[ST_NODES]) <= 8 * labels + 1  # a chain per entry at most
    assert len(stream.ni) <= 4 * 8 * labels < 8 * len(lp)  # without dropping: 8 per frame


def test_final_after_makes_words_final_despite_a_far_weaker_rival():
    """Confident frames with one doubtful early letter: exactly, no word is ever final
    (the rival spelling of the first word stays in the beam, 1.2 nats below); with
    final_after every word becomes final soon after its end, never revised, the
    transcript is still the offline one, and the stream keeps few nodes."""
    from asrkit.decoding.beam_kernel import ST_NODES
    from asrkit.text import Vocabulary
    vocab = Vocabulary(tuple(" ABC"))
    path = ("A" + "-" * 3 + "B" + "-" * 8 + " " + "-" * 10) * 100
    lp = torch.full((len(path), len(vocab)), 1e-4)
    for t, c in enumerate(path):
        lp[t, 0 if c == "-" else vocab.symbols.index(c) + 1] = 1.0
    lp[2, vocab.symbols.index("C") + 1] = 0.3  # "ACB" or "AB"?
    lp = (lp / lp.sum(-1, keepdim=True)).log()
    dec = make_decoder("beam", vocab, 0.02, beam_size=8)
    want = dec.decode(lp[None])[0]
    counts, lags = {}, []
    for final_after in (None, 0.2):
        stream, final = dec.stream(final_after), []
        for i in range(0, len(lp), 5):
            stream.advance(lp[i:i + 5])
            new = stream.update()[0]
            lags += [(i + 5) * 0.02 - w.end for w in new if final_after]
            final += new
        hyp = stream.finish()
        assert tuple(final) == hyp.words[:len(final)]  # never revised
        assert hyp.words == want.words
        counts[final_after] = len(final)
    assert counts == {None: 0, 0.2: 100}
    assert max(lags) < 0.5
    stream._drop_dead_nodes()  # one node per label said, and the beam's recent prefixes
    assert int(stream.st[ST_NODES]) <= 3 * 100 + 8 * 30


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_final_after_and_margin_must_be_numbers_of_seconds(value):
    from asrkit.text import Vocabulary
    dec = make_decoder("beam", Vocabulary(tuple(" AB")), 0.02)
    with pytest.raises(ConfigError, match="final_after"):
        dec.stream(final_after=value)


def test_final_after_from_the_command_line(trained):
    """With beam search the final words are the transcript's; with greedy the option
    is refused in one line."""
    model, utts, lm, run = trained
    utt = utts[0]
    result = invoke("transcribe", "--stream", "--fast", "-f", "jsonl", run, utt.audio,
                    "--decoder", "beam", "--lm", lm, "--final-after", "0.2")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    words = " ".join(r["word"] for r in records if r["type"] == "final")
    assert words == records[-1]["text"] and records[-1]["type"] == "end"
    result = invoke("transcribe", "--stream", run, utt.audio, "--final-after", "0.2")
    assert result.exit_code == 2 and "--decoder beam" in result.stderr
