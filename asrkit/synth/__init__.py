"""Synthetic English speech: a labelled corpus and a search archive, from Debian's
speech synthesisers (espeak-ng, flite, festival), so the whole system can be tried,
and tested, without any recorded data.

    from asrkit.synth import SynthConfig, synth_corpus
    corpus = synth_corpus("data/synth", SynthConfig(n_utterances=2400))
    corpus.manifests["train"]      # → data/synth/train.jsonl
"""

from .archive import WordSpan, synth_archive, word_samples
from .corpus import (SPLITS, PlannedUtterance, SynthConfig, SynthCorpus, plan_corpus, render,
                     split_speakers, synth_corpus, write_wav)
from .texts import BUILTIN_SETS, TextSource, builtin_words, clean_label, text_source
from .voices import (ENGINE_PACKAGES, ENGINES, Prosody, SynthesisError, Voice,
                     available_engines, list_voices, select_voices, synthesize, synthesize_many)

__all__ = [
    "BUILTIN_SETS", "ENGINES", "ENGINE_PACKAGES", "SPLITS", "PlannedUtterance", "Prosody",
    "SynthConfig", "SynthCorpus", "SynthesisError", "TextSource", "Voice", "WordSpan",
    "available_engines", "builtin_words", "clean_label", "list_voices", "plan_corpus",
    "render", "select_voices", "split_speakers", "synth_archive", "synth_corpus",
    "synthesize", "synthesize_many", "text_source", "word_samples", "write_wav",
]
