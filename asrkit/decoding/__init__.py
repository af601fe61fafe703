"""CTC decoders: the shared interface, greedy, and prefix beam search with an LM.

:func:`make_decoder` builds either decoder by name; decoding-config files (the name
and options as JSON) are :mod:`asrkit.decoding.config`.
"""

from __future__ import annotations

from ..errors import DecodingOptionError
from ..text import Vocabulary
from .base import WORD_TIMES, Decoder, GreedyDecoder, Hypothesis, WordTimes, WordTiming
from .config import load_decoding_config, save_decoding_config


def make_decoder(kind: str, vocab: Vocabulary, frame_seconds: float, **options) -> Decoder:
    """Build a decoder by name: ``greedy`` or ``beam`` (options go to
    :class:`~asrkit.decoding.beam.BeamSearchDecoder`).

    Asking for beam-only options (an LM, a lexicon, hotwords) with ``greedy`` is an
    error rather than being silently ignored. ``times`` (:class:`WordTimes`) sets how
    either turns frames into word boundaries.
    """
    times = options.pop("times", None) or WORD_TIMES
    if kind == "greedy":
        used = {k for k, v in options.items() if v not in (None, False, (), [], {})}
        if used:
            raise DecodingOptionError(f"the greedy decoder takes no "
                                      f"{', '.join(sorted(used))}; use --decoder beam")
        return GreedyDecoder(vocab, frame_seconds, times)
    if kind == "beam":
        # imported here: the beam decoder loads numba, which greedy decoding never needs
        from .beam import BeamSearchDecoder  # noqa: PLC0415
        return BeamSearchDecoder(vocab, frame_seconds, times=times, **options)
    raise DecodingOptionError(f"unknown decoder {kind!r}; choose 'greedy' or 'beam'")


__all__ = ["Decoder", "GreedyDecoder", "Hypothesis", "WordTiming", "WordTimes", "make_decoder",
           "load_decoding_config", "save_decoding_config"]
