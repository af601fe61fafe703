"""Decoder options shared by `transcribe` and `evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from .common import FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, number_check  # parse-time range checks

LOG_PROB = number_check(high=0, what="a log-probability")

DecoderOpt = Annotated[str, typer.Option("--decoder", help="greedy or beam.")]
BeamSizeOpt = Annotated[Optional[int], typer.Option("--beam-size", callback=POSITIVE_INT, help="Beam width (beam decoder).")]
LmOpt = Annotated[Optional[Path], typer.Option("--lm", help="Word n-gram LM: ARPA file or KenLM binary.")]
AlphaOpt = Annotated[Optional[float], typer.Option("--alpha", callback=NON_NEGATIVE, help="LM weight.")]
BetaOpt = Annotated[Optional[float], typer.Option("--beta", callback=FINITE, help="Word insertion bonus.")]
LexiconOpt = Annotated[Optional[Path], typer.Option("--lexicon", help="Word list / lexicon restricting the output words.")]
HotwordsOpt = Annotated[Optional[list[str]], typer.Option("--hotwords", help="Word or phrase to boost (repeatable).")]
TokenMinLogpOpt = Annotated[Optional[float], typer.Option("--token-min-logp", callback=LOG_PROB, help="Labels less likely than this log-probability at a frame are not tried (beam; default -5, none with --lexicon; -1000 tries all).")]
BeamThresholdOpt = Annotated[Optional[float], typer.Option("--beam-threshold", callback=POSITIVE, help="Prefixes scoring this far below the best are dropped (beam; default 10; 1e9 keeps all).")]
UnkOffsetOpt = Annotated[Optional[float], typer.Option("--unk-offset", callback=FINITE, help="LM score added once per word the LM does not know, no lexicon (beam; 0: none).")]
DecodingConfigOpt = Annotated[Optional[Path], typer.Option("--decoding-config", help="Decoder settings written by `asrkit lm tune`.")]


def build_decoder(model, decoder: str, beam_size=None, lm=None, alpha=None, beta=None,
                  lexicon=None, hotwords=None, decoding_config=None, token_min_logp=None,
                  beam_threshold=None, unk_offset=None):
    """Make the decoder the flags ask for; unset flags keep the decoder's defaults."""
    from asrkit.decoding import make_decoder

    options = {}
    if decoding_config is not None:
        from asrkit.decoding import load_decoding_config
        options = dict(load_decoding_config(decoding_config))
        decoder = options.pop("decoder", "beam")
    given = {"beam_size": beam_size, "lm": lm, "alpha": alpha, "beta": beta,
             "lexicon": lexicon, "hotwords": hotwords, "token_min_logp": token_min_logp,
             "beam_threshold": beam_threshold, "unk_offset": unk_offset}
    options.update({k: v for k, v in given.items() if v not in (None, [], ())})
    if "lm" in options:
        options["lm"] = str(options["lm"])
    if "lexicon" in options:
        options["lexicon"] = str(options["lexicon"])
    return make_decoder(decoder, model.vocab, model.frame_seconds, **options)
