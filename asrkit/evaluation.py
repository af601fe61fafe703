"""Scoring a model on a labelled manifest: WER/CER with S/D/I counts per utterance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from .decoding import Decoder
from .manifest import Utterance
from .metrics import ErrorCounts, char_errors, word_errors
from .model import AsrModel
from .transcription import Transcript, transcribe


@dataclass(frozen=True)
class UtteranceScore:
    id: str
    reference: str
    hypothesis: str
    words: ErrorCounts
    chars: ErrorCounts


@dataclass(frozen=True)
class EvaluationReport:
    words: ErrorCounts  # corpus totals
    chars: ErrorCounts
    utterances: tuple[UtteranceScore, ...]
    skipped: tuple[tuple[str, str], ...]  # (id, reason)
    audio_seconds: float

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    def worst(self, n: int = 10) -> list[UtteranceScore]:
        """The ``n`` utterances with the most word errors (ties: higher rate first)."""
        return sorted(self.utterances, key=lambda u: (-u.words.errors, -u.words.rate))[:n]

    def summary(self) -> dict:
        return {"wer": round(self.wer, 6), "cer": round(self.cer, 6),
                "words": self.words.as_dict(), "chars": self.chars.as_dict(),
                "utterances": len(self.utterances), "skipped": len(self.skipped),
                "audio_hours": round(self.audio_seconds / 3600, 4)}


def evaluate(model: AsrModel, utterances: Sequence[Utterance], decoder: Decoder | None = None,
             batch_seconds: float = 240.0,
             on_result: Callable[[Transcript], None] | None = None) -> EvaluationReport:
    """Transcribe ``utterances`` and score them against their ``text``.

    Utterances without text or with unreadable audio are skipped and listed in the
    report; references are normalised with the model's case policy.
    """
    labelled = [u for u in utterances if u.text is not None]
    skipped = [(u.id, "no reference transcript") for u in utterances if u.text is None]

    def on_skip(utt: Utterance, reason: str) -> None:
        skipped.append((utt.id, reason))

    scores, seconds = [], 0.0
    for tr in transcribe(model, labelled, decoder, batch_seconds, on_skip):
        if on_result:
            on_result(tr)
        ref = model.vocab.normalize(tr.utt.text)
        scores.append(score_utterance(tr.utt.id, ref, tr.text))
        seconds += tr.duration
    return EvaluationReport(
        word_errors([s.reference for s in scores], [s.hypothesis for s in scores]),
        char_errors([s.reference for s in scores], [s.hypothesis for s in scores]),
        tuple(scores), tuple(skipped), seconds)


def score_utterance(uid: str, reference: str, hypothesis: str) -> UtteranceScore:
    return UtteranceScore(uid, reference, hypothesis, word_errors([reference], [hypothesis]),
                          char_errors([reference], [hypothesis]))
