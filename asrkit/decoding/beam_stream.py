"""Prefix beam search over a stream of frames (:meth:`BeamSearchDecoder.stream`).

The compiled search (:func:`asrkit.decoding.beam_kernel.beam_search`) already keeps
all its state in arrays and resumes from the frame it stopped at, so a stream keeps
those arrays between blocks of frames, growing them (and rebuilding the prefix hash
table) when a block may need more prefix nodes than they hold. The search is the
same as over all the frames at once: the stream's result at the end is the offline
decoder's.

A word is final once every prefix in the beam extends the same prefix through the
word separator after it: every later prefix descends from the beam's, so no frame
can change that word, its timing or its confidence (a label's frame moves only while
the prefix ending in it and that prefix's parent are both in the beam).

That can take long: a rival that differs early may stay in the beam (within the beam
threshold) for seconds. With ``final_after`` a word that ended that many seconds ago
is made final anyway once every rival disagreeing with the best prefix about it is at
least ``final_margin`` below the best, and those rivals are dropped: the search then
differs from the offline one where such a rival would have won.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..jit import njit
from ..lm.ngram import hash_insert
from .base import DecoderStream, WordTiming, check_log_probs, end_is_settled, word_timings
from .beam_kernel import (BONUS, FRAME, HOT, INT_COLUMNS, LMSTATE, NEED_LM, PARENT,
                          SEPBONUS, ST_BEAM, ST_MISSES, ST_NODES, TOKEN, WNODE, beam_search)

FIRST_FRAMES = 256  # node capacity of a new stream, in frames' worth of prefixes
FINAL_MARGIN = 1.0  # with final_after: rivals at least this far below the best (natural
# log) are dropped. On AN4 test (an4-stream, beam 50, trigram, final_after 0.2 s) 1.0 cut
# the median delay from 923 to 438 ms at the same WER; 5.0 to 587 ms.


@njit(cache=True)
def _rehash(ni, nodes, vocab, keys, vals):
    """Fill the (parent, label) → node table ``keys/vals`` from ``ni[1:nodes]``."""
    for m in range(1, nodes):
        hash_insert(keys, vals, np.int64(ni[m, PARENT]) * vocab + ni[m, TOKEN], m)


@njit(cache=True)
def _compact(ni, nf, nodes, keep):
    """Drop the prefix nodes no ``keep`` node descends from: move the others, in order,
    to the front of ``ni``/``nf`` and renumber their parents. Returns the old → new
    node numbers (-1: dropped) and the count kept."""
    live = np.zeros(nodes, np.bool_)
    live[0] = True
    for n in keep:
        while n > 0 and not live[n]:
            live[n] = True
            n = ni[n, PARENT]
    new = np.full(nodes, -1, np.int32)
    count = 0
    for m in range(nodes):
        if live[m]:
            new[m] = count
            ni[count], nf[count] = ni[m], nf[m]
            if count > 0:
                ni[count, PARENT] = new[ni[count, PARENT]]  # a parent comes first
            count += 1
    return new, count


class BeamStream(DecoderStream):
    """The beam of one utterance, carried from block to block of frames."""

    def __init__(self, decoder, final_after: float | None = None,
                 final_margin: float = FINAL_MARGIN):
        for name, value in (("final_after", final_after), ("final_margin", final_margin)):
            if value is not None and not 0 <= value < math.inf:
                raise ConfigError(f"{name} must be a number >= 0, not {value}")
        self.decoder = decoder
        self.final_after, self.final_margin = final_after, final_margin
        B, V = decoder.beam_size, len(decoder.vocab)
        self.lp = np.zeros((FIRST_FRAMES, V), np.float32)  # frames so far, then spare rows
        self.seen = 0
        self.ni = np.zeros((1 + FIRST_FRAMES * B, INT_COLUMNS), np.int32)
        self.nf = np.zeros((1 + FIRST_FRAMES * B, 5), np.float64)
        ni, nf = self.ni, self.nf
        nf[0, SEPBONUS] = math.nan
        ni[0, PARENT], ni[0, FRAME], ni[0, HOT] = -1, -1, decoder._hot_begin
        ni[0, WNODE] = 0 if decoder._trie_mode else -1
        ni[0, LMSTATE] = decoder.lm.begin_state() if decoder.lm is not None else 0
        nf[0, BONUS] = decoder._hot_weight * decoder._hot_arrays.credit[decoder._hot_begin]
        self.st = np.array([0, 1, 1, 0], np.int64)  # ST_FRAME, ST_NODES, ST_BEAM, ST_MISSES
        self._hash()
        self.bnode = np.zeros(B, np.int32)
        self.bpb, self.bnb = np.full(B, -math.inf), np.full(B, -math.inf)
        self.bpb[0] = 0.0
        self.miss = np.zeros(B, np.int32)
        self.committed = 0  # node of the word separator closing the last final word
        self.context: list[int] = []  # that word's symbol nodes: the next word's start
        # may not come before its last symbol's frame (asrkit.decoding.base.word_bounds)

    def _hash(self) -> None:
        cap = 1 << int(2 * len(self.ni)).bit_length()
        self.hk, self.hv = np.full(cap, -1, np.int64), np.full(cap, -1, np.int32)
        _rehash(self.ni, int(self.st[ST_NODES]), len(self.decoder.vocab), self.hk, self.hv)

    def _reserve(self, frames: int) -> None:
        """Room for ``frames`` more frames of log-probs and of new prefixes."""
        need = self.seen + frames
        if need > len(self.lp):
            grown = np.zeros((max(need, 2 * len(self.lp)), self.lp.shape[1]), np.float32)
            grown[:self.seen] = self.lp[:self.seen]
            self.lp = grown
        nodes = int(self.st[ST_NODES]) + frames * self.decoder.beam_size
        if nodes <= len(self.ni):
            return
        self._drop_dead_nodes()
        nodes = int(self.st[ST_NODES]) + frames * self.decoder.beam_size
        if 2 * nodes > len(self.ni):  # at least half free after dropping, or grow
            size = max(2 * nodes, 2 * len(self.ni))
            self.ni = np.concatenate([self.ni, np.zeros((size - len(self.ni), INT_COLUMNS),
                                                        np.int32)])
            self.nf = np.concatenate([self.nf, np.zeros((size - len(self.nf), 5))])
            self._hash()

    def _drop_dead_nodes(self) -> None:
        """Forget the prefixes that fell out of the beam. Only the beam's prefixes and
        their ancestors are read again (a fallen prefix that comes back is made anew,
        with the same values: the search is unchanged), so a long stream keeps about
        one node per label it emits instead of ``beam_size`` per frame."""
        k = int(self.st[ST_BEAM])
        keep = np.array([*self.bnode[:k], self.committed, *self.context], np.int32)
        new, count = _compact(self.ni, self.nf, int(self.st[ST_NODES]), keep)
        self.bnode[:k] = new[self.bnode[:k]]
        self.committed = int(new[self.committed])
        self.context = [int(new[n]) for n in self.context]
        self.st[ST_NODES] = count
        self._hash()

    def advance(self, log_probs) -> None:
        log_probs, _ = check_log_probs(log_probs, None, len(self.decoder.vocab))
        block = log_probs[0].numpy()
        self._reserve(len(block))
        self.lp[self.seen:self.seen + len(block)] = block
        self.seen += len(block)
        dec = self.decoder
        while beam_search(self.lp[:self.seen], dec._params, dec._lm_arrays, dec._trie,
                          dec._hot_arrays, self.ni, self.nf, self.hk, self.hv, self.bnode,
                          self.bpb, self.bnb, self.st, self.miss) == NEED_LM:
            for n in self.miss[:self.st[ST_MISSES]]:
                dec._score_last_word(self.ni, self.nf, n)

    def _path(self, node: int) -> list[int]:
        """The nodes after the last final word down to ``node``, in order."""
        path = []
        while node > 0 and node != self.committed:
            path.append(node)
            node = int(self.ni[node, PARENT])
        return path[::-1]

    def update(self):
        k = int(self.st[ST_BEAM])
        if k == 0:
            return (), ()
        paths = [self._path(int(n)) for n in self.bnode[:k]]
        if self.final_after is not None:
            paths = self._drop_far_rivals(paths)
            k = len(paths)
        shared = 0
        while all(len(p) > shared and p[shared] == paths[0][shared] for p in paths):
            shared += 1
        space = self.decoder.vocab.space_id
        path = paths[0]
        close = next((j for j in range(shared - 1, -1, -1)
                      if self.ni[path[j], TOKEN] == space and self._settled(paths, j, shared)),
                     -1)
        final: tuple[WordTiming, ...] = ()
        if close >= 0:  # timed with the shared part of the next word: it may end this one
            final = self._words(path[:shared])[:len(self._words(path[:close + 1]))]
            self.committed = path[close]
            word: list[int] = []  # the symbols of the last word before path[close]
            for n in reversed(path[:close]):
                if self.ni[n, TOKEN] != space:
                    word.append(n)
                elif word:
                    break
            if word:
                self.context = word[::-1]
        return final, self._words(self._path(int(self.bnode[self._best(k)])))

    def _scores(self, k: int) -> np.ndarray:
        return np.logaddexp(self.bpb[:k], self.bnb[:k]) + self.nf[self.bnode[:k], BONUS]

    def _best(self, k: int) -> int:
        return int(np.argmax(self._scores(k)))

    def _drop_far_rivals(self, paths: list[list[int]]) -> list[list[int]]:
        """Drop the beam entries (``paths``: each one's nodes after the last final
        word) that disagree with the best one about a word that ended ``final_after``
        seconds ago, if each is at least ``final_margin`` below the best; return the
        paths of the entries left."""
        k, space = len(paths), self.decoder.vocab.space_id
        scores = self._scores(k)
        best = int(np.argmax(scores))
        newest = self.seen - 1 - self.final_after / self.decoder.frame_seconds
        anchor, last_letter = -1, -1
        for n in paths[best]:
            if self.ni[n, TOKEN] != space:
                last_letter = int(self.ni[n, FRAME])
            elif last_letter >= 0:
                if last_letter > newest:
                    break
                anchor = n
        if anchor < 0:
            return paths
        kept = [i for i in range(k) if anchor in paths[i]]
        if len(kept) == k or any(scores[i] > scores[best] - self.final_margin
                                 for i in range(k) if i not in kept):
            return paths
        for column in (self.bnode, self.bpb, self.bnb):
            column[:len(kept)] = column[kept]
        self.bpb[len(kept):k] = self.bnb[len(kept):k] = -math.inf
        self.st[ST_BEAM] = len(kept)
        return [paths[i] for i in kept]

    def _settled(self, paths: list[list[int]], separator: int, shared: int) -> bool:
        """Whether the word before the separator at ``paths[0][separator]`` (shared by
        every prefix in the beam) is final: the next word's first symbol is shared too,
        or no prefix's next word starts, or can still start, before that word's moved
        end (:func:`end_is_settled`)."""
        space, fs = self.decoder.vocab.space_id, self.decoder.frame_seconds
        path, last = paths[0], separator - 1  # the last symbol before it, if not committed
        if any(self.ni[n, TOKEN] != space for n in path[separator + 1:shared]):
            return True
        while last >= 0 and self.ni[path[last], TOKEN] == space:
            last -= 1
        if last < 0:
            return True
        frame = int(self.ni[path[last], FRAME])
        for p in paths:
            later = next((int(self.ni[n, FRAME]) for n in p[separator + 1:]
                          if self.ni[n, TOKEN] != space), self.seen)
            if not end_is_settled(frame, later, fs, self.decoder.times):
                return False
        return True

    def _words(self, nodes: list[int]) -> tuple[WordTiming, ...]:
        """The words of ``nodes`` (after the last final word), timed as the whole path
        times them: after the last final word's last symbol."""
        if self.context:
            nodes = [*self.context, self.committed, *nodes]
        tokens = [int(self.ni[n, TOKEN]) for n in nodes]
        frames = [int(self.ni[n, FRAME]) for n in nodes]
        conf = {t: float(np.exp(self.lp[t, c])) for t, c in zip(frames, tokens)}
        words = word_timings(self.decoder.vocab, tokens, frames, conf,
                             self.decoder.frame_seconds, self.decoder.times)
        return tuple(words[1:] if self.context else words)

    def finish(self):
        k = int(self.st[ST_BEAM])
        return self.decoder._finish(self.lp[:self.seen], self.ni, self.nf, self.bnode[:k],
                                    np.logaddexp(self.bpb[:k], self.bnb[:k]))[0]
