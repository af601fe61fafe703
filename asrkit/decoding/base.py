"""CTC decoding: log-probabilities → text with word times and confidences.

All decoders share one interface (:class:`Decoder`) and are built by
:func:`asrkit.decoding.make_decoder`. Input is ``log_probs (batch, frames, vocab)`` with the blank at
index 0 (as every asrkit model emits) and ``lengths (batch,)`` in frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import DecodingError
from ..text import BLANK, WORD_SEPARATOR, Vocabulary


@dataclass(frozen=True)
class WordTimes:
    """How a word's symbol frames become its start and end in seconds.

    A CTC symbol fires inside its sound, not at its edges: a word's first symbol
    fires a little after the word starts, and its last symbol well before the sound
    fades. Output frame ``t`` covers seconds ``[t, t + 1) * frame_seconds``; a word
    then starts ``start_shift`` seconds from its first symbol's frame, and ends
    ``end_shift`` seconds after its last symbol's frame, but never after the next word
    starts nor after the audio ends. bench/word_times.py measures both.
    """

    start_shift: float = 0.0  # seconds (negative: earlier)
    end_shift: float = 0.0  # seconds

    def as_dict(self) -> dict:
        return {"start_shift": self.start_shift, "end_shift": self.end_shift}


RAW_WORD_TIMES = WordTimes()  # frame times as they are
WORD_TIMES = WordTimes(0.01, 0.09)  # the default: see bench/word_times.py


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # 0..1


@dataclass(frozen=True)
class Hypothesis:
    """One decoded transcript."""

    text: str
    tokens: tuple[int, ...]  # label ids after collapsing, no blanks
    frames: tuple[int, ...]  # output frame at which each token was emitted
    words: tuple[WordTiming, ...] = ()
    score: float = 0.0  # total log score (acoustic + weighted LM for beam search)
    am_score: float = 0.0  # acoustic log-probability
    lm_score: float = 0.0  # language-model log-probability (natural log)


class Decoder:
    """Common interface of every CTC decoder."""

    def __init__(self, vocab: Vocabulary, frame_seconds: float, times: WordTimes = WORD_TIMES):
        self.vocab = vocab
        self.frame_seconds = frame_seconds  # seconds per output frame
        self.times = times  # frames → word boundaries

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None,
               ) -> list[Hypothesis]:
        """Best hypothesis per utterance."""
        return [nbest[0] for nbest in self.decode_nbest(log_probs, lengths)]

    def decode_nbest(self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None,
                     ) -> list[list[Hypothesis]]:
        raise NotImplementedError

    def stream(self, final_after: float | None = None) -> "DecoderStream":
        """A decoder of one utterance that takes its frames a few at a time.

        ``final_after`` (seconds; decoders that keep rival hypotheses): a word that
        ended this long ago may become final while far weaker rivals still disagree
        about it (they are dropped). None: only once no rival disagrees, and
        :meth:`DecoderStream.finish` equals decoding all the frames at once."""
        raise NotImplementedError(f"{type(self).__name__} cannot decode a stream")


class DecoderStream:
    """One utterance decoded as its frames arrive: :meth:`advance` with each block of
    frames, :meth:`update` for what is certain and what is not yet, :meth:`finish` at
    the end. :meth:`finish` returns what the decoder's ``decode`` returns for all the
    frames at once (unless words were made final early: :meth:`Decoder.stream`), and
    its first words are those :meth:`update` gave as final."""

    def advance(self, log_probs: torch.Tensor) -> None:
        """Decode the next ``log_probs (frames, vocab)``."""
        raise NotImplementedError

    def update(self) -> tuple[tuple[WordTiming, ...], tuple[WordTiming, ...]]:
        """(words that became final since the last call, the current best guess at
        the words after every final one)."""
        raise NotImplementedError

    def finish(self) -> Hypothesis:
        """The best hypothesis of the whole utterance."""
        raise NotImplementedError


class GreedyDecoder(Decoder):
    """Best path: the most likely symbol per frame, repeats collapsed, blanks dropped."""

    def decode_nbest(self, log_probs, lengths=None):
        log_probs, lengths = check_log_probs(log_probs, lengths, len(self.vocab))
        best, best_ids = log_probs.max(dim=-1)  # (batch, frames)
        out = []
        for b in range(log_probs.shape[0]):
            n = int(lengths[b])
            ids = best_ids[b, :n].tolist()
            tokens, frames = collapse(ids)
            conf = best[b, :n].exp().tolist()
            out.append([make_hypothesis(self.vocab, tokens, frames, conf, self.frame_seconds,
                                        score=float(best[b, :n].sum()), times=self.times,
                                        n_frames=n)])
        return out


    def stream(self, final_after: float | None = None) -> "GreedyStream":
        return GreedyStream(self)  # one hypothesis: no rival to wait for


class GreedyStream(DecoderStream):
    """Best path, frame block by frame block: a word is final once the word separator
    after it has been emitted."""

    def __init__(self, decoder: GreedyDecoder):
        self.decoder = decoder
        self.prev = BLANK  # the last frame's label, for collapsing across blocks
        self.tokens: list[int] = []
        self.frames: list[int] = []
        self.conf: dict[int, float] = {}  # frame -> probability of the token emitted there
        self.score = 0.0
        self.seen = 0  # frames so far
        self.committed = 0  # tokens that belong to final words (up to a separator)

    def advance(self, log_probs):
        log_probs, _ = check_log_probs(log_probs, None, len(self.decoder.vocab))
        best, ids = log_probs[0].max(dim=-1)  # (frames,)
        # exp in the log-probs' precision, as GreedyDecoder does: equal confidences
        for t, (i, p) in enumerate(zip(ids.tolist(), best.exp().tolist()), start=self.seen):
            if i != self.prev and i != BLANK:
                self.tokens.append(i)
                self.frames.append(t)
                self.conf[t] = p
            self.prev = i
        self.score += float(best.sum())
        self.seen += len(ids)

    def update(self):
        space = self.decoder.vocab.space_id
        last = next((j for j in range(len(self.tokens) - 1, self.committed - 1, -1)
                     if self.tokens[j] == space and self._settled(j)), -1)
        # Timed together: a final word's end may stop where the next word starts.
        words = self._words(self.committed, len(self.tokens))
        if last < self.committed:
            return (), words
        n_final = len(self._words(self.committed, last + 1))
        self.committed = last + 1
        return words[:n_final], words[n_final:]

    def _settled(self, separator: int) -> bool:
        """Whether the word before the separator at ``separator`` is final: a later
        word has begun, or enough frames have passed that none can move its end."""
        if any(t != self.decoder.vocab.space_id for t in self.tokens[separator + 1:]):
            return True
        last = separator - 1  # the last symbol before it, if after the committed ones
        while last >= self.committed and self.tokens[last] == self.decoder.vocab.space_id:
            last -= 1
        if last < self.committed:
            return True
        return end_is_settled(self.frames[last], self.seen, self.decoder.frame_seconds,
                              self.decoder.times)

    def _words(self, start: int, end: int) -> tuple[WordTiming, ...]:
        return tuple(word_timings(self.decoder.vocab, self.tokens[start:end],
                                  self.frames[start:end], self.conf,
                                  self.decoder.frame_seconds, self.decoder.times))

    def finish(self):
        return make_hypothesis(self.decoder.vocab, self.tokens, self.frames, self.conf,
                               self.decoder.frame_seconds, score=self.score,
                               times=self.decoder.times, n_frames=self.seen)


def end_is_settled(last_frame: int, next_frame: int, frame_seconds: float,
                   times: WordTimes) -> bool:
    """Whether the end of a word whose last symbol fired at ``last_frame`` is fixed when
    no later word can begin before frame ``next_frame`` (the frames seen so far, or the
    next word's first symbol): its moved end (:class:`WordTimes`) then lies before any
    next word's start and within the audio, so nothing can cut it short
    (:func:`word_bounds`)."""
    earliest_start = next_frame * frame_seconds + min(0.0, times.start_shift)
    return earliest_start >= (last_frame + 1) * frame_seconds + times.end_shift - 1e-9


def collapse(ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """CTC collapse of a frame-level path: merge repeats, drop blanks.
    Returns the tokens and the frame at which each starts."""
    tokens, frames, prev = [], [], BLANK
    for t, i in enumerate(ids):
        if i != prev and i != BLANK:
            tokens.append(i)
            frames.append(t)
        prev = i
    return tokens, frames


def make_hypothesis(vocab: Vocabulary, tokens: Sequence[int], frames: Sequence[int],
                    frame_conf: Sequence[float], frame_seconds: float, score: float = 0.0,
                    am_score: float | None = None, lm_score: float = 0.0,
                    times: WordTimes = WORD_TIMES, n_frames: int | None = None) -> Hypothesis:
    """Assemble a :class:`Hypothesis`, with word timings from the token frames.

    A word spans its first token's frame to one frame after its last token's frame,
    moved by ``times`` (:class:`WordTimes`; ``n_frames``: the utterance's length, which
    no end passes); its confidence is the geometric mean of its tokens' frame
    probabilities (``frame_conf[t]`` for each token frame ``t``).
    """
    words = word_timings(vocab, tokens, frames, frame_conf, frame_seconds, times, n_frames)
    text = " ".join(w.word for w in words)
    return Hypothesis(text, tuple(tokens), tuple(frames), tuple(words), score,
                      score if am_score is None else am_score, lm_score)


def word_timings(vocab: Vocabulary, tokens: Sequence[int], frames: Sequence[int],
                 frame_conf: Sequence[float], frame_seconds: float,
                 times: WordTimes = WORD_TIMES, n_frames: int | None = None,
                 ) -> list[WordTiming]:
    words: list[WordTiming] = []
    spans: list[tuple[int, int]] = []  # first and last token frame of each word
    chars: list[str] = []
    span: list[int] = []

    def flush():
        if chars:
            logc = sum(math.log(max(frame_conf[t], 1e-12)) for t in span) / len(span)
            words.append(WordTiming("".join(chars), 0.0, 0.0, round(math.exp(logc), 4)))
            spans.append((span[0], span[-1]))
        chars.clear()
        span.clear()

    for tok, t in zip(tokens, frames):
        sym = vocab.symbols[tok - 1]
        if sym == WORD_SEPARATOR:
            flush()
        else:
            chars.append(sym)
            span.append(t)
    flush()
    bounds = word_bounds(spans, frame_seconds, times,
                         None if n_frames is None else n_frames * frame_seconds)
    return [WordTiming(w.word, a, b, w.confidence) for w, (a, b) in zip(words, bounds)]


def word_bounds(spans: Sequence[tuple[int, int]], frame_seconds: float,
                times: WordTimes = WORD_TIMES, duration: float | None = None,
                ) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of words from the ``(first, last)`` frames of their
    symbols (in order), moved as :class:`WordTimes` says. A start stays within its
    first frame (and half a frame before ``duration``, if given, so a word never has
    zero length); an end stays within ``[its start, next word's start]`` and
    ``<= duration``."""
    fs = frame_seconds
    # Half a frame before the audio's end at the latest: a word there keeps a length.
    latest = math.inf if duration is None else duration - fs / 2
    starts = [max(a * fs, min(max(0.0, a * fs + times.start_shift,
                                  (spans[i - 1][1] + 1) * fs if i else 0.0),
                              (a + 1) * fs, latest))
              for i, (a, _) in enumerate(spans)]
    out = []
    for i, (_, b) in enumerate(spans):
        end = (b + 1) * fs + times.end_shift
        if i + 1 < len(spans):
            end = min(end, starts[i + 1])
        if duration is not None:
            end = min(end, duration)
        out.append((round(starts[i], 3), round(max(end, starts[i]), 3)))
    return out


def check_log_probs(log_probs: torch.Tensor, lengths: torch.Tensor | None, vocab_size: int,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate decoder input; returns float32 CPU ``(batch, frames, vocab)`` and lengths."""
    if not isinstance(log_probs, torch.Tensor):
        log_probs = torch.as_tensor(log_probs)
    if log_probs.dim() == 2:
        log_probs = log_probs.unsqueeze(0)
    if log_probs.dim() != 3:
        raise DecodingError(f"log_probs must be (batch, frames, vocab), got shape "
                            f"{tuple(log_probs.shape)}")
    if log_probs.shape[-1] != vocab_size:
        raise DecodingError(f"log_probs have {log_probs.shape[-1]} symbols per frame but the "
                            f"vocabulary has {vocab_size} (blank included); wrong layout "
                            "(expected batch, frames, vocab) or a vocabulary of another model")
    log_probs = log_probs.detach().float().cpu()
    if torch.isnan(log_probs).any() or (log_probs == math.inf).any():
        raise DecodingError("log_probs hold NaN or +inf values; check the model's output")
    batch, frames, _ = log_probs.shape
    if lengths is None:
        lengths = torch.full((batch,), frames, dtype=torch.long)
    lengths = torch.as_tensor(lengths).long().cpu()
    if lengths.shape != (batch,) or (lengths < 0).any() or (lengths > frames).any():
        raise DecodingError(f"lengths must be (batch,) with values in 0..{frames}")
    return log_probs, lengths
