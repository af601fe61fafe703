"""FAISS search settings chosen for the index's own data and size."""

import numpy as np
import pytest

from asrkit.search.vector_index import (FLAT_MAX, TUNE_RECALL, VectorIndex, choose_factory,
                                        make_index, tune_search_params)


def clustered(n: int, dim: int, rng, clusters: int = 300) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_at_10(index: VectorIndex, vectors: np.ndarray, queries: np.ndarray) -> float:
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = index.search(queries, 10)[1]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))


@pytest.fixture(scope="module")
def ivf():
    rng = np.random.default_rng(0)
    vectors = clustered(20_300, 32, rng)
    vectors, unseen = vectors[:20_000], vectors[20_000:]  # unseen: never added
    index = make_index("IVF128,Flat", 32)
    index.train(vectors[::4])
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    return index, vectors, unseen


def test_tuned_nprobe_reaches_the_recall_on_unseen_queries(ivf):
    index, vectors, unseen = ivf
    sample = np.arange(0, len(vectors), 97)
    params = tune_search_params(index, vectors[sample], sample)
    nprobe = int(params.removeprefix("nprobe="))
    assert 1 <= nprobe < 128  # cheaper than scanning everything
    # fresh queries near the data, as a spoken query is near its archive's windows
    assert recall_at_10(VectorIndex(index, "IVF128,Flat", params), vectors, unseen) >= 0.95
    if nprobe > 1:  # and it is the cheapest setting that reaches the target on the sample
        lower = VectorIndex(index, "IVF128,Flat", f"nprobe={nprobe // 2}")
        assert recall_at_10(lower, vectors, vectors[sample]) < TUNE_RECALL + 0.02


def test_a_higher_target_never_chooses_fewer_lists(ivf):
    index, vectors, _ = ivf
    sample = np.arange(0, len(vectors), 97)
    probes = [int(tune_search_params(index, vectors[sample], sample, t).split("=")[1])
              for t in (0.5, 0.8, 0.95, 0.99)]
    assert probes == sorted(probes)


def test_exact_and_graph_indexes_keep_their_defaults():
    index = make_index("Flat", 8)
    index.add_with_ids(np.eye(8, dtype=np.float32).repeat(4, 0), np.arange(32))
    assert tune_search_params(index, np.eye(8, dtype=np.float32), np.arange(8)) == ""


@pytest.mark.parametrize("count", [10, FLAT_MAX, FLAT_MAX + 1, 1_000_000, 10_000_000])
def test_index_kind_and_lists_grow_with_size(count):
    factory = choose_factory(count)
    if count <= FLAT_MAX:
        assert factory == "Flat"
    else:
        nlist = int(factory.removeprefix("IVF").split(",")[0])
        assert 2 * np.sqrt(count) <= nlist <= 8 * np.sqrt(count)  # ~40+ vectors a list
