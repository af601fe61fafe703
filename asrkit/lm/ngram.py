"""Word n-gram language models: ARPA reading and writing, scoring (estimation from
text is :mod:`asrkit.lm.estimate`).

:class:`NgramLM` compiles an ARPA model into flat arrays (an open-addressing hash
table from ``(context entry, word)`` to n-gram entry, with backoff weights and suffix
links) so the compiled beam search can query it without leaving native code.
:class:`KenLMModel` wraps a KenLM binary when the optional ``kenlm`` package is
installed. Both score in natural log (ARPA files hold log10) and expose the same
small interface: ``begin_state()``, ``score(state, word)``, ``end_score(state)``.
"""

from __future__ import annotations

import gzip
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from ..jit import njit

from ..errors import DecodingError, where
from ..io import atomic_open

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LN10 = math.log(10.0)
LOG10_NEVER = -99.0  # what SRILM writes for an impossible n-gram (e.g. <s> as a word)
MISSING_UNK_LOG10 = -100.0  # KenLM's probability for <unk> when an ARPA file lacks it
KENLM_MAGIC = b"mmap lm "


@dataclass(frozen=True)
class ArpaModel:
    """A backoff n-gram model as an ARPA file holds it.

    ``ngrams[k - 1]`` maps each k-gram (tuple of words) to ``(log10 prob, log10 backoff)``.
    """

    ngrams: tuple[dict[tuple[str, ...], tuple[float, float]], ...]

    @property
    def order(self) -> int:
        return len(self.ngrams)


# ---------------------------------------------------------------- ARPA files

def read_arpa(path: str | Path) -> ArpaModel:
    """Parse an ARPA file (optionally gzipped). Malformed lines raise DecodingError
    naming ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise DecodingError(f"{path}: language model file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="strict") as f:
        try:
            return _parse_arpa(_checked_lines(f, path), path)
        except UnicodeDecodeError as e:
            raise DecodingError(f"{path}: not a UTF-8 ARPA file ({e.reason})") from None
        except (OSError, EOFError) as e:  # e.g. a damaged or truncated .gz
            raise DecodingError(f"{path}: cannot read the ARPA file ({e})") from None


def _checked_lines(f, path: Path) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(f, 1):
        if "\0" in line:  # a damaged file, not a word with a NUL in it
            raise DecodingError(f"{where(path, n)}: holds a NUL byte; is this an ARPA file?")
        yield n, line


def _parse_arpa(lines: Iterator[tuple[int, str]], path: Path) -> ArpaModel:
    def bad(n, what):
        return DecodingError(f"{where(path, n)}: {what}; is this a valid ARPA language model?")

    n, line = _next_content(lines)
    if line != "\\data\\":
        raise bad(n, f"expected '\\data\\' header, found {line[:40]!r}")
    counts: list[int] = []
    n, line = _next_content(lines)
    while line.startswith("ngram "):
        k, _, c = line[6:].partition("=")
        if not (k.strip().isdigit() and c.strip().isdigit()) or int(k) != len(counts) + 1:
            raise bad(n, f"bad count line {line!r}")
        counts.append(int(c))
        n, line = _next_content(lines)
    if not counts:
        raise bad(n, "no 'ngram N=count' lines")
    ngrams = []
    for k, count in enumerate(counts, 1):
        if line != f"\\{k}-grams:":
            raise bad(n, f"expected '\\{k}-grams:', found {line[:40]!r}")
        table: dict[tuple[str, ...], tuple[float, float]] = {}
        n, line = _next_content(lines)
        while not line.startswith("\\"):
            if n is None:
                raise DecodingError(f"{path}: the file ends inside the {k}-grams section "
                                    "(no '\\end\\'); is it truncated?")
            gram, value = _parse_ngram_line(line, k, k < len(counts), lambda w: bad(n, w))
            if k > 1 and not all((w,) in ngrams[0] for w in gram):
                raise bad(n, f"{' '.join(gram)!r} uses a word that has no unigram")
            table[gram] = value
            n, line = _next_content(lines)
        if len(table) != count:
            raise bad(n, f"the header promises {count} {k}-grams, the section holds {len(table)}")
        ngrams.append(table)
    if line != "\\end\\":
        raise bad(n, f"expected '\\end\\', found {line[:40]!r}")
    return ArpaModel(tuple(ngrams))


def _next_content(lines) -> tuple[int, str]:
    for n, line in lines:
        line = line.strip()
        if line:
            return n, line
    return None, "<end of file>"


def _parse_ngram_line(line: str, k: int, has_backoff: bool, bad):
    fields = line.split()
    if len(fields) not in (k + 1, k + 2) or (len(fields) == k + 2 and not has_backoff):
        raise bad(f"a {k}-gram line needs a log10 probability, {k} words"
                  f"{' and an optional backoff' if has_backoff else ''}")
    try:
        prob = float(fields[0])
        bow = float(fields[k + 1]) if len(fields) == k + 2 else 0.0
    except ValueError:
        raise bad(f"not a number in {line[:60]!r}") from None
    if math.isnan(prob) or prob > 0:
        raise bad(f"log10 probability must be a number <= 0, got {fields[0]}")
    if not math.isfinite(bow):
        raise bad(f"backoff weight must be a finite log10 number, got {fields[k + 1]}")
    # -inf ("never"), which some tools write for <s>, is read as the -99 SRILM writes
    # for it: the same ranking, and decoder scores stay finite (0 * -inf is NaN).
    return tuple(fields[1:k + 1]), (max(prob, LOG10_NEVER), bow)


def write_arpa(path: str | Path, model: ArpaModel) -> None:
    """Write ``model`` as an ARPA file, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for k, table in enumerate(model.ngrams, 1):
            f.write(f"ngram {k}={len(table)}\n")
        for k, table in enumerate(model.ngrams, 1):
            f.write(f"\n\\{k}-grams:\n")
            last = k == model.order
            for gram in sorted(table):
                prob, bow = table[gram]
                words = " ".join(gram)
                f.write(f"{prob:.7f}\t{words}\n" if last else f"{prob:.7f}\t{words}\t{bow:.7f}\n")
        f.write("\n\\end\\\n")


# --------------------------------------------------------- compiled scoring

@njit(cache=True, nogil=True)
def _mix(key):
    """64-bit finaliser (splitmix64) so sequential keys spread over the table."""
    h = np.uint64(key)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@njit(cache=True, nogil=True)
def hash_find(keys, vals, key):
    """Value stored for ``key`` in an open-addressing table (keys -1 = empty), or -1."""
    mask = np.uint64(keys.shape[0] - 1)
    i = _mix(key) & mask
    while True:
        k = keys[i]
        if k == key:
            return vals[i]
        if k == -1:
            return -1
        i = (i + np.uint64(1)) & mask


@njit(cache=True, nogil=True)
def hash_insert(keys, vals, key, value):
    mask = np.uint64(keys.shape[0] - 1)
    i = _mix(key) & mask
    while keys[i] != -1 and keys[i] != key:
        i = (i + np.uint64(1)) & mask
    keys[i] = key
    vals[i] = value


@njit(cache=True)
def _build_table(keys_in, capacity):
    keys = np.full(capacity, -1, np.int64)
    vals = np.full(capacity, -1, np.int32)
    for e in range(keys_in.shape[0]):
        if keys_in[e] >= 0:
            hash_insert(keys, vals, keys_in[e], e)
    return keys, vals


@njit(cache=True, nogil=True)
def lm_score(lm, state, word):
    """Natural-log p(word | state) with backoff, and the state after ``word``.

    ``lm`` is :attr:`NgramLM.arrays`; a state is an entry id (0 = empty context);
    ``word`` is a word id (the <unk> id for out-of-vocabulary words).
    """
    keys, vals, prob, bow, suffix, state_of, n_words = lm
    s = state
    total = 0.0
    while True:
        e = hash_find(keys, vals, np.int64(s) * n_words + word)
        if e >= 0 and not math.isnan(prob[e]):
            return total + prob[e], state_of[e]
        if s == 0:
            raise IndexError("word id outside the language model")
        total += bow[s]
        s = suffix[s]


class NgramLM:
    """An ARPA model compiled to arrays for :func:`lm_score` (any order, with backoff).

    Words are looked up as written in the ARPA file; unknown words score as ``<unk>``.
    """

    def __init__(self, model: ArpaModel):
        words = [g[0] for g in model.ngrams[0]]
        if (UNK,) not in model.ngrams[0]:
            words.append(UNK)
        self.order = model.order
        self.word_ids = {w: i for i, w in enumerate(words)}
        self.words = tuple(words)
        self.unk_id = self.word_ids[UNK]
        entries = self._entries(model)
        self.arrays = self._compile(entries)
        bos = self.word_ids.get(BOS)
        self._bos_state = int(entries[0][(bos,)]) if bos is not None else 0
        self._eos = self.word_ids.get(EOS, self.unk_id)

    @classmethod
    def from_arpa(cls, path: str | Path) -> "NgramLM":
        return cls(read_arpa(path))

    def _entries(self, model):
        """Entry ids of every n-gram and context (id 0 is the empty context), with
        (prob, backoff) in natural log; contexts missing from the file get no prob."""
        ids: dict[tuple[int, ...], int] = {(): 0}
        values = [(math.nan, 0.0)]
        for k, grams in enumerate(model.ngrams, 1):
            coded = {tuple(self.word_ids[w] for w in g): v for g, v in grams.items()}
            if k == 1 and (UNK,) not in grams:
                coded[(self.unk_id,)] = (MISSING_UNK_LOG10, 0.0)
            for g, (p, b) in coded.items():
                for j in range(1, k):  # a context missing from the file: add it, no prob
                    if g[:j] not in ids:
                        ids[g[:j]] = len(values)
                        values.append((math.nan, 0.0))
                if g in ids:
                    values[ids[g]] = (p * LN10, b * LN10)
                else:
                    ids[g] = len(values)
                    values.append((p * LN10, b * LN10))
        return ids, values

    def _compile(self, entries):
        ids, values = entries
        n = len(values)
        keys = np.full(n, -1, np.int64)
        suffix = np.zeros(n, np.int32)
        state_of = np.zeros(n, np.int32)
        n_words = len(self.words)
        for g, e in ids.items():
            if not g:
                continue
            keys[e] = ids[g[:-1]] * n_words + g[-1]
            s = 0
            for j in range(1, len(g)):  # longest proper suffix present in the model
                if g[j:] in ids:
                    s = ids[g[j:]]
                    break
            suffix[e] = s
            state_of[e] = s if len(g) >= self.order else e
        capacity = 1 << max(4, int(2 * n - 1).bit_length())
        tkeys, tvals = _build_table(keys, capacity)
        prob = np.array([v[0] for v in values], np.float64)
        bow = np.array([v[1] for v in values], np.float64)
        return (tkeys, tvals, prob, bow, suffix, state_of, np.int64(n_words))

    def word_id(self, word: str) -> int:
        return self.word_ids.get(word, self.unk_id)

    def begin_state(self) -> int:
        return self._bos_state

    def score(self, state: int, word: str) -> tuple[float, int]:
        """Natural-log p(word | state) and the next state."""
        p, s = lm_score(self.arrays, state, self.word_id(word))
        return float(p), int(s)

    def end_score(self, state: int) -> float:
        return float(lm_score(self.arrays, state, self._eos)[0])

    def unigram(self, word: str) -> float:
        return float(lm_score(self.arrays, 0, self.word_id(word))[0])

    def sentence_log10(self, words: list[str], bos: bool = True, eos: bool = True) -> float:
        """Total log10 probability of a sentence, as ``kenlm.Model.score`` reports it."""
        state = self.begin_state() if bos else 0
        total = 0.0
        for w in words:
            p, state = self.score(state, w)
            total += p
        if eos:
            total += self.end_score(state)
        return total / LN10


class KenLMModel:
    """A KenLM model (binary or ARPA) through the optional ``kenlm`` package.

    States are small integers standing for ``kenlm.State`` objects, so the compiled
    decoder can carry them; scores are natural log.
    """

    def __init__(self, path: str | Path):
        try:
            import kenlm  # noqa: PLC0415 (optional dependency)
        except ImportError:
            raise DecodingError(f"{path}: a KenLM binary model needs the kenlm package "
                                "(pip install kenlm), or pass an ARPA file") from None
        self._kenlm = kenlm
        try:
            self.model = kenlm.Model(str(path))
        except (OSError, RuntimeError) as e:
            raise DecodingError(f"{path}: KenLM could not load it ({e})") from None
        self.order = self.model.order
        self._states: list = []
        self._state_ids: dict = {}
        self._lock = threading.Lock()  # decoder threads intern states concurrently
        begin = kenlm.State()
        self.model.BeginSentenceWrite(begin)
        self._bos_state = self._intern(begin)
        null = kenlm.State()
        self.model.NullContextWrite(null)
        self._null_state = self._intern(null)

    def _intern(self, state) -> int:
        with self._lock:
            sid = self._state_ids.get(state)
            if sid is None:
                sid = self._state_ids[state] = len(self._states)
                self._states.append(state)
            return sid

    def begin_state(self) -> int:
        return self._bos_state

    def score(self, state: int, word: str) -> tuple[float, int]:
        out = self._kenlm.State()
        p = self.model.BaseScore(self._states[state], word, out)
        return p * LN10, self._intern(out)

    def end_score(self, state: int) -> float:
        return self.score(state, EOS)[0]

    def unigram(self, word: str) -> float:
        return self.score(self._null_state, word)[0]

    def knows(self, word: str) -> bool:
        """Whether ``word`` is in the model's vocabulary (else it is scored as <unk>)."""
        return word in self.model


def load_lm(path: str | Path) -> NgramLM | KenLMModel:
    """An ARPA file (``.arpa`` or ``.arpa.gz``) as :class:`NgramLM`; a KenLM binary as
    :class:`KenLMModel` (needs the ``kenlm`` package)."""
    path = Path(path)
    if not path.is_file():
        raise DecodingError(f"{path}: language model file not found")
    with open(path, "rb") as f:
        head = f.read(len(KENLM_MAGIC))
    if head == KENLM_MAGIC:
        return KenLMModel(path)
    return NgramLM.from_arpa(path)
