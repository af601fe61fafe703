"""The numpy query encoder computes what the torch embedder computes, and a search
through it needs no torch."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from asrkit.audio import write_audio
from asrkit.features import FeatureConfig
from asrkit.search import query_encoder as qe
from asrkit.search.embedding import (AutoencoderConfig, Embedder, EmbedderConfig,
                                     FrontendConfig, load_embedder)
from asrkit.search.index import SearchIndex, build_index

from _speech import VOICES, synth_word


def _random_embedder(kind: str, segment_mean: bool, stack: int) -> Embedder:
    torch.manual_seed(0)
    feats = FeatureConfig(kind=kind, n_mels=24, n_mfcc=13)
    config = EmbedderConfig(FrontendConfig(features=feats, segment_mean=segment_mean),
                            AutoencoderConfig(input_dim=feats.dim, stack=stack, hidden=16,
                                              layers=2, dim=8, decoder_hidden=8))
    emb = Embedder(config)
    emb.autoencoder.normalizer.mean.normal_()
    emb.autoencoder.normalizer.std.uniform_(0.5, 2.0)
    return emb.eval()


@pytest.mark.parametrize("kind,segment_mean,stack", [("fbank", True, 3), ("mfcc", False, 2),
                                                     ("fbank", False, 1)])
def test_numpy_encoder_equals_torch_embedder(kind, segment_mean, stack):
    emb = _random_embedder(kind, segment_mean, stack)
    enc = qe.export_query_encoder(emb, "key")
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (200, 513, 4000, 8123)]
    waves.append((np.sin(2 * np.pi * 440 * t) * np.hanning(len(t))).astype(np.float32))
    for w in waves:  # lengths below one window, exactly one, and not a multiple of stack
        ref = emb.features(w).numpy()  # float32 sums: error relative to the largest value
        np.testing.assert_allclose(enc.features(w), ref, atol=1e-4 * np.abs(ref).max())
        np.testing.assert_allclose(enc.embed(w), emb.embed_frames([emb.features(w)])[0],
                                   atol=1e-4)  # unit vectors: float32 rounding only


def test_saved_encoder_round_trips_and_refuses_other_sources(tmp_path):
    enc = qe.export_query_encoder(_random_embedder("mfcc", True, 3), "key-1")
    path = tmp_path / qe.FILE
    qe.save_query_encoder(path, enc)
    back = qe.load_query_encoder(path, "key-1")
    wave = np.random.default_rng(2).standard_normal(3000).astype(np.float32)
    np.testing.assert_array_equal(back.embed(wave), enc.embed(wave))
    assert qe.load_query_encoder(path, "key-2") is None  # derived from another embedder
    path.write_bytes(path.read_bytes()[:100])  # damaged: ignored, rebuilt by the caller
    assert qe.load_query_encoder(path, "key-1") is None
    assert qe.load_query_encoder(tmp_path / "missing.npz", "key-1") is None


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("qenc")
    for i, word in enumerate(["garden", "window"]):
        write_audio(root / "archive" / f"{i}.wav", np.concatenate(
            [np.zeros(4000, np.float32), synth_word(word, VOICES[0]), np.zeros(4000, np.float32)]))
    write_audio(root / "query.wav", synth_word("garden", VOICES[1]))
    build_index(root / "archive", root / "index")
    return root


def test_index_queries_embed_as_the_embedder_does(small_index):
    index = small_index / "index"
    assert (index / qe.FILE).is_file()  # written with the index
    wave = synth_word("window", VOICES[2])
    with SearchIndex(index) as idx:
        np.testing.assert_allclose(idx.embed_queries([wave]),
                                   load_embedder(index / "embedder.pt").embed_waves([wave]),
                                   atol=1e-5)


def test_stale_encoder_file_is_derived_again(small_index):
    index = small_index / "index"
    (index / qe.FILE).write_bytes(b"not an npz")
    wave = synth_word("garden", VOICES[1])
    with SearchIndex(index) as idx:
        fresh = idx.embed_queries([wave])
    assert qe.load_query_encoder(index / qe.FILE, _key(index)) is not None
    np.testing.assert_allclose(fresh, load_embedder(index / "embedder.pt").embed_waves([wave]),
                               atol=1e-5)


def _key(index):
    with SearchIndex(index) as idx:
        return f"{qe.file_digest(index / 'embedder.pt')}/" \
               f"{idx.store.setting('embedder_fingerprint')}"


def test_a_search_from_a_fresh_interpreter_never_imports_torch(small_index):
    code = ("import sys\nfrom asrkit.search.query import search\n"
            f"hits = search({str(small_index / 'index')!r}, [{str(small_index / 'query.wav')!r}])\n"
            "assert hits[0], 'no hits'\n"
            "print(sorted(m for m in ('torch', 'torchaudio', 'numba', 'librosa') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
