"""Scoring a model on a labelled manifest: WER/CER with S/D/I counts per utterance and
how well its word confidences match its accuracy (:func:`evaluate`), and the quicker
corpus-level figures that training validates with, shared out over processes
(:func:`validate`)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import normalize_gain
from ..conditions import Condition
from .calibration import BINS, Reliability, labelled_confidences, reliability
from .dataset import Example, bucket_batches, load_batch
from ..decoding.base import Decoder, GreedyDecoder
from ..io import atomic_open
from .distributed import Cluster, all_reduce_sum
from ..errors import ManifestError
from ..manifest import Utterance
from ..metrics import ErrorCounts, char_errors, word_errors
from .model import AsrModel
from .transcription import Transcript, transcribe

log = logging.getLogger("asrkit")


@dataclass(frozen=True)
class UtteranceScore:
    id: str
    reference: str
    hypothesis: str
    words: ErrorCounts
    chars: ErrorCounts

    def record(self) -> dict:
        """One line of the per-utterance results file (``evaluate --results``)."""
        return {"id": self.id, "reference": self.reference, "hypothesis": self.hypothesis,
                "word_errors": self.words.errors, "words": self.words.reference_length,
                "char_errors": self.chars.errors}


@dataclass(frozen=True)
class EvaluationReport:
    words: ErrorCounts  # corpus totals
    chars: ErrorCounts
    utterances: tuple[UtteranceScore, ...]
    skipped: tuple[tuple[str, str], ...]  # (id, reason)
    audio_seconds: float
    # Every hypothesis word in order: its confidence and whether it is right (aligned
    # to an equal reference word), for calibration (see asrkit.asr.calibration).
    confidences: tuple[float, ...] = ()
    word_right: tuple[bool, ...] = ()

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    def worst(self, n: int = 10) -> list[UtteranceScore]:
        """The ``n`` utterances with the most word errors (ties: higher rate first)."""
        return sorted(self.utterances, key=lambda u: (-u.words.errors, -u.words.rate))[:n]

    def reliability(self, bins: int = BINS) -> Reliability | None:
        """Reliability curve and ECE of the word confidences (None: no words)."""
        return reliability(self.confidences, self.word_right, bins) if self.confidences \
            else None

    def summary(self) -> dict:
        curve = self.reliability()
        return {"wer": round(self.wer, 6), "cer": round(self.cer, 6),
                "words": self.words.as_dict(), "chars": self.chars.as_dict(),
                "utterances": len(self.utterances), "skipped": len(self.skipped),
                "audio_hours": round(self.audio_seconds / 3600, 4),
                **({"confidence": curve.as_dict()} if curve else {})}

    def write_results(self, path: str | os.PathLike) -> None:
        """Per-utterance results as JSON Lines (one :meth:`UtteranceScore.record` per
        line), written atomically."""
        with atomic_open(path, "w", encoding="utf-8") as f:
            for u in self.utterances:
                f.write(json.dumps(u.record(), ensure_ascii=False) + "\n")


def evaluate(model: AsrModel, utterances: Sequence[Utterance], decoder: Decoder | None = None,
             batch_seconds: float = 240.0,
             on_result: Callable[[Transcript], None] | None = None,
             condition: Condition | None = None, calibrated: bool = True,
             ) -> EvaluationReport:
    """Transcribe ``utterances`` and score them against their ``text``, with their audio
    changed by ``condition`` if one is given (see :mod:`asrkit.conditions`).

    Utterances without text or with unreadable audio are skipped and listed in the
    report; references are normalised with the model's case policy. Word confidences
    are the model's calibrated ones unless ``calibrated`` is False.
    """
    if not utterances:  # a WER of 0 % over no words would look like a perfect score
        raise ManifestError("no utterances to evaluate; give a manifest with reference text")
    labelled = [u for u in utterances if u.text is not None]
    skipped = [(u.id, "no reference transcript") for u in utterances if u.text is None]

    def on_skip(utt: Utterance, reason: str) -> None:
        skipped.append((utt.id, reason))

    scores, pairs, seconds = [], [], 0.0
    transform = None
    if condition is not None and condition.kind != "clean":
        def transform(utt: Utterance, wave: np.ndarray) -> np.ndarray:
            out = condition.apply(wave, utt.id)
            # A noisy or reverberant recording is loaded gain-normalised like any other.
            return normalize_gain(out) if model.feature_config.gain_normalize else out
    for tr in transcribe(model, labelled, decoder, batch_seconds, on_skip, transform,
                         calibrated):
        if on_result:
            on_result(tr)
        ref = model.vocab.normalize(tr.utt.text)
        scores.append(score_utterance(tr.utt.id, ref, tr.text))
        pairs.append((ref, tr.hypothesis))
        seconds += tr.duration
    conf, right = labelled_confidences(pairs)
    return EvaluationReport(
        word_errors([s.reference for s in scores], [s.hypothesis for s in scores]),
        char_errors([s.reference for s in scores], [s.hypothesis for s in scores]),
        tuple(scores), tuple(skipped), seconds, tuple(conf.tolist()), tuple(right.tolist()))


def score_utterance(uid: str, reference: str, hypothesis: str) -> UtteranceScore:
    return UtteranceScore(uid, reference, hypothesis, word_errors([reference], [hypothesis]),
                          char_errors([reference], [hypothesis]))


def validate(model: AsrModel, examples: Sequence[Example], batch_seconds: float,
             cluster: Cluster = Cluster()) -> tuple[float, float, float]:
    """CTC loss per label (averaged over utterances), CER and WER (greedy decoding).

    With several processes (``cluster``), each decodes its share of the batches and the
    sums are combined, so every process returns the figures of the whole set.
    """
    device = next(model.parameters()).device
    sums = _validation_sums(model, examples, batch_seconds, cluster.rank, cluster.world_size)
    loss, count, char_errs, chars, word_errs, words = all_reduce_sum(sums, cluster, device)

    def rate(errors: float, length: float) -> float:  # as metrics.ErrorCounts.rate
        return errors / length if length else float(errors > 0)

    return loss / max(count, 1), rate(char_errs, chars), rate(word_errs, words)


@torch.inference_mode()
def _validation_sums(model: AsrModel, examples: Sequence[Example], batch_seconds: float,
                     rank: int, world_size: int) -> list[float]:
    """Loss sum, utterances, character errors, characters, word errors, words over
    every ``world_size``-th batch, from the ``rank``-th."""
    model.eval()
    device = next(model.parameters()).device
    decoder = GreedyDecoder(model.vocab, model.frame_seconds)
    order = sorted(range(len(examples)), key=lambda i: examples[i].duration)
    batches = bucket_batches([examples[i].duration for i in order], batch_seconds, 0, 0,
                             shuffle=False)
    refs, hyps, total, count = [], [], 0.0, 0
    for idx in batches[rank::world_size]:
        chunk = [examples[order[i]] for i in idx]
        batch, skipped = load_batch(chunk, model.feature_config.gain_normalize)
        for sk in skipped:
            log.warning("validation skipped %s: %s", sk.id, sk.reason)
        if batch is None:
            continue
        log_probs, lengths = model(batch.waves.to(device), batch.wave_lengths.to(device))
        loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets.to(device), lengths,
                          batch.target_lengths.to(device), blank=0, reduction="mean")
        total += loss.item() * len(batch.ids)  # per-label loss, as in training
        count += len(batch.ids)
        by_id = {e.utt.id: e for e in chunk}
        refs += [model.vocab.normalize(by_id[i].utt.text) for i in batch.ids]
        hyps += [h.text for h in decoder.decode(log_probs.cpu(), lengths.cpu())]
    chars, words = char_errors(refs, hyps), word_errors(refs, hyps)
    return [total, count, chars.errors, chars.reference_length, words.errors,
            words.reference_length]
