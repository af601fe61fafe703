"""CTC prefix beam search (Hannun et al. 2014) with word n-gram LM fusion.

Each beam entry is a label prefix with two log-probabilities: of all alignments of
the frames so far that yield the prefix and end in a blank (``pb``) or in its last
label (``pnb``). Its score adds ``alpha * LM + beta * words + hotword bonus``, and
without a lexicon ``alpha * unk_offset`` per word the LM does not know.

:class:`BeamSearchDecoder` checks its options, turns the LM, lexicon and hotwords
into arrays and runs the compiled search of :mod:`asrkit.decoding.beam_kernel` on them.
Decoding-config files are :mod:`asrkit.decoding.config`; tuning ``alpha`` and ``beta``
on a dev set is :mod:`asrkit.lm.tuning`.
"""

from __future__ import annotations

import copy
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DecodingError
from ..lm.ngram import BOS, EOS, UNK, NgramLM, load_lm, lm_score
from ..text import Vocabulary
from .base import (WORD_TIMES, Decoder, Hypothesis, WordTimes, check_log_probs,
                   make_hypothesis)
from .config import BEAM_THRESHOLD, TOKEN_MIN_LOGP, UNK_OFFSET
from .config import check_options as _check_options
from .beam_kernel import (BONUS, FRAME, HOT, HOTDONE, INT_COLUMNS, LM_ARRAYS, LM_EXTERNAL,
                          LM_NONE, LMSTATE, NEED_LM, NEEDS_LM, NEG_INF, OUT_OF_LEXICON, PARENT,
                          SEPBONUS, ST_BEAM, ST_MISSES, TOKEN, TRIE_LEXICON, TRIE_LM_WORDS,
                          TRIE_NONE, WNODE, WSSCORE, WSSTATE, WSVALID, KernelHotwords,
                          KernelTrie, SearchParams, beam_search, close_word, hot_step)
from .lexicon import HotwordAutomaton, WordTrie, read_lexicon


class BeamSearchDecoder(Decoder):
    """CTC prefix beam search, optionally with a word n-gram LM, a lexicon and hotwords.

    Args:
        beam_size: prefixes kept per frame.
        lm: an ARPA file (``.arpa``/``.arpa.gz``), a KenLM binary (needs ``kenlm``), or a
            loaded :class:`~asrkit.lm.ngram.NgramLM`/:class:`~asrkit.lm.ngram.KenLMModel`.
        alpha: LM weight (natural-log LM scores are added times ``alpha``); LM only.
        beta: bonus per finished word, against the LM's bias to short outputs; LM only.
        lexicon: a word-list/lexicon file or an iterable of words: outputs only hold these.
        hotwords: phrases to favour; each spelled character earns ``hotword_weight``.
        nbest: hypotheses returned per utterance (distinct texts, best first).
        beam_size_token: labels tried per frame (the most likely ones); None = all.
        beam_threshold: prefixes scoring this far below the best are dropped
            (``math.inf``: none).
        token_min_logp: labels less likely than this log-probability at a frame are not
            tried there, except the frame's most likely label (``-math.inf``: all tried).
            None: -5 without a lexicon, -inf with one (a lexicon already limits the labels
            tried, and a floor would drop letters its words need, e.g. a doubled one).
        unk_offset: natural-log LM score (weighted by ``alpha``) added once per word the
            LM does not know, without a lexicon: from the letter where the spelling
            leaves every LM word, or at the end of a non-word (0: none). With a KenLM
            binary (whose word list cannot be read, so no spelling look-ahead): when a
            word the LM does not know is finished.
        num_workers: threads over the utterances of a batch (default: CPU count).
    """

    def __init__(self, vocab: Vocabulary, frame_seconds: float, beam_size: int = 50,
                 lm=None, alpha: float = 0.5, beta: float = 1.0,
                 lexicon: str | Path | Iterable[str] | None = None,
                 hotwords: Iterable[str] | None = None, hotword_weight: float = 3.0,
                 nbest: int = 1, beam_size_token: int | None = None,
                 beam_threshold: float = BEAM_THRESHOLD, token_min_logp: float | None = None,
                 unk_offset: float = UNK_OFFSET, num_workers: int | None = None,
                 times: WordTimes = WORD_TIMES):
        super().__init__(vocab, frame_seconds, times)
        _check_options(beam_size, nbest, alpha, beta, hotword_weight, beam_threshold,
                       beam_size_token, token_min_logp, unk_offset)
        self.beam_size, self.nbest = int(beam_size), int(nbest)
        self.lm = load_lm(lm) if isinstance(lm, (str, Path)) else lm
        self.alpha, self.beta = (float(alpha), float(beta)) if self.lm is not None else (0.0, 0.0)
        self.unk_offset = float(unk_offset) if self.lm is not None else 0.0
        self.num_workers = num_workers or min(os.cpu_count() or 1, 8)
        words = (read_lexicon(lexicon) if isinstance(lexicon, (str, Path)) else lexicon)
        self._setup_words(list(words) if words is not None else None)
        self._setup_hotwords(list(hotwords or ()), float(hotword_weight))
        tok = len(vocab) - 1 if beam_size_token is None else int(beam_size_token)
        space = vocab.space_id
        self._params = SearchParams(
            beam=self.beam_size, tokens=tok, space=-1 if space is None else int(space),
            lm_mode=self._lm_mode, trie_mode=self._trie_mode,
            use_hot=int(self._hot is not None), vocab=len(vocab), unk=int(self._unk),
            alpha=self.alpha, beta=self.beta, hot_weight=self._hot_weight,
            threshold=float(beam_threshold), unk_smear=self._unk_smear, slack=0.0,
            min_logp=float(_floor(token_min_logp, lexicon)), unk_offset=self.unk_offset)
        self._params = self._params._replace(slack=self._slack())

    def _setup_words(self, lexicon: list[str] | None) -> None:
        lm = self.lm
        self._lm_mode = (LM_NONE if lm is None else LM_ARRAYS if isinstance(lm, NgramLM)
                         else LM_EXTERNAL)
        self._unk, self._unk_smear = 0, 0.0
        if lexicon is not None:
            trie, self._trie_mode = WordTrie.build(lexicon, self.vocab), TRIE_LEXICON
            if not trie.words:
                raise DecodingError("no lexicon word can be spelled with the model's symbols")
        elif self._lm_mode == LM_ARRAYS:  # LM words: a finished word's id without strings
            trie, self._trie_mode = WordTrie.build(
                (w for w in lm.words if w not in (BOS, EOS, UNK)), self.vocab), TRIE_LM_WORDS
        else:
            trie, self._trie_mode = WordTrie.build((), self.vocab), TRIE_NONE
        word = trie.word.copy()
        scores = np.zeros(len(trie.words))
        if self._lm_mode == LM_ARRAYS:
            ids = _normalized_ids(lm, self.vocab)
            lm_ids = np.array([ids.get(w, lm.unk_id) for w in trie.words], np.int32)
            word[word >= 0] = lm_ids[word[word >= 0]]
            scores = np.array([lm_score(lm.arrays, 0, i)[0] for i in lm_ids])
            self._unk, self._unk_smear = lm.unk_id, float(lm_score(lm.arrays, 0, lm.unk_id)[0])
        elif self._lm_mode == LM_EXTERNAL:
            scores = np.array([lm.unigram(w) for w in trie.words])
        smear = trie.smear(scores) if self._lm_mode != LM_NONE else np.zeros(len(trie))
        self.trie = trie
        self._trie = KernelTrie(trie.start, trie.label, trie.child, word,
                                smear.astype(np.float64), trie.mask)
        self._lm_arrays = lm.arrays if self._lm_mode == LM_ARRAYS else _NO_LM

    def reweighted(self, alpha: float, beta: float, unk_offset: float | None = None,
                   ) -> "BeamSearchDecoder":
        """The same decoder (sharing LM, lexicon, hotwords) with other LM weights (and
        unknown-word offset, if given)."""
        unk = self.unk_offset if unk_offset is None else float(unk_offset)
        _check_options(self.beam_size, self.nbest, alpha, beta, self._hot_weight, 1.0, None,
                       -math.inf, unk)
        other = copy.copy(self)
        other.alpha, other.beta = float(alpha), float(beta)
        other.unk_offset = unk if self.lm is not None else 0.0
        other._params = self._params._replace(alpha=other.alpha, beta=other.beta,
                                              unk_offset=other.unk_offset)
        other._params = other._params._replace(slack=other._slack())
        return other

    def _slack(self) -> float:
        """Upper bound of the bonus a non-separator label can add to a prefix: one
        more hotword character, or a look-ahead score rising along the trie (or on
        leaving it: ``<unk>``'s score plus the unknown-word offset)."""
        gain = max(self._hot_weight, 0.0)
        if self._lm_mode != LM_NONE:
            smear = self._trie.smear
            parents = np.repeat(np.arange(len(self.trie)), np.diff(self.trie.start))
            inner = parents > 0  # from the root the look-ahead starts at 0: never a gain
            rise = smear[self.trie.child[inner]] - smear[parents[inner]]
            if self._trie_mode == TRIE_LM_WORDS and len(smear) > 1:  # leaving the trie
                rise = np.append(rise, self._unk_smear + self.unk_offset - smear[1:].min())
            gain += self.alpha * max(0.0, float(rise.max(initial=0.0)))
        return gain

    def _setup_hotwords(self, hotwords: list[str], weight: float) -> None:
        self._hot = HotwordAutomaton.build(hotwords, self.vocab) if hotwords else None
        self._hot_weight = weight if hotwords else 0.0
        h = self._hot or HotwordAutomaton(np.zeros((1, len(self.vocab)), np.int32),
                                          np.zeros(1, np.int32), np.zeros(1, np.int32), 0)
        self._hot_arrays = KernelHotwords(h.goto, h.credit, h.reward)
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

    def stream(self, final_after: float | None = None):
        """A search that takes the frames of one utterance a few at a time (see
        :meth:`Decoder.stream` and :mod:`asrkit.decoding.beam_stream`)."""
        from .beam_stream import BeamStream  # noqa: PLC0415
        return BeamStream(self, final_after)

    def _decode_one(self, lp: np.ndarray) -> list[Hypothesis]:
        """``lp (frames, vocab)`` float32 → n-best list."""
        B = self.beam_size
        cap = 1 + lp.shape[0] * B  # each frame makes at most B new prefixes
        ni = np.zeros((cap, INT_COLUMNS), np.int32)
        nf = np.zeros((cap, 5), np.float64)
        nf[0, SEPBONUS] = math.nan
        ni[0, PARENT], ni[0, FRAME], ni[0, HOT] = -1, -1, self._hot_begin
        ni[0, WNODE] = 0 if self._trie_mode else -1
        ni[0, LMSTATE] = self.lm.begin_state() if self.lm is not None else 0
        nf[0, BONUS] = self._hot_weight * self._hot_arrays.credit[self._hot_begin]
        hcap = 1 << int(2 * cap).bit_length()
        hk, hv = np.full(hcap, -1, np.int64), np.full(hcap, -1, np.int32)
        bnode = np.zeros(B, np.int32)
        bpb, bnb = np.full(B, NEG_INF), np.full(B, NEG_INF)
        bpb[0] = 0.0
        st = np.array([0, 1, 1, 0], np.int64)  # ST_FRAME, ST_NODES, ST_BEAM, ST_MISSES
        miss = np.zeros(B, np.int32)
        while beam_search(lp, self._params, self._lm_arrays, self._trie, self._hot_arrays,
                          ni, nf, hk, hv, bnode, bpb, bnb, st, miss) == NEED_LM:
            for n in miss[:st[ST_MISSES]]:
                self._score_last_word(ni, nf, n)
        k = int(st[ST_BEAM])
        return self._finish(lp, ni, nf, bnode[:k], np.logaddexp(bpb[:k], bnb[:k]))

    def _score_last_word(self, ni, nf, n) -> None:
        """Ask the external LM for node ``n``'s finished word; cache it on the node,
        with whether the LM knows the word (for ``unk_offset``)."""
        word = self._last_word(ni, n)
        p, s = self.lm.score(int(ni[n, LMSTATE]), word)
        nf[n, WSSCORE], ni[n, WSSTATE], ni[n, WSVALID] = p, s, 1 if self.lm.knows(word) else 2

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
                    lm_total, words, unknown, hot = closed
                    lm_part = self.alpha * (lm_total + self.unk_offset * unknown)
                    score = a + lm_part + self.beta * words + self._hot_weight * hot
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
                                  score=score, am_score=a, lm_score=lm_total,
                                  times=self.times, n_frames=lp.shape[0])
            if hyp.text not in seen:
                seen.add(hyp.text)
                out.append(hyp)
                if len(out) == self.nbest:
                    break
        return out

    def _close(self, ni, nf, n, strict: bool = True):
        """(LM score, words, unknown words, hotword total) of prefix ``n`` once its last
        word and the sentence end; None when ``strict`` and the lexicon lacks its last word."""
        status, state, lm_total, words, unknown = close_word(
            n, ni, nf, self._params, self._lm_arrays, self._trie, strict)
        if status == NEEDS_LM:
            self._score_last_word(ni, nf, n)
            status, state, lm_total, words, unknown = close_word(
                n, ni, nf, self._params, self._lm_arrays, self._trie, strict)
        if status == OUT_OF_LEXICON:
            return None
        if self.lm is not None:
            lm_total += self.lm.end_score(int(state))
        hot = float(nf[n, HOTDONE])
        if self._params.space >= 0:  # the utterance ends as if a separator followed
            hot = hot_step(ni[n, HOT], hot, self._params.space, self._params,
                           self._hot_arrays)[1]
        return lm_total, int(words), int(unknown), float(hot)


def _floor(token_min_logp: float | None, lexicon) -> float:
    """The label floor asked for, or the default: none with a lexicon."""
    if token_min_logp is not None:
        return token_min_logp
    return -math.inf if lexicon is not None else TOKEN_MIN_LOGP


_NO_LM = (np.full(16, -1, np.int64), np.full(16, -1, np.int32), np.zeros(1), np.zeros(1),
          np.zeros(1, np.int32), np.zeros(1, np.int32), np.int64(1))


def _normalized_ids(lm: NgramLM, vocab: Vocabulary) -> dict[str, int]:
    """LM word ids by the word as the model's vocabulary spells it (its case policy)."""
    ids: dict[str, int] = {}
    for w, i in lm.word_ids.items():
        ids.setdefault(vocab.normalize(w), i)
    return ids
