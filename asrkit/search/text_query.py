"""Search by typed word: where in an indexed archive a word or phrase, given as text, is said.

Two ways, and their fusion:

- ``kws``: keyword spotting on an acoustic model's CTC posteriors of the archive
  (:mod:`asrkit.search.keywords`; posteriors kept beside the index, see
  :mod:`asrkit.search.posteriors`). Needs a recogniser that writes the word's letters:
  the one the index was built with (``index build --asr-model`` or an ``asr`` embedder),
  or one given at search time.
- ``synth``: the text said by several installed speech synthesisers' voices, each
  recording a spoken example; their embeddings are averaged into one query and searched
  like any spoken example (:func:`asrkit.search.query.search` with ``fuse``). Needs no
  recogniser, only a synthesiser that speaks the language.
- ``fused``: both lists merged: a region found by both (overlapping, same recording)
  scores the mean of its two scores (kws posterior, cosine similarity); a region only
  one list found gets 0 from the other. Merging by reciprocal rank instead was worse
  on both benchmark archives: it lets the weaker list pull the stronger one's ranks.

``auto`` is ``kws`` when an acoustic model is known, else ``synth``: on real speech
(AN4 test, a recogniser trained on AN4) kws found the words best, ahead of the fusion
(``bench/text_search.py``; figures in the README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Literal, Sequence

import numpy as np

from ..errors import ConfigError, VocabularyError
from ..text import WORD_SEPARATOR
from .index import SearchIndex
from .query import Hit, Query, search as search_examples

TextMethod = Literal["auto", "kws", "synth", "fused"]
TEXT_METHODS = ("auto", "kws", "synth", "fused")
# Synthesised examples: the distinct recorded voices first, then a few formant ones.
DEFAULT_VOICES = ("flite:slt", "flite:rms", "flite:awb", "flite:kal16",
                  "festival:kal_diphone", "espeak-ng:en-us", "espeak-ng:en-us+f3",
                  "espeak-ng:en-gb+m3")
FUSE_DEPTH = 5  # each list of a fusion is fetched this many times deeper than `top`


@dataclass(frozen=True)
class TextQueryConfig:
    method: TextMethod = "auto"
    asr_model: str | None = None  # for kws: None = the index's own acoustic model
    voices: tuple[str, ...] | None = None  # for synth: voice id globs; None = DEFAULT_VOICES
    whole_words: bool = True  # kws: charge matches heard inside a longer word

    def __post_init__(self):
        if self.method not in TEXT_METHODS:
            raise ConfigError(f"unknown typed-search method {self.method!r}; expected one "
                              f"of {', '.join(TEXT_METHODS)}")


class TextSearcher:
    """Typed-word search over one open index; posteriors and voices are prepared once,
    on first use, so many terms cost one pass of the acoustic model at most."""

    def __init__(self, index: SearchIndex, config: TextQueryConfig = TextQueryConfig(),
                 progress: Callable | None = None):
        self.index, self.config, self.progress = index, config, progress
        self._model = self._ref = self._posteriors = self._voices = None
        self.method = config.method
        if self.method == "auto":
            self.method = "kws" if self.model_name() is not None else "synth"
        if self.method in ("kws", "fused") and self.model_name() is None:
            raise ConfigError(
                f"{index.folder}: this index was built without an acoustic model, so it "
                "has no posteriors to spot typed words in; pass --asr-model MODEL, rebuild "
                "with `asrkit index build --segments both --asr-model MODEL`, or use "
                "--method synth")

    def model_name(self) -> str | None:
        """The acoustic model kws uses: the one asked for, else the index's own."""
        if self.config.asr_model is not None:
            return self.config.asr_model
        ref = index_acoustic_model(self.index)
        return ref.name if ref is not None else None

    def search(self, text: str, top: int = 10) -> list[Hit]:
        """Best-first hits of ``text`` (up to ``top``)."""
        text = check_text(text)
        if top < 1:
            raise ConfigError(f"top must be at least 1, not {top}")
        if self.method == "kws":
            return self.spot(text, top)
        if self.method == "synth":
            return self.synthesised(text, top)
        depth = top * FUSE_DEPTH
        return fuse_scores([self.spot(text, depth), self.synthesised(text, depth)], text)[:top]

    def spot(self, text: str, top: int) -> list[Hit]:
        """Keyword spotting on the archive's posteriors."""
        from ..asr.alignment import text_labels
        from .keywords import spot
        model = self._load_model()
        unknown = model.vocab.unknown(model.vocab.normalize(text)) - {WORD_SEPARATOR}
        if unknown:
            known = "".join(s for s in model.vocab.symbols if s != WORD_SEPARATOR)
            raise VocabularyError(f"{text!r}: the acoustic model {self.model_name()} cannot "
                                  f"write {''.join(sorted(unknown))!r}; type the word with "
                                  f"the symbols it knows: {known}")
        labels = text_labels(model.vocab, text)
        separator = model.vocab.space_id if self.config.whole_words else None
        hits = []
        for p in self.posteriors():
            for m in spot(p.log_probs, labels, p.frame_seconds, separator=separator):
                hits.append(Hit(text, p.source, p.audio,
                                round(p.offset + m.start * p.frame_seconds, 3),
                                round(p.offset + m.end * p.frame_seconds, 3),
                                float(np.exp(m.score)), -1))
        hits.sort(key=lambda h: -h.score)
        return hits[:top]

    def synthesised(self, text: str, top: int) -> list[Hit]:
        """Spoken examples of ``text`` by each voice, searched as one fused query."""
        queries = synthesised_examples(text, self._chosen_voices())
        hits = search_examples(self.index, queries, top=top, fuse=True)[0]
        return [replace(h, query=text) for h in hits]

    def _chosen_voices(self):
        if self._voices is None:
            self._voices = choose_voices(self.config.voices)
        return self._voices

    def _load_model(self):
        if self._model is None:
            from .asr_frontend import load_referenced, reference_model
            if self.config.asr_model is not None:
                self._model, self._ref = reference_model(self.config.asr_model)
            else:
                self._ref = index_acoustic_model(self.index)
                self._model = load_referenced(self._ref, f"{self.index.folder}")
        return self._model

    def posteriors(self) -> list:
        """The archive's posteriors under the kws model: kept ones read, others computed
        (once per searcher)."""
        if self._posteriors is None:
            from .posteriors import archive_posteriors
            model = self._load_model()
            self._posteriors = list(archive_posteriors(self.index, model, self._ref,
                                                       self.progress))
        return self._posteriors


def search_text(index: SearchIndex | str | os.PathLike, texts: Sequence[str], top: int = 10,
                config: TextQueryConfig = TextQueryConfig(),
                progress: Callable | None = None) -> list[list[Hit]]:
    """One best-first hit list per typed word or phrase in ``texts``."""
    if not texts:
        raise ConfigError("no text given: type the word or phrase to find")
    texts = [check_text(t) for t in texts]
    opened = not isinstance(index, SearchIndex)
    idx = SearchIndex(index) if opened else index
    try:
        searcher = TextSearcher(idx, config, progress)
        return [searcher.search(t, top) for t in texts]
    finally:
        if opened:
            idx.close()


def check_text(text: str) -> str:
    """``text`` stripped; refused when nothing is left."""
    if text is None or not text.strip():
        raise ConfigError("the text to find is empty; type the word or phrase, e.g. "
                          "--text ERASE")
    return " ".join(text.split())


def index_acoustic_model(index: SearchIndex):
    """The acoustic model the index was built with (segments or embedder), as an
    :class:`~asrkit.search.asr_frontend.AcousticModelRef`; None when it used none."""
    from .asr_frontend import AcousticModelRef
    seg = index.segment_config
    if seg.asr_model and seg.asr_fingerprint:
        return AcousticModelRef(seg.asr_model, seg.asr_fingerprint)
    front = (index.store.setting("embedder_config") or {}).get("frontend", {})
    if front.get("kind") == "asr" and front.get("asr_model") and front.get("asr_fingerprint"):
        return AcousticModelRef(front["asr_model"], front["asr_fingerprint"])
    return None


def choose_voices(patterns: Sequence[str] | None = None):
    """The synthesiser voices for spoken examples: those matching ``patterns``, or of
    :data:`DEFAULT_VOICES` those installed (any installed voice when none is)."""
    from ..synth import SynthesisError, select_voices
    if patterns:
        return select_voices(list(patterns))
    found = []
    for pattern in DEFAULT_VOICES:
        try:
            found += select_voices([pattern])
        except SynthesisError:
            continue  # that engine or voice is not installed here
    return found or select_voices(None)[:len(DEFAULT_VOICES)]


def synthesised_examples(text: str, voices) -> list[Query]:
    """``text`` said by each voice: queries of 16 kHz speech, silence trimmed."""
    from ..synth import SynthesisError, synthesize, word_samples
    queries = []
    for voice in voices:
        wave, rate = synthesize(voice, text)
        samples = word_samples(wave, rate)
        if samples.size == 0:
            raise SynthesisError(f"{voice.id}: said nothing for {text!r}; type words the "
                                 "voice can pronounce")
        queries.append(Query(f"{text} ({voice.id})", samples))
    return queries


def fuse_scores(lists: Sequence[Sequence[Hit]], name: str) -> list[Hit]:
    """Merge best-first hit lists into one: hits overlapping in one recording are one
    region, scoring the mean of its score in each list (0 from a list that missed it).
    A region keeps the times of the list that found it first in the order given."""
    regions: list[list] = []  # [hit, summed score]
    by_source: dict[str, list[list]] = {}
    for hits in lists:
        claimed: set[int] = set()
        for h in hits:
            same = by_source.setdefault(h.source, [])
            match = next((r for r in same if id(r) not in claimed
                          and h.start < r[0].end and r[0].start < h.end), None)
            if match is None:
                match = [replace(h, query=name), 0.0]
                same.append(match)
                regions.append(match)
            claimed.add(id(match))
            match[1] += h.score
    return [replace(h, score=round(s / len(lists), 6))
            for h, s in sorted(regions, key=lambda r: -r[1])]
