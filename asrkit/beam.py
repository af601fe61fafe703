"""CTC prefix beam search (Hannun et al. 2014) with word n-gram LM fusion.

Each beam entry is a label prefix with two log-probabilities: of all alignments of
the frames so far that yield the prefix and end in a blank (``pb``) or in its last
label (``pnb``). Its score adds ``alpha * LM + beta * words + hotword bonus``.

The search runs in one compiled kernel (numba, releasing the GIL so a batch spreads
over threads). Prefixes are nodes of a trie stored as parent-pointer arrays; a hash
table maps (parent, label) to the child so a prefix has one node, whose word-level
state (LM state and score, position in the lexicon trie, hotword automaton state)
is computed once when the node is made. An LM that lives outside the kernel (KenLM)
is asked between frames for the words the kernel could not score.
"""

from __future__ import annotations

import copy
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from numba import njit

from .decoding import Decoder, Hypothesis, check_log_probs, make_hypothesis
from .errors import ConfigError, DecodingError
from .io import atomic_write_json
from .lexicon import HotwordAutomaton, WordTrie, read_lexicon
from .lm import BOS, EOS, UNK, KenLMModel, NgramLM, hash_find, hash_insert, load_lm, lm_score
from .text import BLANK, Vocabulary

NEG_INF = -math.inf
# integer node columns
PARENT, TOKEN, FRAME, WNODE, WLEN, LMSTATE, NWORDS, HOT, WSSTATE, WSVALID = range(10)
# float node columns (SEPBONUS: bonus after a word separator, NaN until known)
LMSCORE, HOTDONE, BONUS, WSSCORE, SEPBONUS = range(5)
NEED_LM = 1  # kernel status: some words need scores from an external LM


@njit(cache=True, nogil=True)
def _lae(a, b):
    """log(exp(a) + exp(b)) without overflow."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@njit(cache=True, nogil=True)
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True, nogil=True)
def _trie_step(start, labels, child, mask, node, label):
    """Child of trie ``node`` by ``label``, or -1."""
    if label < 64:  # bit mask of the node's labels: rank of `label` indexes its edges
        bits = mask[node]
        if not (bits >> np.uint64(label)) & np.uint64(1):
            return -1
        below = bits & ((np.uint64(1) << np.uint64(label)) - np.uint64(1))
        return child[start[node] + _popcount(below)]
    for e in range(start[node], start[node + 1]):
        if labels[e] == label:
            return child[e]
    return -1


@njit(cache=True, nogil=True)
def _extend(n, c, ni, nf, fp, ip, lm, trie, hot):
    """Word-level state of prefix ``n`` + label ``c``: (bonus, word node, word length,
    LM state, LM score, words, hotword state, hotword total). Bonus is -inf when the
    lexicon forbids the extension and NaN when an external LM must score a word first."""
    alpha, beta, hot_w, unk_smear = fp[0], fp[1], fp[2], fp[4]
    space, lm_mode, trie_mode, unk = ip[2], ip[3], ip[4], ip[7]
    wn, wlen, state, nw = ni[n, WNODE], ni[n, WLEN], ni[n, LMSTATE], ni[n, NWORDS]
    lms = nf[n, LMSCORE]
    if c == space:
        if wlen > 0:  # the partial word is finished
            if trie_mode == 2 and (wn < 0 or trie[3][wn] < 0):
                return NEG_INF, wn, wlen, state, lms, nw, 0, 0.0
            if lm_mode > 0:
                if ni[n, WSVALID] == 0:
                    if lm_mode == 2:
                        return math.nan, wn, wlen, state, lms, nw, 0, 0.0
                    wid = trie[3][wn] if wn >= 0 and trie[3][wn] >= 0 else unk
                    p, s2 = lm_score(lm, state, wid)
                    nf[n, WSSCORE] = p
                    ni[n, WSSTATE] = s2
                    ni[n, WSVALID] = 1
                lms += nf[n, WSSCORE]
                state = ni[n, WSSTATE]
            nw += 1
            wlen = 0
            wn = 0 if trie_mode > 0 else -1
    else:
        if trie_mode > 0 and wn >= 0:
            wn = _trie_step(trie[0], trie[1], trie[2], trie[5], wn, c)
        if trie_mode == 2 and wn < 0:
            return NEG_INF, wn, wlen, state, lms, nw, 0, 0.0
        wlen += 1
    hs, hd = ni[n, HOT], nf[n, HOTDONE]
    if ip[5]:
        hs = hot[0][hs, c]
        hd += hot[2][hs]
    smear = 0.0
    if lm_mode > 0 and wlen > 0:
        smear = trie[4][wn] if wn >= 0 else unk_smear
    bonus = alpha * (lms + smear) + beta * nw + hot_w * (hd + hot[1][hs])
    return bonus, wn, wlen, state, lms, nw, hs, hd


@njit(cache=True, nogil=True, inline="always")
def _letter_bonus(n, c, ni, nf, alpha, beta, hot_w, unk_smear, lm_mode, trie_mode, use_hot,
                  t_start, t_label, t_child, t_mask, t_smear, h_goto, h_credit, h_reward):
    """The bonus :func:`_extend` gives prefix ``n`` + a letter ``c`` (not the word
    separator), from scalars unpacked once per frame: the hot path."""
    wn = ni[n, WNODE]
    if trie_mode > 0 and wn >= 0:
        wn = _trie_step(t_start, t_label, t_child, t_mask, wn, c)
    if trie_mode == 2 and wn < 0:
        return NEG_INF
    hs, hd = ni[n, HOT], nf[n, HOTDONE]
    if use_hot:
        hs = h_goto[hs, c]
        hd += h_reward[hs]
    smear = 0.0
    if lm_mode > 0:
        smear = t_smear[wn] if wn >= 0 else unk_smear
    return alpha * (nf[n, LMSCORE] + smear) + beta * ni[n, NWORDS] + hot_w * (hd + h_credit[hs])


@njit(cache=True, nogil=True)
def _child_node(p, c, t, ni, nf, hk, hv, st, fp, ip, lm, trie, hot):
    """The node of prefix ``p`` + ``c``, made (with its word-level state) if new."""
    V = ip[6]
    key = np.int64(p) * V + c
    m = hash_find(hk, hv, key)
    if m < 0:
        m = st[1]
        st[1] += 1
        hash_insert(hk, hv, key, m)
        bonus, wn, wlen, state, lms, nw, hs, hd = _extend(p, c, ni, nf, fp, ip, lm, trie, hot)
        ni[m, PARENT], ni[m, TOKEN], ni[m, WNODE], ni[m, WLEN] = p, c, wn, wlen
        ni[m, LMSTATE], ni[m, NWORDS], ni[m, HOT], ni[m, WSVALID] = state, nw, hs, 0
        nf[m, LMSCORE], nf[m, HOTDONE], nf[m, BONUS], nf[m, SEPBONUS] = lms, hd, bonus, math.nan
    ni[m, FRAME] = t  # (re)entering the beam now
    return m


@njit(cache=True, nogil=True)
def _lexicon_labels(wn, t_start, t_label, space, tok_ok, tried, out):
    """Labels that keep a prefix in the lexicon: its trie node's children (among the
    labels tried at this frame: ``tok_ok[c] == tried``), and the word separator."""
    n = 0
    if wn >= 0:
        for e in range(t_start[wn], t_start[wn + 1]):
            if tok_ok[t_label[e]] == tried:
                out[n] = t_label[e]
                n += 1
    if space >= 0 and tok_ok[space] == tried:
        out[n] = space
        n += 1
    return n


@njit(cache=True, nogil=True)
def _tokens(row, k, out):
    """Labels to try at this frame: all non-blank ones, or the ``k`` most likely."""
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
def _sift_down(heap, i, value):
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
def _select(scores, m, beam, idx, work):
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


@njit(cache=True, nogil=True)
def _search(lp, fp, ip, lm, trie, hot, ni, nf, hk, hv, bnode, bpb, bnb, st, miss):
    """Run the search from frame ``st[0]`` over ``lp (frames, vocab)``.

    Beam: ``bnode/bpb/bnb[:st[2]]``; ``st[1]`` nodes in use. Returns 0 when done, or
    NEED_LM with the nodes whose finished word needs a score in ``miss[:st[3]]``
    (nothing else changed: the caller fills the scores in and calls again).
    """
    T, V = lp.shape
    B = ip[0]
    pos = np.empty(ni.shape[0], np.int32)  # node -> beam slot (-1: not in the beam)
    pos.fill(-1)
    merge = np.empty(B * V, np.int32)  # (slot, label) -> slot that extension already is
    merge.fill(-1)
    new_pb, new_nb, heap = np.empty(B), np.empty(B), np.empty(B)
    # candidates: parent slot, label, log p(ending in the label), score
    cands = (np.empty(B * V, np.int32), np.empty(B * V, np.int32), np.empty(B * V),
             np.empty(B * V))
    pool = (np.empty(B * V + B), np.empty(B * V + B), np.empty(B * V + B, np.int32))
    nxt = (np.empty(B, np.int32), np.empty(B), np.empty(B))
    toks, labs, tok_ok = np.empty(V, np.int32), np.empty(V, np.int32), np.zeros(V, np.int64)
    t = st[0]
    while t < T:
        row = lp[t]
        ntok = _tokens(row, ip[1], toks)
        for q in range(ntok):
            tok_ok[toks[q]] = t + 1  # labels tried at frame t are marked t + 1
        best = _stays(row, ni, nf, bnode, bpb, bnb, st[2], pos, merge, new_pb, new_nb, heap)
        nc, nmiss, best = _extensions(row, t, best, fp, ip, lm, trie, hot, ni, nf, bnode, bpb,
                                      bnb, st[2], toks, ntok, labs, tok_ok, merge, new_pb,
                                      new_nb, heap, cands, miss)
        k = 0
        if nmiss == 0:
            k = _next_beam(t, best, fp, ip, lm, trie, hot, ni, nf, hk, hv, st, bnode, new_pb,
                           new_nb, cands, nc, pool, nxt)
        _clear(ni, bnode, st[2], pos, merge, V)
        if nmiss > 0:
            st[3] = nmiss
            return NEED_LM
        for r in range(k):
            bnode[r], bpb[r], bnb[r] = nxt[0][r], nxt[1][r], nxt[2][r]
        st[2] = k
        t += 1
        st[0] = t
    return 0


@njit(cache=True, nogil=True, inline="always")
def _stays(row, ni, nf, bnode, bpb, bnb, nb, pos, merge, new_pb, new_nb, heap):
    """Each prefix staying as it is (a blank, or its last label again). Marks the beam
    in ``pos``, the extensions that lead to another entry in ``merge``, and fills the
    min-heap of the best scores so far. Returns the best score."""
    V = row.shape[0]
    best = NEG_INF
    for j in range(nb):
        n = bnode[j]
        pos[n] = j
        new_pb[j] = _lae(bpb[j], bnb[j]) + row[BLANK]
        new_nb[j] = bnb[j] + row[ni[n, TOKEN]] if n != 0 else NEG_INF
        heap[j] = _lae(new_pb[j], new_nb[j]) + nf[n, BONUS]
        best = max(best, heap[j])
    for j in range(nb):
        p = ni[bnode[j], PARENT]
        if p >= 0 and pos[p] >= 0:
            merge[pos[p] * V + ni[bnode[j], TOKEN]] = j
    # merges only raise the stays' scores, so the heap's minimum bounds the B-th best
    for j in range(nb, heap.shape[0]):
        heap[j] = NEG_INF
    for j in range(heap.shape[0] // 2 - 1, -1, -1):  # heapify
        _sift_down(heap, j, heap[j])
    return best


@njit(cache=True, nogil=True, inline="always")
def _extensions(row, t, best, fp, ip, lm, trie, hot, ni, nf, bnode, bpb, bnb, nb, toks, ntok,
                labs, tok_ok, merge, new_pb, new_nb, heap, cands, miss):
    """Extend each prefix by each label tried: into another beam entry (merge), or as
    a candidate if it beats the rising cutoff (the heap's minimum, or the threshold
    below the best). Returns (candidates, misses, best)."""
    V = row.shape[0]
    alpha, beta, hot_w, thr, unk_smear, slack = fp[0], fp[1], fp[2], fp[3], fp[4], fp[5]
    space, lm_mode, trie_mode, use_hot = ip[2], ip[3], ip[4], ip[5]
    t_start, t_label, t_child, t_smear, t_mask = trie[0], trie[1], trie[2], trie[4], trie[5]
    h_goto, h_credit, h_reward = hot
    c_slot, c_tok, c_nb, c_sc = cands
    cutoff = max(best - thr, heap[0])
    nc, nmiss = 0, 0
    for i in range(nb):
        n = bnode[i]
        tot = _lae(bpb[i], bnb[i])
        last = ni[n, TOKEN]
        nlab = ntok
        if trie_mode == 2:  # only the lexicon's next letters (and the separator)
            nlab = _lexicon_labels(ni[n, WNODE], t_start, t_label, space, tok_ok, t + 1, labs)
        for q in range(nlab):
            c = toks[q] if trie_mode != 2 else labs[q]
            a = row[c] + (bpb[i] if c == last else tot)
            if a == NEG_INF:
                continue
            j = merge[i * V + c]
            if j >= 0:
                if a > _lae(new_pb[j], new_nb[j]):  # the label is mostly emitted now:
                    ni[bnode[j], FRAME] = t  # time it here, not at an early stray spike
                new_nb[j] = _lae(new_nb[j], a)
                continue
            if c != space:
                if a + nf[n, BONUS] + slack < cutoff:
                    continue  # even the largest possible word-level gain would not do
                bonus = _letter_bonus(n, c, ni, nf, alpha, beta, hot_w, unk_smear, lm_mode,
                                      trie_mode, use_hot, t_start, t_label, t_child, t_mask,
                                      t_smear, h_goto, h_credit, h_reward)
            else:  # the same every frame: computed once per prefix
                bonus = nf[n, SEPBONUS]
                if math.isnan(bonus):
                    bonus = nf[n, SEPBONUS] = _extend(n, c, ni, nf, fp, ip, lm, trie, hot)[0]
            if math.isnan(bonus):
                miss[nmiss] = n
                nmiss += 1
                continue
            if a + bonus < cutoff or bonus == NEG_INF:
                continue
            c_slot[nc], c_tok[nc], c_nb[nc], c_sc[nc] = i, c, a, a + bonus
            nc += 1
            _sift_down(heap, 0, a + bonus)  # replaces the minimum
            best = max(best, a + bonus)
            cutoff = max(best - thr, heap[0])
    return nc, nmiss, best


@njit(cache=True, nogil=True, inline="always")
def _next_beam(t, best, fp, ip, lm, trie, hot, ni, nf, hk, hv, st, bnode, new_pb, new_nb,
               cands, nc, pool, nxt):
    """The B best of the stays and candidates within the threshold of the best, as
    (node, pb, pnb) in ``nxt``; chosen candidates become nodes. Returns how many."""
    B, thr, nb = ip[0], fp[3], st[2]
    c_slot, c_tok, c_nb, c_sc = cands
    scores, work, idx = pool
    for j in range(nb):
        scores[j] = _lae(new_pb[j], new_nb[j]) + nf[bnode[j], BONUS]
        best = max(best, scores[j])
    m = 0
    for j in range(nb):  # the pool: stays and candidates within the threshold
        if scores[j] >= best - thr and scores[j] > NEG_INF:
            scores[m], idx[m] = scores[j], j
            m += 1
    for q in range(nc):
        if c_sc[q] >= best - thr:
            scores[m], idx[m] = c_sc[q], B + q
            m += 1
    k = _select(scores, m, B, idx, work)
    t_node, t_pb, t_nb = nxt
    for r in range(k):
        q = idx[r]
        if q < B:
            t_node[r], t_pb[r], t_nb[r] = bnode[q], new_pb[q], new_nb[q]
        else:
            q -= B
            t_node[r] = _child_node(bnode[c_slot[q]], c_tok[q], t, ni, nf, hk, hv, st, fp, ip,
                                    lm, trie, hot)
            t_pb[r], t_nb[r] = NEG_INF, c_nb[q]
    return k


@njit(cache=True, nogil=True, inline="always")
def _clear(ni, bnode, nb, pos, merge, V):
    """Undo this frame's marks in ``merge`` and ``pos``."""
    for j in range(nb):
        p = ni[bnode[j], PARENT]
        if p >= 0 and pos[p] >= 0:
            merge[pos[p] * V + ni[bnode[j], TOKEN]] = -1
    for j in range(nb):
        pos[bnode[j]] = -1


class BeamSearchDecoder(Decoder):
    """CTC prefix beam search, optionally with a word n-gram LM, a lexicon and hotwords.

    Args:
        beam_size: prefixes kept per frame.
        lm: an ARPA file (``.arpa``/``.arpa.gz``), a KenLM binary (needs ``kenlm``), or a
            loaded :class:`~asrkit.lm.NgramLM`/:class:`~asrkit.lm.KenLMModel`.
        alpha: LM weight (natural-log LM scores are added times ``alpha``); LM only.
        beta: bonus per finished word, against the LM's bias to short outputs; LM only.
        lexicon: a word-list/lexicon file or an iterable of words: outputs only hold these.
        hotwords: phrases to favour; each spelled character earns ``hotword_weight``.
        nbest: hypotheses returned per utterance (distinct texts, best first).
        beam_size_token: labels tried per frame (the most likely ones); None = all.
        beam_threshold: prefixes scoring this far below the best are dropped.
        num_workers: threads over the utterances of a batch (default: CPU count).
    """

    def __init__(self, vocab: Vocabulary, frame_seconds: float, beam_size: int = 50,
                 lm=None, alpha: float = 0.5, beta: float = 1.0,
                 lexicon: str | Path | Iterable[str] | None = None,
                 hotwords: Iterable[str] | None = None, hotword_weight: float = 3.0,
                 nbest: int = 1, beam_size_token: int | None = None,
                 beam_threshold: float = 50.0, num_workers: int | None = None):
        super().__init__(vocab, frame_seconds)
        _check_options(beam_size, nbest, alpha, beta, hotword_weight, beam_threshold,
                       beam_size_token)
        self.beam_size, self.nbest = int(beam_size), int(nbest)
        self.lm = load_lm(lm) if isinstance(lm, (str, Path)) else lm
        self.alpha, self.beta = (float(alpha), float(beta)) if self.lm is not None else (0.0, 0.0)
        self.num_workers = num_workers or min(os.cpu_count() or 1, 8)
        words = (read_lexicon(lexicon) if isinstance(lexicon, (str, Path)) else lexicon)
        self._setup_words(list(words) if words is not None else None)
        self._setup_hotwords(list(hotwords or ()), float(hotword_weight))
        tok = len(vocab) - 1 if beam_size_token is None else int(beam_size_token)
        space = vocab.space_id
        self._ip = np.array([self.beam_size, tok, -1 if space is None else space, self._lm_mode,
                             self._trie_mode, int(self._hot is not None), len(vocab),
                             self._unk], np.int64)
        self._fp = np.array([self.alpha, self.beta, self._hot_weight, float(beam_threshold),
                             self._unk_smear, self._slack()], np.float64)

    def _setup_words(self, lexicon: list[str] | None) -> None:
        lm = self.lm
        self._lm_mode = 0 if lm is None else 1 if isinstance(lm, NgramLM) else 2
        self._unk, self._unk_smear = 0, 0.0
        if lexicon is not None:
            trie, self._trie_mode = WordTrie.build(lexicon, self.vocab), 2
            if not trie.words:
                raise DecodingError("no lexicon word can be spelled with the model's symbols")
        elif self._lm_mode == 1:  # LM words, to know a finished word's id without strings
            trie, self._trie_mode = WordTrie.build(
                (w for w in lm.words if w not in (BOS, EOS, UNK)), self.vocab), 1
        else:
            trie, self._trie_mode = WordTrie.build((), self.vocab), 0
        word = trie.word.copy()
        scores = np.zeros(len(trie.words))
        if self._lm_mode == 1:
            ids = _normalized_ids(lm, self.vocab)
            lm_ids = np.array([ids.get(w, lm.unk_id) for w in trie.words], np.int32)
            word[word >= 0] = lm_ids[word[word >= 0]]
            scores = np.array([lm_score(lm.arrays, 0, i)[0] for i in lm_ids])
            self._unk, self._unk_smear = lm.unk_id, float(lm_score(lm.arrays, 0, lm.unk_id)[0])
        elif self._lm_mode == 2:
            scores = np.array([lm.unigram(w) for w in trie.words])
        smear = trie.smear(scores) if self._lm_mode else np.zeros(len(trie))
        self.trie = trie
        self._trie = (trie.start, trie.label, trie.child, word, smear.astype(np.float64),
                      trie.mask)
        self._lm_arrays = lm.arrays if self._lm_mode == 1 else _NO_LM

    def reweighted(self, alpha: float, beta: float) -> "BeamSearchDecoder":
        """The same decoder (sharing LM, lexicon, hotwords) with other LM weights."""
        _check_options(self.beam_size, self.nbest, alpha, beta, self._hot_weight, 1.0, None)
        other = copy.copy(self)
        other.alpha, other.beta = float(alpha), float(beta)
        other._fp = self._fp.copy()
        other._fp[0], other._fp[1] = other.alpha, other.beta
        other._fp[5] = other._slack()
        return other

    def _slack(self) -> float:
        """Upper bound of the bonus a non-separator label can add to a prefix: one
        more hotword character, or a look-ahead score rising along the trie."""
        gain = max(self._hot_weight, 0.0)
        if self._lm_mode:
            smear = self._trie[4]
            parents = np.repeat(np.arange(len(self.trie)), np.diff(self.trie.start))
            inner = parents > 0  # from the root the look-ahead starts at 0: never a gain
            rise = smear[self.trie.child[inner]] - smear[parents[inner]]
            if self._trie_mode == 1 and len(smear) > 1:  # leaving the trie: <unk> score
                rise = np.append(rise, self._unk_smear - smear[1:].min())
            gain += self.alpha * max(0.0, float(rise.max(initial=0.0)))
        return gain

    def _setup_hotwords(self, hotwords: list[str], weight: float) -> None:
        self._hot = HotwordAutomaton.build(hotwords, self.vocab) if hotwords else None
        self._hot_weight = weight if hotwords else 0.0
        h = self._hot or HotwordAutomaton(np.zeros((1, len(self.vocab)), np.int32),
                                          np.zeros(1, np.int32), np.zeros(1, np.int32), 0)
        self._hot_arrays = (h.goto, h.credit, h.reward)
        self._hot_begin = h.begin

    def decode_nbest(self, log_probs, lengths=None) -> list[list[Hypothesis]]:
        """``log_probs (batch, frames, vocab)`` (blank = 0), ``lengths (batch,)`` →
        the n-best hypotheses of each utterance."""
        log_probs, lengths = check_log_probs(log_probs, lengths, len(self.vocab))
        items = [np.ascontiguousarray(log_probs[b, :int(lengths[b])].numpy())
                 for b in range(log_probs.shape[0])]
        if len(items) > 1 and self.num_workers > 1:
            with ThreadPoolExecutor(min(self.num_workers, len(items))) as pool:
                return list(pool.map(self._decode_one, items))
        return [self._decode_one(x) for x in items]

    def _decode_one(self, lp: np.ndarray) -> list[Hypothesis]:
        """``lp (frames, vocab)`` float32 → n-best list."""
        B = self.beam_size
        cap = 1 + lp.shape[0] * B  # each frame makes at most B new prefixes
        ni = np.zeros((cap, 10), np.int32)
        nf = np.zeros((cap, 5), np.float64)
        nf[0, SEPBONUS] = math.nan
        ni[0, PARENT], ni[0, FRAME], ni[0, HOT] = -1, -1, self._hot_begin
        ni[0, WNODE] = 0 if self._trie_mode else -1
        ni[0, LMSTATE] = self.lm.begin_state() if self.lm is not None else 0
        nf[0, BONUS] = self._hot_weight * self._hot_arrays[1][self._hot_begin]
        hcap = 1 << int(2 * cap).bit_length()
        hk, hv = np.full(hcap, -1, np.int64), np.full(hcap, -1, np.int32)
        bnode = np.zeros(B, np.int32)
        bpb, bnb = np.full(B, NEG_INF), np.full(B, NEG_INF)
        bpb[0] = 0.0
        st = np.array([0, 1, 1, 0], np.int64)  # frame, nodes used, beam entries, misses
        miss = np.zeros(B, np.int32)
        while _search(lp, self._fp, self._ip, self._lm_arrays, self._trie, self._hot_arrays,
                      ni, nf, hk, hv, bnode, bpb, bnb, st, miss) == NEED_LM:
            for n in miss[:st[3]]:
                p, s = self.lm.score(int(ni[n, LMSTATE]), self._last_word(ni, n))
                nf[n, WSSCORE], ni[n, WSSTATE], ni[n, WSVALID] = p, s, 1
        k = int(st[2])
        return self._finish(lp, ni, nf, bnode[:k], np.logaddexp(bpb[:k], bnb[:k]))

    def _last_word(self, ni, n) -> str:
        chars, space = [], self.vocab.space_id
        while n > 0 and ni[n, TOKEN] != space:
            chars.append(self.vocab.symbols[ni[n, TOKEN] - 1])
            n = ni[n, PARENT]
        return "".join(reversed(chars))

    def _finish(self, lp, ni, nf, nodes, am) -> list[Hypothesis]:
        """Close each prefix's last word and the sentence, rank, build hypotheses."""
        ranked = []
        for strict in (True, False):  # if every prefix ends inside a word, keep them all
            for n, a in zip(nodes.tolist(), am.tolist()):
                closed = self._close(ni, nf, n, strict)
                if closed is not None:
                    lm_total, words, hot = closed
                    score = a + self.alpha * lm_total + self.beta * words + self._hot_weight * hot
                    ranked.append((score, a, lm_total, n))
            if ranked:
                break
        ranked.sort(reverse=True)
        out, seen = [], set()
        for score, a, lm_total, n in ranked:
            tokens, frames = [], []
            while n > 0:
                tokens.append(int(ni[n, TOKEN]))
                frames.append(int(ni[n, FRAME]))
                n = ni[n, PARENT]
            tokens.reverse()
            frames.reverse()
            conf = np.zeros(lp.shape[0])
            conf[frames] = np.exp(lp[frames, tokens])
            hyp = make_hypothesis(self.vocab, tokens, frames, conf, self.frame_seconds,
                                  score=score, am_score=a, lm_score=lm_total)
            if hyp.text not in seen:
                seen.add(hyp.text)
                out.append(hyp)
                if len(out) == self.nbest:
                    break
        return out

    def _close(self, ni, nf, n, strict: bool = True):
        """(LM score, words, hotword total) of prefix ``n`` once its last word and the
        sentence end; None when ``strict`` and the lexicon lacks its last word."""
        words, hot = int(ni[n, NWORDS]), float(nf[n, HOTDONE])
        wn, state, lm_total = int(ni[n, WNODE]), int(ni[n, LMSTATE]), float(nf[n, LMSCORE])
        if ni[n, WLEN] > 0:
            if strict and self._trie_mode == 2 and (wn < 0 or self._trie[3][wn] < 0):
                return None
            words += 1
            if self._lm_mode == 1:
                wid = int(self._trie[3][wn]) if wn >= 0 and self._trie[3][wn] >= 0 else self._unk
                p, state = lm_score(self._lm_arrays, state, wid)
                lm_total += p
            elif self._lm_mode == 2:
                p, state = self.lm.score(state, self._last_word(ni, n))
                lm_total += p
        if self.lm is not None:
            lm_total += self.lm.end_score(int(state))
        if self._hot is not None and self.vocab.space_id is not None:
            hot += self._hot.reward[self._hot.goto[ni[n, HOT], self.vocab.space_id]]
        return lm_total, words, hot


_NO_LM = (np.full(16, -1, np.int64), np.full(16, -1, np.int32), np.zeros(1), np.zeros(1),
          np.zeros(1, np.int32), np.zeros(1, np.int32), np.int64(1))


def _normalized_ids(lm: NgramLM, vocab: Vocabulary) -> dict[str, int]:
    """LM word ids by the word as the model's vocabulary spells it (its case policy)."""
    ids: dict[str, int] = {}
    for w, i in lm.word_ids.items():
        ids.setdefault(vocab.normalize(w), i)
    return ids


def _check_options(beam_size, nbest, alpha, beta, hotword_weight, threshold, beam_size_token):
    if not isinstance(beam_size, (int, np.integer)) or beam_size < 1:
        raise DecodingError(f"beam_size must be a positive integer, got {beam_size!r}")
    if not isinstance(nbest, (int, np.integer)) or not 1 <= nbest <= beam_size:
        raise DecodingError(f"nbest must be between 1 and beam_size ({beam_size}), got {nbest!r}")
    for name, v in (("alpha", alpha), ("beta", beta), ("hotword_weight", hotword_weight)):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DecodingError(f"{name} must be a finite number, got {v!r}")
    if alpha < 0 or hotword_weight < 0:
        raise DecodingError("alpha and hotword_weight must not be negative")
    if not threshold > 0:
        raise DecodingError(f"beam_threshold must be positive, got {threshold!r}")
    if beam_size_token is not None and beam_size_token < 1:
        raise DecodingError(f"beam_size_token must be positive, got {beam_size_token!r}")


# ------------------------------------------------------------ LM weight tuning

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_BETAS = (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0)
CONFIG_KEYS = {"decoder", "beam_size", "lm", "alpha", "beta", "lexicon", "hotwords",
               "hotword_weight", "nbest", "beam_size_token", "beam_threshold"}


@dataclass(frozen=True)
class TuningResult:
    alpha: float
    beta: float
    wer: float  # dev-set word error rate at (alpha, beta)
    trials: tuple[tuple[float, float, float], ...]  # every (alpha, beta, wer) decoded


def tune_lm(log_probs: Sequence, references: Sequence[str], decoder: BeamSearchDecoder,
            alphas: Sequence[float] = DEFAULT_ALPHAS, betas: Sequence[float] = DEFAULT_BETAS,
            method: str = "grid", progress: Callable[[float, float, float], None] | None = None,
            ) -> TuningResult:
    """Find the LM weight and word bonus with the lowest WER on a dev set.

    ``log_probs`` holds one ``(frames, vocab)`` array per utterance, computed once;
    ``decoder`` (with its LM) decodes them at each setting. ``method="grid"`` tries
    every pair; ``"coordinate"`` alternates line searches over alphas and betas from
    the middle of both, until neither moves (far fewer decodes). ``progress(alpha,
    beta, wer)`` is called after each decode. Ties go to the smaller weights.
    """
    from .metrics import word_errors  # noqa: PLC0415 (jiwer only when tuning)

    if decoder.lm is None:
        raise DecodingError("tuning alpha and beta needs a decoder with a language model")
    if len(log_probs) != len(references) or not references:
        raise DecodingError(f"{len(log_probs)} log-prob arrays for {len(references)} "
                            "references; need one per utterance, at least one")
    if method not in ("grid", "coordinate") or not alphas or not betas:
        raise DecodingError(f"unknown tuning method {method!r} or empty grid")
    batch, lengths = _pad(log_probs)
    refs = [decoder.vocab.normalize(r) for r in references]
    tried: dict[tuple[float, float], float] = {}

    def evaluate(alpha, beta):
        if (alpha, beta) not in tried:
            hyps = decoder.reweighted(alpha, beta).decode(batch, lengths)
            tried[alpha, beta] = word_errors(refs, [h.text for h in hyps]).rate
            if progress:
                progress(alpha, beta, tried[alpha, beta])
        return tried[alpha, beta]

    def key(ab):
        return tried[ab], abs(ab[0]), abs(ab[1])

    if method == "grid":
        for a in alphas:
            for b in betas:
                evaluate(a, b)
    else:
        a, b = sorted(alphas)[len(alphas) // 2], sorted(betas)[len(betas) // 2]
        while True:
            a = min(alphas, key=lambda x: (evaluate(x, b), abs(x), abs(b)))
            new_b = min(betas, key=lambda y: (evaluate(a, y), abs(a), abs(y)))
            if new_b == b:
                break
            b = new_b
    a, b = min(tried, key=key)
    return TuningResult(a, b, tried[a, b], tuple((x, y, w) for (x, y), w in tried.items()))


def _pad(arrays: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays ``(frames_i, vocab)`` → ``(batch, max_frames, vocab)``, ``lengths (batch,)``."""
    tensors = [torch.as_tensor(x, dtype=torch.float32) for x in arrays]
    for i, x in enumerate(tensors):
        if x.dim() != 2:
            raise DecodingError(f"log-probs of utterance {i} must be (frames, vocab), "
                                f"got shape {tuple(x.shape)}")
    lengths = torch.tensor([len(x) for x in tensors])
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True), lengths


def save_decoding_config(path: str | Path, options: dict, tuning: dict | None = None) -> None:
    """Write decoder options (``decoder`` plus :func:`make_decoder` options) as JSON,
    atomically; file paths are stored relative to the config's folder when inside it."""
    path = Path(path)
    out = {}
    for k, v in options.items():
        if k not in CONFIG_KEYS:
            raise ConfigError(f"{k!r} is not a decoding option")
        if k in ("lm", "lexicon") and v is not None:
            v = _relative(Path(v), path.parent)
        out[k] = list(v) if isinstance(v, tuple) else v
    if tuning is not None:
        out["tuning"] = tuning
    atomic_write_json(path, out)


def load_decoding_config(path: str | Path) -> dict:
    """Options from a decoding config JSON: ``decoder`` ("greedy"/"beam") and the
    :func:`~asrkit.decoding.make_decoder` options. File paths are resolved against
    the config's folder; the ``tuning`` record is left out."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: decoding config not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a decoding config JSON file ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a decoding config is a JSON object")
    raw.pop("tuning", None)
    unknown = set(raw) - CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown decoding option(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(CONFIG_KEYS))}")
    for k in ("lm", "lexicon"):
        if raw.get(k) is not None:
            raw[k] = str((path.parent / raw[k]).resolve())
    raw.setdefault("decoder", "beam")
    return raw


def _relative(p: Path, folder: Path) -> str:
    try:
        return p.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(p.resolve())
