"""Word n-gram estimation from text: interpolated modified Kneser–Ney in ARPA form.

The result is an :class:`~asrkit.lm.ngram.ArpaModel`, written with
:func:`~asrkit.lm.ngram.write_arpa` and scored by :class:`~asrkit.lm.ngram.NgramLM`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import DecodingError
from ..io import read_text_lines
from .ngram import BOS, EOS, UNK, ArpaModel


def read_sentences(path: str | Path, normalize=None) -> Iterator[list[str]]:
    """Words of each non-empty line of a text file (one sentence per line)."""
    path = Path(path)
    if not path.is_file():
        raise DecodingError(f"{path}: text file not found")
    for _, line in read_text_lines(path, DecodingError):  # bad bytes named by line
        words = (normalize(line) if normalize else line).split()
        if words:
            yield words


def estimate_kneser_ney(sentences: Iterable[list[str]], order: int) -> ArpaModel:
    """Interpolated modified Kneser–Ney (Chen & Goodman 1998) in ARPA backoff form.

    Lower orders use continuation counts (distinct left neighbours); each order has
    three discounts D1, D2, D3+ from its counts of counts. Unigrams are interpolated
    with the uniform distribution, so ``<unk>`` gets the leftover mass.
    """
    if order < 1:
        raise DecodingError(f"n-gram order must be at least 1, got {order}")
    counts = _count_ngrams(sentences, order)
    if not counts[0]:
        raise DecodingError("the training text holds no words")
    adjusted = _adjusted_counts(counts)
    discounts = [_discounts(a) for a in adjusted]
    vocab_size = len({g for g in adjusted[0] if g != (BOS,)} | {(UNK,)})
    probs: list[dict[tuple[str, ...], float]] = []  # interpolated p(w | h), linear
    gammas: list[dict[tuple[str, ...], float]] = []  # backoff mass of each context
    for k in range(order):
        lower = probs[k - 1] if k else None
        p, g = _interpolate(adjusted[k], discounts[k], lower, vocab_size)
        probs.append(p)
        gammas.append(g)
    return _to_arpa(probs, gammas, order)


def _count_ngrams(sentences, order):
    counts = [Counter() for _ in range(order)]
    for words in sentences:
        seq = (BOS, *words, EOS)
        for k in range(1, order + 1):
            # k-grams that would start before <s> do not exist; <s> only ever begins one
            counts[k - 1].update(seq[i:i + k] for i in range(len(seq) - k + 1))
    return counts


def _adjusted_counts(counts):
    """Raw counts for the top order and for n-grams starting with <s>; continuation
    counts (number of distinct left neighbours) for the rest."""
    adjusted = [None] * len(counts)
    adjusted[-1] = counts[-1]
    for k in range(len(counts) - 2, -1, -1):
        cont = Counter(g[1:] for g in counts[k + 1])
        adjusted[k] = Counter({g: (c if g[0] == BOS else cont[g]) for g, c in counts[k].items()})
    return adjusted


def _discounts(adjusted: Counter) -> tuple[float, float, float]:
    n = Counter(min(c, 5) for g, c in adjusted.items() if g != (BOS,))
    n1, n2, n3, n4 = (n[i] for i in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) > 0:
        y = n1 / (n1 + 2 * n2)
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        if all(0 < di <= i + 1 for i, di in enumerate(d)):
            return d
    return (0.5, 1.0, 1.5)  # too little data for count-of-count estimates (lmplz's fallback)


def _interpolate(adjusted, discount, lower, vocab_size):
    by_context = defaultdict(list)
    for g, a in adjusted.items():
        if g != (BOS,):
            by_context[g[:-1]].append((g, a))
    probs, gammas = {}, {}
    for h, grams in by_context.items():
        total = sum(a for _, a in grams)
        cut = sum(discount[min(a, 3) - 1] for _, a in grams)
        gamma = cut / total
        gammas[h] = gamma
        for g, a in grams:
            back = lower[g[1:]] if lower is not None else 1.0 / vocab_size
            probs[g] = (a - discount[min(a, 3) - 1]) / total + gamma * back
    if lower is None and (UNK,) not in probs:
        probs[(UNK,)] = gammas[()] / vocab_size
    return probs, gammas


def _to_arpa(probs, gammas, order) -> ArpaModel:
    tables = []
    for k in range(order):
        table = {}
        for g, p in probs[k].items():
            bow = gammas[k + 1].get(g) if k + 1 < order else None
            table[g] = (math.log10(p), math.log10(bow) if bow else 0.0)
        if k == 0:  # <s> is a context only; ARPA marks that with -99
            bow = gammas[1].get((BOS,)) if order > 1 else None
            table[(BOS,)] = (-99.0, math.log10(bow) if bow else 0.0)
        tables.append(table)
    return ArpaModel(tuple(tables))
