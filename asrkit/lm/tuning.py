"""Tuning the LM weight (alpha) and word bonus (beta) of beam search on a dev set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..decoding.beam import BeamSearchDecoder
from ..errors import DecodingError

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_BETAS = (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0)


@dataclass(frozen=True)
class TuningResult:
    alpha: float
    beta: float
    wer: float  # dev-set word error rate at (alpha, beta)
    trials: tuple[tuple[float, float, float], ...]  # every (alpha, beta, wer) decoded


def tune_lm(log_probs: Sequence, references: Sequence[str], decoder: BeamSearchDecoder,
            alphas: Sequence[float] = DEFAULT_ALPHAS, betas: Sequence[float] = DEFAULT_BETAS,
            method: str = "grid", progress: Callable[[float, float, float], None] | None = None,
            ) -> TuningResult:
    """Find the LM weight and word bonus with the lowest WER on a dev set.

    ``log_probs`` holds one ``(frames, vocab)`` array per utterance, computed once;
    ``decoder`` (with its LM) decodes them at each setting. ``method="grid"`` tries
    every pair; ``"coordinate"`` alternates line searches over alphas and betas from
    the middle of both, until neither moves (far fewer decodes). ``progress(alpha,
    beta, wer)`` is called after each decode. Ties go to the smaller weights.
    """
    from ..metrics import word_errors  # noqa: PLC0415 (jiwer only when tuning)

    if decoder.lm is None:
        raise DecodingError("tuning alpha and beta needs a decoder with a language model")
    if len(log_probs) != len(references) or not references:
        raise DecodingError(f"{len(log_probs)} log-prob arrays for {len(references)} "
                            "references; need one per utterance, at least one")
    if method not in ("grid", "coordinate") or not alphas or not betas:
        raise DecodingError(f"unknown tuning method {method!r} or empty grid")
    batch, lengths = _pad(log_probs)
    refs = [decoder.vocab.normalize(r) for r in references]
    tried: dict[tuple[float, float], float] = {}

    def evaluate(alpha, beta):
        if (alpha, beta) not in tried:
            hyps = decoder.reweighted(alpha, beta).decode(batch, lengths)
            tried[alpha, beta] = word_errors(refs, [h.text for h in hyps]).rate
            if progress:
                progress(alpha, beta, tried[alpha, beta])
        return tried[alpha, beta]

    def key(ab):
        return tried[ab], abs(ab[0]), abs(ab[1])

    if method == "grid":
        for a in alphas:
            for b in betas:
                evaluate(a, b)
    else:
        a, b = sorted(alphas)[len(alphas) // 2], sorted(betas)[len(betas) // 2]
        while True:
            a = min(alphas, key=lambda x: (evaluate(x, b), abs(x), abs(b)))
            new_b = min(betas, key=lambda y: (evaluate(a, y), abs(a), abs(y)))
            if new_b == b:
                break
            b = new_b
    a, b = min(tried, key=key)
    return TuningResult(a, b, tried[a, b], tuple((x, y, w) for (x, y), w in tried.items()))


def _pad(arrays: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays ``(frames_i, vocab)`` → ``(batch, max_frames, vocab)``, ``lengths (batch,)``."""
    tensors = [torch.as_tensor(x, dtype=torch.float32) for x in arrays]
    for i, x in enumerate(tensors):
        if x.dim() != 2:
            raise DecodingError(f"log-probs of utterance {i} must be (frames, vocab), "
                                f"got shape {tuple(x.shape)}")
    lengths = torch.tensor([len(x) for x in tensors])
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True), lengths
