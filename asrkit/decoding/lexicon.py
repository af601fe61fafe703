"""Word-level resources of the beam search, as arrays the compiled search can walk.

* :class:`WordTrie` — the spellings of a word list as a character trie. It restricts
  the search to lexicon words, maps a finished word to its language-model id without
  string handling, and carries each node's best unigram score below it (LM look-ahead).
* :class:`HotwordAutomaton` — an Aho–Corasick automaton over boosted phrases, so a
  hypothesis gains a bonus for every character of a hotword it is spelling.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DecodingError, VocabularyError, where
from ..io import read_user_text
from ..text import WORD_SEPARATOR, Vocabulary


def read_lexicon(path: str | Path) -> list[str]:
    """Words of a word list (one per line) or a pronunciation lexicon (the word is
    the first field of each line, the spelling that follows is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DecodingError(f"{path}: lexicon file not found")
    words = []
    for n, line in enumerate(read_user_text(path, DecodingError).splitlines(), 1):
        fields = line.split()
        if fields:
            words.append(fields[0])
        elif line.strip():
            raise DecodingError(f"{where(path, n)}: cannot read a word here")
    if not words:
        raise DecodingError(f"{path}: the lexicon holds no words")
    return words


@dataclass(frozen=True)
class WordTrie:
    """Character trie of words; node 0 is the root (the empty word).

    Children of node ``n`` are ``child[start[n]:start[n + 1]]`` reached by the labels
    ``label[start[n]:start[n + 1]]`` (ascending). ``word[n]`` is the index in ``words``
    of the word ending at ``n``, or -1. ``mask[n]`` has bit ``c`` set when label ``c``
    (< 64) leads to a child, so a child is found by counting the bits below ``c``.
    """

    start: np.ndarray  # (nodes + 1,) int32
    label: np.ndarray  # (edges,) int32 vocabulary ids
    child: np.ndarray  # (edges,) int32
    word: np.ndarray  # (nodes,) int32
    mask: np.ndarray  # (nodes,) uint64
    words: tuple[str, ...]

    @classmethod
    def build(cls, words: Iterable[str], vocab: Vocabulary) -> "WordTrie":
        """Trie of the normalised ``words``; words with symbols outside ``vocab`` (or
        holding the word separator) are left out, since no hypothesis can spell them."""
        children: list[dict[int, int]] = [{}]
        ends: dict[int, int] = {}
        kept: list[str] = []
        for w in dict.fromkeys(vocab.normalize(w) for w in words):
            if not w or WORD_SEPARATOR in w:
                continue
            try:
                ids = vocab.encode(w)
            except VocabularyError:
                continue
            node = 0
            for i in ids:
                nxt = children[node].get(i)
                if nxt is None:
                    nxt = children[node][i] = len(children)
                    children.append({})
                node = nxt
            ends[node] = len(kept)
            kept.append(w)
        return cls._pack(children, ends, tuple(kept))

    @classmethod
    def _pack(cls, children, ends, words) -> "WordTrie":
        start = np.zeros(len(children) + 1, np.int32)
        start[1:] = np.cumsum([len(c) for c in children])
        label = np.array([k for c in children for k in sorted(c)], np.int32)
        child = np.array([c[k] for c in children for k in sorted(c)], np.int32)
        word = np.full(len(children), -1, np.int32)
        for node, w in ends.items():
            word[node] = w
        mask = np.array([sum(1 << k for k in c if k < 64) for c in children], np.uint64)
        return cls(start, label, child, word, mask, words)

    def __len__(self) -> int:
        return len(self.word)

    def smear(self, word_scores: Sequence[float]) -> np.ndarray:
        """``(nodes,)`` float64: the best score of any word at or below each node
        (``word_scores[i]`` belongs to ``words[i]``); 0 at the root."""
        best = np.full(len(self), -np.inf)
        for node in range(len(self) - 1, -1, -1):  # children always follow parents
            if self.word[node] >= 0:
                best[node] = max(best[node], word_scores[self.word[node]])
            kids = self.child[self.start[node]:self.start[node + 1]]
            if len(kids):
                best[node] = max(best[node], best[kids].max())
        best[0] = 0.0
        return best


@dataclass(frozen=True)
class HotwordAutomaton:
    """Aho–Corasick automaton over hotword spellings, as a full transition table.

    Each phrase is matched between word separators (``" CAT "`` does not fire inside
    ``"CATALOG"``); the text is taken to begin with a separator (``begin`` is the
    state after it). ``credit[s]`` is how many characters of an unfinished hotword
    state ``s`` has spelled; ``reward[s]`` the length of a hotword completed on
    entering ``s`` (its partial credit then moves to the finished total).
    """

    goto: np.ndarray  # (states, vocab) int32
    credit: np.ndarray  # (states,) int32
    reward: np.ndarray  # (states,) int32
    begin: int

    @classmethod
    def build(cls, phrases: Iterable[str], vocab: Vocabulary) -> "HotwordAutomaton":
        space = vocab.space_id
        patterns = []
        for phrase in phrases:
            try:
                ids = vocab.encode(phrase)
            except VocabularyError as e:
                raise DecodingError(f"hotword {phrase!r}: {e}") from None
            if not ids:
                raise DecodingError("a hotword is empty")
            patterns.append([space, *ids, space] if space is not None else ids)
        return cls._compile(patterns, len(vocab), space)

    @classmethod
    def _compile(cls, patterns, n_symbols, space):
        edges: list[dict[int, int]] = [{}]
        depth, reward = [0], [0]
        for p in patterns:
            node = 0
            for sym in p:
                if sym not in edges[node]:
                    edges[node][sym] = len(edges)
                    edges.append({})
                    depth.append(depth[node] + 1)
                    reward.append(0)
                node = edges[node][sym]
            reward[node] = len(p)
        goto = np.zeros((len(edges), n_symbols), np.int32)
        queue = deque()
        for sym, nxt in edges[0].items():
            goto[0, sym] = nxt
            queue.append((nxt, 0))  # (state, its failure state)
        while queue:  # breadth first, so a failure state's row is complete before use
            node, fail = queue.popleft()
            goto[node] = goto[fail]
            for sym, nxt in edges[node].items():
                goto[node, sym] = nxt
                queue.append((nxt, goto[fail, sym] if node else 0))
        credit = np.where(np.array(reward) > 0, 0, depth).astype(np.int32)
        begin = int(goto[0, space]) if space is not None else 0
        return cls(goto, credit, np.array(reward, np.int32), begin)
