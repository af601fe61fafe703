"""Text normalisation and the character vocabulary (CTC blank at index 0)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from .errors import VocabularyError

BLANK = 0  # CTC blank index in every asrkit model
BLANK_SYMBOL = "<blank>"
WORD_SEPARATOR = " "

CasePolicy = Literal["upper", "lower", "keep"]


def normalize_text(text: str, case: CasePolicy = "upper") -> str:
    """Unicode NFC, the case policy applied, runs of white space folded to one space."""
    text = unicodedata.normalize("NFC", text)
    if case == "upper":
        text = text.upper()
    elif case == "lower":
        text = text.lower()
    # Case mapping can decompose ("ΐ".upper() is three code points), so compose again:
    # otherwise one visible text would encode two ways, and this would not be idempotent.
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass(frozen=True)
class Vocabulary:
    """Output symbols of a CTC model. Index 0 is the blank; ``symbols[i]`` is index i+1."""

    symbols: tuple[str, ...]
    case: CasePolicy = "upper"

    def __post_init__(self):
        if len(set(self.symbols)) != len(self.symbols):
            raise VocabularyError("vocabulary symbols must be unique")
        if BLANK_SYMBOL in self.symbols:
            raise VocabularyError(f"{BLANK_SYMBOL} is reserved for the CTC blank")
        object.__setattr__(self, "_index", {s: i + 1 for i, s in enumerate(self.symbols)})

    @classmethod
    def from_texts(cls, texts: Iterable[str], case: CasePolicy = "upper") -> "Vocabulary":
        """All characters of the normalised ``texts``, sorted by code point."""
        chars = set()
        for t in texts:
            chars.update(normalize_text(t, case))
        return cls(tuple(sorted(chars)), case)

    def __len__(self) -> int:
        """Number of model outputs, blank included."""
        return len(self.symbols) + 1

    def normalize(self, text: str) -> str:
        return normalize_text(text, self.case)

    def unknown(self, text: str) -> set[str]:
        """Characters of the normalised ``text`` the vocabulary lacks."""
        return {c for c in self.normalize(text) if c not in self._index}

    def encode(self, text: str) -> list[int]:
        """Normalised text → label ids (no blanks). Raises on unknown characters."""
        norm = self.normalize(text)
        try:
            return [self._index[c] for c in norm]
        except KeyError:
            bad = "".join(sorted(self.unknown(text)))
            raise VocabularyError(f"characters {bad!r} are not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Label ids → text; blanks are skipped (no repeat collapsing here)."""
        return "".join(self.symbols[i - 1] for i in ids if i != BLANK)

    @property
    def space_id(self) -> int | None:
        return self._index.get(WORD_SEPARATOR)

    def labels(self) -> list[str]:
        """Symbol of every output index, blank first (for external decoders)."""
        return [BLANK_SYMBOL, *self.symbols]

    def to_dict(self) -> dict:
        return {"symbols": list(self.symbols), "case": self.case}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        return cls(tuple(d["symbols"]), d.get("case", "upper"))


def ctc_min_frames(labels: Sequence[int]) -> int:
    """Fewest output frames CTC needs for ``labels``: one per label plus a blank
    between each pair of equal neighbours."""
    repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    return len(labels) + repeats
