"""What a synthetic corpus says: random word strings or the lines of a sentence file.

Built-in word sets follow the CMU AN4 domain (digits as words, spelled letters, a few
commands), so a model trained on them can be tried on real AN4 speech.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..text import normalize_text

WORD_SETS = ("digits", "letters", "commands")  # files asrkit/synth/words/<name>.txt
BUILTIN_SETS = ("mixed", *WORD_SETS)  # "mixed": AN4-like strings of all three
# Shapes of a "mixed" utterance and how often each is drawn.
MIXED_SHAPES = (("digits", 0.30), ("command", 0.20), ("command+digits", 0.15),
                ("letters", 0.25), ("command+letters", 0.10))


@dataclass(frozen=True)
class TextSource:
    """Where utterance texts come from.

    ``kind`` is a built-in set name (words drawn at random, ``min_words`` to
    ``max_words`` per utterance), ``"words"`` (a user word list, drawn the same way) or
    ``"sentences"`` (each line is one utterance; lines are used in turn, shuffled).
    ``digest`` fingerprints the content so a resumed corpus notices an edited file.
    """

    kind: str
    items: tuple[str, ...]  # words or sentences, as labels (upper case, no punctuation)
    min_words: int = 1
    max_words: int = 4
    digest: str = ""

    def texts(self, count: int, rng: np.random.Generator) -> list[str]:
        """``count`` utterance texts drawn with ``rng``."""
        if self.kind == "sentences":
            order = np.concatenate([rng.permutation(len(self.items))
                                    for _ in range(-(-count // len(self.items)))])
            return [self.items[i] for i in order[:count]]
        if self.kind == "mixed":
            sets = {name: builtin_words(name) for name in WORD_SETS}
            return [_mixed_text(sets, self.min_words, self.max_words, rng) for _ in range(count)]
        return [" ".join(_draw(self.items, rng.integers(self.min_words, self.max_words + 1), rng))
                for _ in range(count)]


def text_source(builtin: str = "mixed", words_file: str | os.PathLike | None = None,
                sentences_file: str | os.PathLike | None = None, min_words: int = 1,
                max_words: int = 4) -> TextSource:
    """A :class:`TextSource` from a word-list file, a sentence file, or a built-in set.

    Files hold one word (or sentence) per line; blank lines and lines starting with
    ``#`` are skipped. Raises :class:`ConfigError` for unknown sets, bad word counts,
    and unreadable or empty files.
    """
    if not 1 <= min_words <= max_words:
        raise ConfigError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    if words_file is not None and sentences_file is not None:
        raise ConfigError("give a word list or a sentence file, not both")
    for kind, path in (("words", words_file), ("sentences", sentences_file)):
        if path is not None:
            items = _read_lines(Path(path))
            return TextSource(kind, items, min_words, max_words, _digest(items))
    if builtin not in BUILTIN_SETS:
        raise ConfigError(f"unknown built-in text set {builtin!r}; choose one of "
                          f"{', '.join(BUILTIN_SETS)} or give a word list / sentence file")
    items = () if builtin == "mixed" else builtin_words(builtin)
    return TextSource(builtin, items, min_words, max_words, _digest((builtin, *items)))


def builtin_words(name: str) -> tuple[str, ...]:
    """The words of the built-in set ``name`` (one of :data:`WORD_SETS`)."""
    text = resources.files("asrkit.synth").joinpath("words", f"{name}.txt").read_text("utf-8")
    return tuple(w for w in (clean_label(line) for line in text.splitlines()) if w)


def clean_label(text: str) -> str:
    """Transcript form of a text: upper case, letters/digits/apostrophes only, single
    spaces ("Don't stop!" → "DON'T STOP"). Write numbers as words: "3" is kept as "3"."""
    return normalize_text(re.sub(r"[^\w' ]|_", " ", text))


def _read_lines(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the text file ({e}); give a UTF-8 text "
                          "file with one word or sentence per line") from e
    items = tuple(c for c in (clean_label(line) for line in lines
                              if not line.lstrip().startswith("#")) if c)
    if not items:
        raise ConfigError(f"{path}: holds no words; write one word or sentence per line")
    return items


def _mixed_text(sets: dict[str, tuple[str, ...]], min_words: int, max_words: int,
                rng: np.random.Generator) -> str:
    names, weights = zip(*MIXED_SHAPES)
    shape = names[rng.choice(len(names), p=np.array(weights) / sum(weights))]
    words: list[str] = []
    if shape.startswith("command"):
        words += _draw(sets["commands"], 1, rng)
    rest = shape.split("+")[-1]
    if rest in ("digits", "letters"):
        low = max(min_words - len(words), 1)
        high = max(max_words - len(words), low)
        words += _draw(sets[rest], rng.integers(low, high + 1), rng)
    return " ".join(words)


def _draw(items: tuple[str, ...], count: int, rng: np.random.Generator) -> list[str]:
    return [items[i] for i in rng.integers(0, len(items), size=int(count))]


def _digest(items) -> str:
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:16]
