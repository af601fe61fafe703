"""The compiled kernel of CTC prefix beam search (the decoder is :mod:`asrkit.decoding.beam`;
which labels a frame tries and which candidates stay: :mod:`asrkit.decoding.beam_select`).

The search runs in one compiled kernel (numba, releasing the GIL so a batch spreads
over threads). Prefixes are nodes of a trie stored as parent-pointer arrays; a hash
table maps (parent, label) to the child so a prefix has one node, whose word-level
state (LM state and score, position in the lexicon trie, hotword automaton state)
is computed once when the node is made. An LM that lives outside the kernel (KenLM)
is asked between frames for the words the kernel could not score.

Two savings prune the search, both off when their limits are infinite: at each frame
only labels at least ``min_logp`` likely are tried (the frame's most likely label
always is), and prefixes scoring more than ``threshold`` below the best are dropped.
Without a lexicon, a word the LM does not know costs ``unk_offset`` (an LM score,
weighted by ``alpha``) once: from the
letter at which its spelling leaves every LM word (so a misspelling is penalised
while it is being spelled, not only when it ends), or when it ends as a non-word.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from ..jit import njit

from ..lm.ngram import hash_find, hash_insert, lm_score
from ..text import BLANK
from .beam_select import frame_tokens, select_best, sift_down

NEG_INF = -math.inf
# integer node columns
# (NUNK: finished words the LM does not know)
PARENT, TOKEN, FRAME, WNODE, WLEN, LMSTATE, NWORDS, HOT, WSSTATE, WSVALID, NUNK = range(11)
INT_COLUMNS = 11
# float node columns (SEPBONUS: bonus after a word separator, NaN until known)
LMSCORE, HOTDONE, BONUS, WSSCORE, SEPBONUS = range(5)
# search state ``st``: next frame, nodes in use, beam entries, nodes missing an LM score
ST_FRAME, ST_NODES, ST_BEAM, ST_MISSES = range(4)
NEED_LM = 1  # kernel status: some words need scores from an external LM
# where LM scores come from
LM_NONE, LM_ARRAYS, LM_EXTERNAL = 0, 1, 2  # no LM; NgramLM arrays in the kernel; KenLM
# what the word trie holds
TRIE_NONE, TRIE_LM_WORDS, TRIE_LEXICON = 0, 1, 2  # none; LM words (ids only); a lexicon
# closing a word (:func:`close_word`)
CLOSED, OUT_OF_LEXICON, NEEDS_LM = 0, 1, 2


class SearchParams(NamedTuple):
    """The search's settings, as the kernel reads them (numba passes a named tuple
    of scalars by value: build every field with ``int``/``float`` so one compiled
    signature serves all decoders)."""

    beam: int  # prefixes kept per frame
    tokens: int  # labels tried per frame (the most likely ones)
    space: int  # word separator label, -1 if the vocabulary has none
    lm_mode: int  # LM_NONE, LM_ARRAYS or LM_EXTERNAL
    trie_mode: int  # TRIE_NONE, TRIE_LM_WORDS or TRIE_LEXICON
    use_hot: int  # 1 if there are hotwords
    vocab: int  # labels, blank included
    unk: int  # LM id of <unk> (LM_ARRAYS)
    alpha: float  # LM weight
    beta: float  # bonus per word
    hot_weight: float  # bonus per hotword character
    threshold: float  # prefixes this far below the best are dropped
    unk_smear: float  # look-ahead score of a word that left the trie (<unk>)
    slack: float  # upper bound of the bonus one more letter can add (pruning)
    min_logp: float  # labels less likely than this at a frame are not tried (-inf: all)
    unk_offset: float  # LM score added once per word the LM does not know (0: none)


class KernelTrie(NamedTuple):
    """A :class:`~asrkit.decoding.lexicon.WordTrie` as the kernel reads it."""

    start: np.ndarray  # (nodes + 1,) int: node i's edges are start[i]:start[i + 1]
    label: np.ndarray  # (edges,) int: each edge's label
    child: np.ndarray  # (edges,) int: each edge's target node
    word: np.ndarray  # (nodes,) int: word (LM id when there is an LM) ending here, or -1
    smear: np.ndarray  # (nodes,) float: LM look-ahead score of the best word below
    mask: np.ndarray  # (nodes,) uint64: bit c set if the node has an edge of label c < 64


class KernelHotwords(NamedTuple):
    """A :class:`~asrkit.decoding.lexicon.HotwordAutomaton` as the kernel reads it."""

    goto: np.ndarray  # (states, vocab) int: next state after a label
    credit: np.ndarray  # (states,) int: characters of an unfinished hotword spelled
    reward: np.ndarray  # (states,) int: length of a hotword completed on entering


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
def _trie_step(trie, node, label):
    """Child of trie ``node`` by ``label``, or -1."""
    if label < 64:  # bit mask of the node's labels: rank of `label` indexes its edges
        bits = trie.mask[node]
        if not (bits >> np.uint64(label)) & np.uint64(1):
            return -1
        below = bits & ((np.uint64(1) << np.uint64(label)) - np.uint64(1))
        return trie.child[trie.start[node] + _popcount(below)]
    for e in range(trie.start[node], trie.start[node + 1]):
        if trie.label[e] == label:
            return trie.child[e]
    return -1


@njit(cache=True, nogil=True)
def close_word(n, ni, nf, p, lm, trie, strict):
    """Finish prefix ``n``'s partial word (the word separator follows, or the
    utterance ends): (status, LM state, LM score, words, unknown words). Status is
    OUT_OF_LEXICON when ``strict`` and a lexicon lacks the word, NEEDS_LM when an
    external LM must score it first (fill ``WSSCORE``/``WSSTATE`` of ``n`` and set
    ``WSVALID`` to 1, or to 2 for a word it does not know; ask again), else CLOSED.
    Without a partial word nothing changes."""
    wn, state, nw, lms = ni[n, WNODE], ni[n, LMSTATE], ni[n, NWORDS], nf[n, LMSCORE]
    nunk = ni[n, NUNK]
    if ni[n, WLEN] == 0:
        return CLOSED, state, lms, nw, nunk
    known = wn >= 0 and trie.word[wn] >= 0
    if strict and p.trie_mode == TRIE_LEXICON and not known:
        return OUT_OF_LEXICON, state, lms, nw, nunk
    if p.lm_mode != LM_NONE:
        if ni[n, WSVALID] == 0:  # the word's score is cached on the node
            if p.lm_mode == LM_EXTERNAL:
                return NEEDS_LM, state, lms, nw, nunk
            score, after = lm_score(lm, state, trie.word[wn] if known else p.unk)
            nf[n, WSSCORE] = score
            ni[n, WSSTATE] = after
            ni[n, WSVALID] = 1
        lms += nf[n, WSSCORE]
        state = ni[n, WSSTATE]
        if (p.trie_mode == TRIE_LM_WORDS and not known) or \
                (p.trie_mode == TRIE_NONE and ni[n, WSVALID] == 2):  # no lexicon
            nunk += 1
    return CLOSED, state, lms, nw + 1, nunk


@njit(cache=True, nogil=True, inline="always")
def hot_step(hs, hd, c, p, hot):
    """Hotword state and finished total after label ``c``."""
    if p.use_hot:
        hs = hot.goto[hs, c]
        hd += hot.reward[hs]
    return hs, hd


@njit(cache=True, nogil=True)
def _extend(n, c, ni, nf, p, lm, trie, hot):
    """Word-level state of prefix ``n`` + label ``c``: (bonus, word node, word length,
    LM state, LM score, words, unknown words, hotword state, hotword total). Bonus is
    -inf when the lexicon forbids the extension and NaN when an external LM must
    score a word first."""
    wn, wlen, state, nw = ni[n, WNODE], ni[n, WLEN], ni[n, LMSTATE], ni[n, NWORDS]
    lms, nunk = nf[n, LMSCORE], ni[n, NUNK]
    if c == p.space:
        if wlen > 0:
            status, state, lms, nw, nunk = close_word(n, ni, nf, p, lm, trie, True)
            if status == OUT_OF_LEXICON:
                return NEG_INF, wn, wlen, state, lms, nw, nunk, 0, 0.0
            if status == NEEDS_LM:
                return math.nan, wn, wlen, state, lms, nw, nunk, 0, 0.0
            wlen = 0
            wn = 0 if p.trie_mode != TRIE_NONE else -1
    else:
        if p.trie_mode != TRIE_NONE and wn >= 0:
            wn = _trie_step(trie, wn, c)
        if p.trie_mode == TRIE_LEXICON and wn < 0:
            return NEG_INF, wn, wlen, state, lms, nw, nunk, 0, 0.0
        wlen += 1
    hs, hd = hot_step(ni[n, HOT], nf[n, HOTDONE], c, p, hot)
    smear, spelling = 0.0, 0
    if p.lm_mode != LM_NONE and wlen > 0:
        smear = trie.smear[wn] if wn >= 0 else p.unk_smear
        spelling = _spelling_unknown(wn, p)
    bonus = (p.alpha * (lms + smear + p.unk_offset * (nunk + spelling)) + p.beta * nw
             + p.hot_weight * (hd + hot.credit[hs]))
    return bonus, wn, wlen, state, lms, nw, nunk, hs, hd


@njit(cache=True, nogil=True, inline="always")
def _spelling_unknown(wn, p):
    """1 if a partial word at LM-word trie node ``wn`` already begins no LM word."""
    return 1 if p.trie_mode == TRIE_LM_WORDS and p.lm_mode == LM_ARRAYS and wn < 0 else 0


@njit(cache=True, nogil=True, inline="always")
def _letter_bonus(n, c, ni, nf, p, trie, hot):
    """The bonus :func:`_extend` gives prefix ``n`` + a letter ``c`` (not the word
    separator), without making the node: the hot path."""
    wn = ni[n, WNODE]
    if p.trie_mode != TRIE_NONE and wn >= 0:
        wn = _trie_step(trie, wn, c)
    if p.trie_mode == TRIE_LEXICON and wn < 0:
        return NEG_INF
    hs, hd = hot_step(ni[n, HOT], nf[n, HOTDONE], c, p, hot)
    smear, spelling = 0.0, 0
    if p.lm_mode != LM_NONE:
        smear = trie.smear[wn] if wn >= 0 else p.unk_smear
        spelling = _spelling_unknown(wn, p)
    lms = nf[n, LMSCORE] + smear + p.unk_offset * (ni[n, NUNK] + spelling)
    return p.alpha * lms + p.beta * ni[n, NWORDS] + p.hot_weight * (hd + hot.credit[hs])


@njit(cache=True, nogil=True)
def _child_node(parent, c, t, ni, nf, hk, hv, st, p, lm, trie, hot):
    """The node of prefix ``parent`` + ``c``, made (with its word-level state) if new."""
    key = np.int64(parent) * p.vocab + c
    m = hash_find(hk, hv, key)
    if m < 0:
        m = st[ST_NODES]
        st[ST_NODES] += 1
        hash_insert(hk, hv, key, m)
        bonus, wn, wlen, state, lms, nw, nunk, hs, hd = _extend(parent, c, ni, nf, p, lm,
                                                                trie, hot)
        ni[m, PARENT], ni[m, TOKEN], ni[m, WNODE], ni[m, WLEN] = parent, c, wn, wlen
        ni[m, LMSTATE], ni[m, NWORDS], ni[m, HOT], ni[m, WSVALID] = state, nw, hs, 0
        ni[m, NUNK] = nunk
        nf[m, LMSCORE], nf[m, HOTDONE], nf[m, BONUS], nf[m, SEPBONUS] = lms, hd, bonus, math.nan
    ni[m, FRAME] = t  # (re)entering the beam now
    return m


@njit(cache=True, nogil=True)
def _lexicon_labels(wn, trie, space, tok_ok, tried, out):
    """Labels that keep a prefix in the lexicon: its trie node's children (among the
    labels tried at this frame: ``tok_ok[c] == tried``), and the word separator."""
    n = 0
    if wn >= 0:
        for e in range(trie.start[wn], trie.start[wn + 1]):
            if tok_ok[trie.label[e]] == tried:
                out[n] = trie.label[e]
                n += 1
    if space >= 0 and tok_ok[space] == tried:
        out[n] = space
        n += 1
    return n


@njit(cache=True, nogil=True)
def beam_search(lp, p, lm, trie, hot, ni, nf, hk, hv, bnode, bpb, bnb, st, miss):
    """Run the search from frame ``st[ST_FRAME]`` over ``lp (frames, vocab)``.

    ``p`` is a :class:`SearchParams`, ``lm`` the :attr:`~asrkit.lm.ngram.NgramLM.arrays`
    (LM_ARRAYS), ``trie`` a :class:`KernelTrie`, ``hot`` a :class:`KernelHotwords`.
    Beam: ``bnode/bpb/bnb[:st[ST_BEAM]]``; ``st[ST_NODES]`` nodes in use. Returns 0
    when done, or NEED_LM with the nodes whose finished word needs a score in
    ``miss[:st[ST_MISSES]]`` (nothing else changed: the caller fills the scores in and
    calls again).
    """
    T, V = lp.shape
    B = p.beam
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
    t = st[ST_FRAME]
    while t < T:
        row = lp[t]
        ntok = frame_tokens(row, p.tokens, p.min_logp, toks)
        for q in range(ntok):
            tok_ok[toks[q]] = t + 1  # labels tried at frame t are marked t + 1
        nb = st[ST_BEAM]
        best = _stays(row, ni, nf, bnode, bpb, bnb, nb, pos, merge, new_pb, new_nb, heap)
        _merges(row, t, ni, bnode, bpb, bnb, nb, pos, tok_ok, new_pb, new_nb)
        nc, nmiss, best = _extensions(row, t, best, p, lm, trie, hot, ni, nf, bnode, bpb,
                                      bnb, nb, toks, ntok, labs, tok_ok, merge, new_pb,
                                      new_nb, heap, cands, miss)
        k = 0
        if nmiss == 0:
            k = _next_beam(t, best, p, lm, trie, hot, ni, nf, hk, hv, st, bnode, new_pb,
                           new_nb, cands, nc, pool, nxt)
        _clear(ni, bnode, nb, pos, merge, V)
        if nmiss > 0:
            st[ST_MISSES] = nmiss
            return NEED_LM
        for r in range(k):
            bnode[r], bpb[r], bnb[r] = nxt[0][r], nxt[1][r], nxt[2][r]
        st[ST_BEAM] = k
        t += 1
        st[ST_FRAME] = t
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
        sift_down(heap, j, heap[j])
    return best


@njit(cache=True, nogil=True, inline="always")
def _merges(row, t, ni, bnode, bpb, bnb, nb, pos, tok_ok, new_pb, new_nb):
    """Extensions of a prefix into another beam entry (its child by a label tried
    at this frame) add to that entry's probability of ending in the label."""
    for j in range(nb):
        n = bnode[j]
        parent = ni[n, PARENT]
        if parent < 0 or pos[parent] < 0 or tok_ok[ni[n, TOKEN]] != t + 1:
            continue
        i, c = pos[parent], ni[n, TOKEN]
        a = row[c] + (bpb[i] if c == ni[parent, TOKEN] else _lae(bpb[i], bnb[i]))
        if a == NEG_INF:
            continue
        if a > _lae(new_pb[j], new_nb[j]):  # the label is mostly emitted now:
            ni[n, FRAME] = t  # time it here, not at an early stray spike
        new_nb[j] = _lae(new_nb[j], a)


@njit(cache=True, nogil=True, inline="always")
def _extensions(row, t, best, p, lm, trie, hot, ni, nf, bnode, bpb, bnb, nb, toks, ntok,
                labs, tok_ok, merge, new_pb, new_nb, heap, cands, miss):
    """Extend each prefix by each label tried that does not lead to another beam
    entry (:func:`_merges` did those), as a candidate if it beats the rising cutoff
    (the heap's minimum, or the threshold below the best). Labels come most likely
    first, so a prefix stops at the first letter that cannot reach the cutoff.
    Returns (candidates, misses, best)."""
    V = row.shape[0]
    thr, slack, space, lexicon = p.threshold, p.slack, p.space, p.trie_mode == TRIE_LEXICON
    c_slot, c_tok, c_nb, c_sc = cands
    cutoff = max(best - thr, heap[0])
    nc, nmiss = 0, 0
    space_ok = space >= 0 and tok_ok[space] == t + 1
    for i in range(nb):
        n = bnode[i]
        tot = _lae(bpb[i], bnb[i])
        last = ni[n, TOKEN]
        nlab = ntok
        if lexicon:  # only the lexicon's next letters (and the separator)
            nlab = _lexicon_labels(ni[n, WNODE], trie, space, tok_ok, t + 1, labs)
        q = -1
        while True:
            q += 1
            if q < nlab:
                c = labs[q] if lexicon else toks[q]
                if c == space and not lexicon:
                    continue
            elif q == nlab and space_ok and not lexicon:  # the separator, whatever its rank
                c = space
            else:
                break
            if merge[i * V + c] >= 0:
                continue
            a = row[c] + (bpb[i] if c == last else tot)
            if a == NEG_INF:
                continue
            if c != space:
                if row[c] + tot + nf[n, BONUS] + slack < cutoff:
                    if not lexicon:  # later letters are less likely still
                        q = nlab - 1
                    continue
                bonus = _letter_bonus(n, c, ni, nf, p, trie, hot)
            else:  # the same every frame: computed once per prefix
                bonus = nf[n, SEPBONUS]
                if math.isnan(bonus):
                    bonus = nf[n, SEPBONUS] = _extend(n, c, ni, nf, p, lm, trie, hot)[0]
            if math.isnan(bonus):
                miss[nmiss] = n
                nmiss += 1
                continue
            if a + bonus < cutoff or bonus == NEG_INF:
                continue
            c_slot[nc], c_tok[nc], c_nb[nc], c_sc[nc] = i, c, a, a + bonus
            nc += 1
            sift_down(heap, 0, a + bonus)  # replaces the minimum
            best = max(best, a + bonus)
            cutoff = max(best - thr, heap[0])
    return nc, nmiss, best


@njit(cache=True, nogil=True, inline="always")
def _next_beam(t, best, p, lm, trie, hot, ni, nf, hk, hv, st, bnode, new_pb, new_nb,
               cands, nc, pool, nxt):
    """The B best of the stays and candidates within the threshold of the best, as
    (node, pb, pnb) in ``nxt``; chosen candidates become nodes. Returns how many."""
    B, thr, nb = p.beam, p.threshold, st[ST_BEAM]
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
    k = select_best(scores, m, B, idx, work)
    t_node, t_pb, t_nb = nxt
    for r in range(k):
        q = idx[r]
        if q < B:
            t_node[r], t_pb[r], t_nb[r] = bnode[q], new_pb[q], new_nb[q]
        else:
            q -= B
            t_node[r] = _child_node(bnode[c_slot[q]], c_tok[q], t, ni, nf, hk, hv, st, p, lm,
                                    trie, hot)
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
