"""Tuning the LM weight (alpha), word bonus (beta) and, if asked, the unknown-word
offset of beam search on a dev set:
:func:`tune_lm` over log-probs in memory, :func:`tune_decoding` the whole workflow from
a model and a manifest to a decoding config file (``asrkit lm tune``)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch

from ..decoding.beam import BeamSearchDecoder
from ..errors import DecodingError, ManifestError

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_BETAS = (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0)


class Trial(NamedTuple):
    """One setting decoded, and the dev-set word error rate it gave."""

    alpha: float
    beta: float
    unk_offset: float
    wer: float


@dataclass(frozen=True)
class TuningResult:
    alpha: float
    beta: float
    wer: float  # dev-set word error rate at the best setting
    trials: tuple[Trial, ...]  # every setting decoded, in order
    unk_offset: float  # the decoder's, unless a list of offsets was tuned


def tune_lm(log_probs: Sequence, references: Sequence[str], decoder: BeamSearchDecoder,
            alphas: Sequence[float] = DEFAULT_ALPHAS, betas: Sequence[float] = DEFAULT_BETAS,
            method: str = "grid", progress: Callable[[Trial], None] | None = None,
            unk_offsets: Sequence[float] | None = None) -> TuningResult:
    """Find the LM weight and word bonus (and unknown-word offset, among
    ``unk_offsets`` if given; else the decoder's) with the lowest WER on a dev set.

    ``log_probs`` holds one ``(frames, vocab)`` array per utterance, computed once;
    ``decoder`` (with its LM) decodes them at each setting. ``method="grid"`` tries
    every combination; ``"coordinate"`` alternates line searches over each list from
    the middle of all, until none moves (far fewer decodes). ``progress(trial)`` is
    called after each decode. Ties go to the smaller weights.
    """
    from ..metrics import word_errors  # noqa: PLC0415 (jiwer only when tuning)

    if decoder.lm is None:
        raise DecodingError("tuning alpha and beta needs a decoder with a language model")
    if len(log_probs) != len(references) or not references:
        raise DecodingError(f"{len(log_probs)} log-prob arrays for {len(references)} "
                            "references; need one per utterance, at least one")
    offsets = tuple(unk_offsets) if unk_offsets is not None else (decoder.unk_offset,)
    if method not in ("grid", "coordinate") or not alphas or not betas or not offsets:
        raise DecodingError(f"unknown tuning method {method!r} or empty grid")
    batch, lengths = _pad(log_probs)
    refs = [decoder.vocab.normalize(r) for r in references]
    tried: dict[tuple[float, float, float], Trial] = {}

    def evaluate(setting: tuple[float, float, float]) -> tuple[float, ...]:
        """The sort key of a setting: its WER, then the sizes of its weights."""
        if setting not in tried:
            hyps = decoder.reweighted(*setting).decode(batch, lengths)
            tried[setting] = Trial(*setting, word_errors(refs, [h.text for h in hyps]).rate)
            if progress:
                progress(tried[setting])
        return (tried[setting].wer, *map(abs, setting))

    grids = (tuple(alphas), tuple(betas), offsets)
    if method == "grid":
        for setting in itertools.product(*grids):
            evaluate(setting)
    else:
        best = [sorted(g)[len(g) // 2] for g in grids]
        moved = True
        while moved:
            moved = False
            for i, grid in enumerate(grids):
                choice = min(grid, key=lambda v: evaluate((*best[:i], v, *best[i + 1:])))
                moved |= choice != best[i]
                best[i] = choice
    a, b, u = min(tried, key=evaluate)
    return TuningResult(a, b, tried[a, b, u].wer, tuple(tried.values()), u)


def _pad(arrays: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays ``(frames_i, vocab)`` → ``(batch, max_frames, vocab)``, ``lengths (batch,)``."""
    tensors = [torch.as_tensor(x, dtype=torch.float32) for x in arrays]
    for i, x in enumerate(tensors):
        if x.dim() != 2:
            raise DecodingError(f"log-probs of utterance {i} must be (frames, vocab), "
                                f"got shape {tuple(x.shape)}")
    lengths = torch.tensor([len(x) for x in tensors])
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True), lengths


@dataclass(frozen=True)
class TuningProgress:
    """Reported by :func:`tune_decoding`: ``stage`` is ``"log-probs"`` (``done`` of
    ``total`` utterances through the model) or ``"tuning"`` (settings decoded; ``total``
    is None for the coordinate search, whose length is not known ahead)."""

    stage: str
    done: int
    total: int | None
    wer: float | None = None  # of the setting just decoded (stage "tuning")


@dataclass(frozen=True)
class TuningReport:
    """What :func:`tune_decoding` found and wrote."""

    result: TuningResult
    greedy_wer: float  # dev-set WER without beam search or LM, for comparison
    utterances: int  # dev utterances decoded
    method: str
    config: str  # the decoding config written
    skipped: tuple[tuple[str, str], ...]  # (id, reason) of dev utterances left out

    def summary(self) -> dict:
        """JSON-ready: best setting, its WER, the greedy WER and every trial."""
        r = self.result
        return {"alpha": r.alpha, "beta": r.beta, "unk_offset": r.unk_offset, "wer": r.wer,
                "greedy_wer": self.greedy_wer, "utterances": self.utterances,
                "method": self.method, "trials": [t._asdict() for t in r.trials]}


def tune_decoding(model, dev_manifest: str | os.PathLike, lm: str | os.PathLike,
                  out: str | os.PathLike = "decoding.json", beam_size: int = 50,
                  alphas: Sequence[float] = DEFAULT_ALPHAS,
                  betas: Sequence[float] = DEFAULT_BETAS, method: str = "grid",
                  lexicon: str | os.PathLike | None = None, batch_seconds: float = 240.0,
                  progress: Callable[[TuningProgress], None] | None = None,
                  unk_offsets: Sequence[float] | None = None) -> TuningReport:
    """Tune alpha and beta (and the unknown-word offset among ``unk_offsets``) of beam search with ``lm`` on ``dev_manifest`` and write the
    best settings to ``out`` as a decoding config (for ``--decoding-config``).

    ``model`` is an :class:`~asrkit.asr.model.AsrModel` or anything
    :func:`~asrkit.asr.checkpoint.load_model` takes. The model runs once per utterance;
    only the decoder runs per setting (see :func:`tune_lm`).
    """
    from ..asr.checkpoint import load_model
    from ..asr.transcription import compute_log_probs
    from ..decoding.base import GreedyDecoder
    from ..decoding.config import save_decoding_config
    from ..manifest import read_manifest
    from ..metrics import wer

    asr = model if isinstance(model, torch.nn.Module) else load_model(model)
    decoder = BeamSearchDecoder(asr.vocab, asr.frame_seconds, beam_size=beam_size, lm=lm,
                                lexicon=lexicon)
    utts = read_manifest(dev_manifest)
    if not any(u.text for u in utts):
        raise ManifestError(f"{dev_manifest}: no utterance has reference text")
    report = progress or (lambda p: None)
    skipped, arrays, refs = [], [], []
    for utt, lp in compute_log_probs(asr, utts, batch_seconds,
                                     on_skip=lambda u, why: skipped.append((u.id, why))):
        arrays.append(lp.float().cpu().numpy())
        refs.append(utt.text or "")
        report(TuningProgress("log-probs", len(arrays), len(utts)))
    total = (len(alphas) * len(betas) * len(unk_offsets or (None,))
             if method == "grid" else None)
    decoded = 0

    def on_trial(trial: Trial) -> None:
        nonlocal decoded
        decoded += 1
        report(TuningProgress("tuning", decoded, total, trial.wer))

    result = tune_lm(arrays, refs, decoder, alphas, betas, method, progress=on_trial,
                     unk_offsets=unk_offsets)
    greedy = GreedyDecoder(asr.vocab, asr.frame_seconds)
    greedy_wer = wer([asr.vocab.normalize(r) for r in refs],
                     [greedy.decode(x[None])[0].text for x in arrays])
    tuning = TuningReport(result, greedy_wer, len(arrays), method, str(out), tuple(skipped))
    options = {"decoder": "beam", "beam_size": beam_size, "lm": str(lm),
               "alpha": result.alpha, "beta": result.beta, "unk_offset": result.unk_offset}
    if lexicon is not None:
        options["lexicon"] = str(lexicon)
    save_decoding_config(out, options, {"dev_manifest": str(dev_manifest), **tuning.summary()})
    return tuning
