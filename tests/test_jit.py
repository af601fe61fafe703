"""Compiled kernels are cached on disk where possible and still compile where not."""

import numba.core.caching as caching
import numpy as np
import pytest

from asrkit.jit import njit


def _total(x):
    s = 0.0
    for v in x:
        s += v
    return s


def test_kernel_compiles_without_any_writable_cache_folder(monkeypatch):
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])  # nowhere to write
    with pytest.raises(RuntimeError, match="cannot cache"):
        import numba
        numba.njit(cache=True)(_total)  # what a bare numba decorator would do
    kernel = njit(nogil=True)(_total)
    assert kernel(np.arange(5.0)) == 10.0
    assert njit(_total)(np.ones(3)) == 3.0


def test_kernel_is_cached_where_the_source_folder_is_writable():
    kernel = njit(_total)
    assert kernel(np.arange(4.0)) == 6.0
    assert kernel._cache.cache_path  # numba found a folder for the compiled code
    assert kernel.stats.cache_misses or kernel.stats.cache_hits
