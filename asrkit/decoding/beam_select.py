"""Label and beam selection for the compiled beam search (:mod:`asrkit.decoding.beam_kernel`):
which labels a frame tries (the most likely ones above a floor) and which candidates
make the next beam (the ``beam`` best, by a partial selection instead of a sort).
Plain arrays in, indices out: nothing here knows about prefixes or LMs."""

from __future__ import annotations

from ..jit import njit


@njit(cache=True, nogil=True)
def frame_tokens(row, k, floor, out):
    """Labels to try at this frame, most likely first: all non-blank ones, or the
    ``k`` most likely; of those, the ones at least ``floor`` likely and the frame's
    most likely label."""
    n = _top_tokens(row, k, out)
    top = 0
    for c in range(1, row.shape[0]):
        if row[c] > row[top]:
            top = c
    kept = 0
    for q in range(n):
        c = out[q]
        if row[c] >= floor or c == top:
            i = kept  # insertion sort: a few dozen labels at most
            while i > 0 and row[out[i - 1]] < row[c]:
                out[i] = out[i - 1]
                i -= 1
            out[i] = c
            kept += 1
    return kept


@njit(cache=True, nogil=True)
def _top_tokens(row, k, out):
    """All non-blank labels, or the ``k`` most likely."""
    V = row.shape[0]
    if k >= V - 1:
        for c in range(1, V):
            out[c - 1] = c
        return V - 1
    n = 0
    for c in range(1, V):  # insertion into the sorted top k (k and V are small)
        if n == k and row[c] <= row[out[k - 1]]:
            continue
        i = min(n, k - 1)
        while i > 0 and row[out[i - 1]] < row[c]:
            out[i] = out[i - 1]
            i -= 1
        out[i] = c
        n = min(n + 1, k)
    return k


@njit(cache=True, nogil=True)
def sift_down(heap, i, value):
    """Put ``value`` at ``i`` of the min-heap ``heap`` and sift it down."""
    n = heap.shape[0]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= value:
            break
        heap[i] = heap[child]
        i = child
    heap[i] = value


@njit(cache=True, nogil=True)
def _kth_largest(a, m, k):
    """The ``k``-th largest of ``a[:m]`` (1-based), reordering ``a`` (quickselect)."""
    lo, hi, want = 0, m - 1, k - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] > pivot:
                i += 1
            while a[j] < pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if want <= j:
            hi = j
        elif want >= i:
            lo = i
        else:
            break
    return a[want]


@njit(cache=True, nogil=True)
def select_best(scores, m, beam, idx, work):
    """Move the indices of the ``beam`` best of ``scores[:m]`` to the front of ``idx``."""
    if m <= beam:
        return m
    for i in range(m):
        work[i] = scores[i]
    kth = _kth_largest(work, m, beam)
    k = 0
    for i in range(m):  # strictly better first, then ties up to the beam
        if scores[i] > kth:
            idx[k], idx[i] = idx[i], idx[k]
            scores[k], scores[i] = scores[i], scores[k]
            k += 1
    for i in range(k, m):
        if k < beam and scores[i] == kth:
            idx[k], idx[i] = idx[i], idx[k]
            scores[k], scores[i] = scores[i], scores[k]
            k += 1
    return k
