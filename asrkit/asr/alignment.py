"""Forced alignment: where each word of a known transcript is in a recording.

The transcript is normalised as the model's vocabulary normalises text and turned into
labels; the best CTC path of exactly those labels (Viterbi over the blank-augmented
sequence ``blank, l1, blank, l2, ..., lU, blank``) gives each character its frames,
and frames become seconds as in transcription (``frame * model.frame_seconds``).

Each character gets a score, the mean log-posterior of its frames, and each word the
score of its worst-heard character (a mean over the word would let one wrong letter
hide among right ones). A word scoring below ``min_score`` is flagged ``"low_score"``:
text that does not match the audio still yields times, but never silently.

Memory: the Viterbi back-pointers take one byte per trellis cell (frames × (2 × labels
+ 1)). A recording whose trellis exceeds ``max_cells`` is aligned in windows, none
larger than ``max_cells``: it is cut where the greedy transcript agrees with the text
on a run of :data:`ANCHOR_LABELS` symbols, in the blank frames before the middle one.
Where the best path of the whole crosses a cut there anyway (a confident model's path
follows its greedy path through such runs), windowed and whole alignment agree. A
stretch longer than ``max_cells`` without such a run is an
:class:`~asrkit.errors.AlignmentError`, not unbounded memory.
Log-probs of long recordings are computed chunk by chunk (see
:mod:`asrkit.asr.transcription`); they take ``frames × vocab`` floats.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..decoding.base import (WORD_TIMES, WordTiming, WordTimes, check_log_probs, collapse,
                             word_bounds)
from ..errors import AlignmentError, AsrkitError, VocabularyError
from ..manifest import Utterance
from ..text import BLANK, WORD_SEPARATOR, Vocabulary, ctc_min_frames
from .model import AsrModel
from .transcription import compute_log_probs

LOW_SCORE = -3.0  # word score (log-posterior) below which a word is flagged: p ~ 0.05
MAX_CELLS = 20_000_000  # trellis cells aligned at once: 20 MB of back-pointers
LOW_SCORE_FLAG = "low_score"
ANCHOR_LABELS = 4  # windows are cut inside runs of this many symbols heard as written


@dataclass(frozen=True)
class AlignConfig:
    min_score: float = LOW_SCORE  # words scoring below are flagged "low_score"
    max_cells: int = MAX_CELLS  # larger trellises are aligned in windows
    drop_unknown: bool = False  # drop characters the vocabulary lacks instead of failing

    def __post_init__(self):
        if not math.isfinite(self.min_score):
            raise AlignmentError(f"min_score must be finite, not {self.min_score}")
        if self.max_cells < 3:
            raise AlignmentError(f"max_cells must be at least 3, not {self.max_cells}")


@dataclass(frozen=True)
class CharSpan:
    char: str
    start: float  # seconds from the start of the utterance
    end: float  # seconds
    score: float  # mean log-posterior of its frames


@dataclass(frozen=True)
class AlignedWord:
    word: str
    start: float  # seconds from the start of the utterance
    end: float  # seconds
    score: float  # its worst-heard character's score (0 is certain)
    flag: str | None  # "low_score" when the model hardly heard the word here
    chars: tuple[CharSpan, ...]

    @property
    def timing(self) -> WordTiming:
        """As transcription reports a word (for the subtitle writers)."""
        return WordTiming(self.word, self.start, self.end, round(math.exp(self.score), 4))


@dataclass(frozen=True)
class Alignment:
    utt: Utterance
    text: str  # the transcript as aligned: normalised, words joined by one space
    words: tuple[AlignedWord, ...]
    duration: float  # seconds of audio (frames × frame_seconds)
    score: float  # log-probability of the best path
    windows: int  # pieces it was aligned in (1: whole)


@dataclass(frozen=True)
class Labels:
    """A transcript as CTC labels. ``word_of[i]`` is the word index of ``ids[i]``, or
    -1 for a word separator."""

    words: tuple[str, ...]
    ids: tuple[int, ...]
    word_of: tuple[int, ...]


def text_labels(vocab: Vocabulary, text: str, drop_unknown: bool = False) -> Labels:
    """Normalise ``text`` as ``vocab`` does and encode it, words separated by the word
    separator when the vocabulary has one. Characters it lacks raise
    :class:`VocabularyError` naming them, or are dropped with ``drop_unknown``."""
    norm = vocab.normalize(text)
    unknown = vocab.unknown(norm) - {WORD_SEPARATOR}
    if unknown and not drop_unknown:
        raise VocabularyError(f"the text holds characters the model cannot write: "
                              f"{''.join(sorted(unknown))!r}; remove them, or drop them "
                              "with --drop-unknown")
    words = [w for w in ("".join(c for c in w if c not in unknown) for w in norm.split()) if w]
    if not words:
        raise VocabularyError("the text holds no words to align"
                              + (" once unknown characters are dropped" if unknown else ""))
    ids, word_of, sep = [], [], vocab.space_id
    for k, word in enumerate(words):
        if k and sep is not None:
            ids.append(sep)
            word_of.append(-1)
        ids += vocab.encode(word)
        word_of += [k] * len(word)
    return Labels(tuple(words), tuple(ids), tuple(word_of))


def viterbi(log_probs: torch.Tensor | np.ndarray, labels: Sequence[int],
            ) -> tuple[np.ndarray, float]:
    """Best CTC path of ``labels`` through ``log_probs (frames, vocab)`` (blank 0).

    Returns ``states (frames,)``, each frame's index into the blank-augmented sequence
    (even: a blank, odd ``2i + 1``: label ``i``), and the path's log-probability. Needs
    ``frames >= ctc_min_frames(labels)``. Memory: one byte per frame and state.
    """
    lp = np.asarray(log_probs, dtype=np.float32)
    frames, states = lp.shape[0], 2 * len(labels) + 1
    if frames < ctc_min_frames(labels):
        raise AlignmentError(f"{frames} frames cannot hold {len(labels)} labels")
    ext = np.zeros(states, np.int64)
    ext[1::2] = labels
    # A label may follow the one before it directly (skipping the blank) unless equal.
    jump_ok = np.zeros(states, bool)
    jump_ok[3::2] = ext[3::2] != ext[1:-2:2]
    alpha = np.full(states, -np.inf)
    alpha[:2] = lp[0, ext[:2]]
    back = np.zeros((frames, states), np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    cand = np.full((3, states), -np.inf)
    cols = np.arange(states)
    for t in range(1, frames):
        cand[0] = alpha
        cand[1, 1:] = alpha[:-1]
        cand[2, 2:] = np.where(jump_ok[2:], alpha[:-2], -np.inf)
        choice = cand.argmax(0)  # ties keep the state, as torchaudio does
        back[t] = choice
        alpha = cand[choice, cols] + lp[t, ext]
    s = states - 1 if states == 1 or alpha[-1] >= alpha[-2] else states - 2
    score = float(alpha[s])
    path = np.empty(frames, np.int64)
    for t in range(frames - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    return path, score


@dataclass(frozen=True)
class Window:
    """A piece of the trellis aligned on its own: frames ``[frame0, frame1)`` and
    labels ``[label0, label1)``."""

    frame0: int
    frame1: int
    label0: int
    label1: int

    @property
    def cells(self) -> int:
        return (self.frame1 - self.frame0) * (2 * (self.label1 - self.label0) + 1)


def plan_windows(log_probs: torch.Tensor, labels: Labels, max_cells: int = MAX_CELLS,
                 frame_seconds: float = 1.0) -> list[Window]:
    """Cut the trellis of ``log_probs (frames, vocab)`` × ``labels`` into windows of at
    most ``max_cells`` each, at anchors (module docstring), each as long as fits.
    Raises :class:`AlignmentError` where no anchor lets a window fit."""
    frames, n = log_probs.shape[0], len(labels.ids)
    end = (frames, n)
    if _window((0, 0), end).cells <= max_cells:
        return [_window((0, 0), end)]

    def fits(a, b) -> bool:
        w = _window(a, b)
        return (w.cells <= max_cells and w.label1 > w.label0
                and w.frame1 - w.frame0 >= ctc_min_frames(labels.ids[w.label0:w.label1]))

    cuts, start, best = [], (0, 0), None
    for point in [*_anchors(log_probs, labels), end]:
        if not fits(start, point) and best is not None:
            cuts.append(best)
            start, best = best, None
        if fits(start, point):
            best = point
        elif _window(start, point).cells > max_cells:
            break  # no anchor before this point fits: fail below
    if best != end:
        last = _window(start, end)
        raise AlignmentError(
            f"cannot align in bounded memory: from {last.frame0 * frame_seconds:.1f} s on, "
            "the model's transcript does not agree with the text often enough to cut the "
            f"trellis there (it needs {last.cells} cells, the limit is {max_cells}); "
            "check that the text belongs to this recording, split the recording, or "
            "raise the limit (--max-cells)")
    points = [(0, 0), *cuts, end]
    return [_window(a, b) for a, b in zip(points, points[1:])]


def _window(a: tuple[int, int], b: tuple[int, int]) -> Window:
    """The window from point ``a`` to point ``b``, each ``(frame, label)``."""
    return Window(a[0], b[0], a[1], b[1])


def _anchors(log_probs: torch.Tensor, labels: Labels) -> list[tuple[int, int]]:
    """``(frame, label)`` cut points where the greedy path and the text agree on
    :data:`ANCHOR_LABELS` characters in a row (word separators aside): the label index of the middle one, and a
    frame in the blanks between the greedy path's symbol before it and its first frame.

    Runs of labels rather than single ones are matched so a match is rarely a chance
    one, and so that matching stays fast on long texts (many distinct items)."""
    best = log_probs.argmax(-1).numpy()  # (frames,)
    tokens, starts = collapse(best.tolist())
    symbols = np.flatnonzero(best != BLANK)  # non-blank frames
    # Word separators are left out of the runs: a model may not (yet) emit them.
    separators = {i for i, k in zip(labels.ids, labels.word_of) if k < 0}
    heard = [k for k, token in enumerate(tokens) if token not in separators]
    written = [j for j, k in enumerate(labels.word_of) if k >= 0]

    def runs(seq: Sequence[int]) -> list[tuple[int, ...]]:
        return [tuple(seq[i:i + ANCHOR_LABELS]) for i in range(len(seq) - ANCHOR_LABELS + 1)]

    matcher = difflib.SequenceMatcher(None, runs([tokens[k] for k in heard]),
                                      runs([labels.ids[j] for j in written]), autojunk=False)
    half, points = ANCHOR_LABELS // 2, []
    for a, b, size in matcher.get_matching_blocks():
        for i in range(size):
            k = heard[a + i + half]
            before = int(symbols[np.searchsorted(symbols, starts[k]) - 1]) + 1
            points.append(((before + starts[k]) // 2, written[b + i + half]))
    return points


def align_log_probs(log_probs: torch.Tensor, labels: Labels, vocab: Vocabulary,
                    frame_seconds: float, config: AlignConfig = AlignConfig(),
                    times: WordTimes = WORD_TIMES,
                    ) -> tuple[tuple[AlignedWord, ...], float, int]:
    """Align ``labels`` to ``log_probs (frames, vocab)``: the words, the path score and
    the number of windows used. Word boundaries are the path's frames moved by
    ``times`` as the decoders move theirs (:class:`~asrkit.decoding.base.WordTimes`);
    character spans are the path's frames as they are. Raises :class:`AlignmentError`
    when the audio is too short for the labels."""
    log_probs = check_log_probs(log_probs, None, len(vocab))[0][0]  # (frames, vocab)
    frames, need = log_probs.shape[0], ctc_min_frames(labels.ids)
    if frames < need:
        raise AlignmentError(
            f"audio too short for its text: {frames * frame_seconds:.2f} s gives {frames} "
            f"frames, but {len(labels.ids)} characters need at least {need} "
            f"({need * frame_seconds:.2f} s); check that the text belongs to this "
            "recording, or shorten the text")
    windows = plan_windows(log_probs, labels, config.max_cells, frame_seconds)
    path, score = np.empty(frames, np.int64), 0.0
    for w in windows:
        states, s = viterbi(log_probs[w.frame0:w.frame1], labels.ids[w.label0:w.label1])
        path[w.frame0:w.frame1] = states + 2 * w.label0
        score += s
    words = _words(log_probs.numpy(), path, labels, vocab, frame_seconds, config.min_score,
                   times)
    return words, score, len(windows)


def _words(lp: np.ndarray, path: np.ndarray, labels: Labels, vocab: Vocabulary,
           frame_seconds: float, min_score: float, times: WordTimes = WORD_TIMES,
           ) -> tuple[AlignedWord, ...]:
    """Words with their character spans from a path of augmented-sequence states."""
    spans: list[list[int]] = [[] for _ in labels.ids]  # frames of each label
    for t, s in enumerate(path.tolist()):
        if s % 2:
            spans[s // 2].append(t)
    chars: list[list[CharSpan]] = [[] for _ in labels.words]
    for i, (label, k) in enumerate(zip(labels.ids, labels.word_of)):
        if k >= 0:
            chars[k].append(CharSpan(vocab.symbols[label - 1],
                                     round(spans[i][0] * frame_seconds, 3),
                                     round((spans[i][-1] + 1) * frame_seconds, 3),
                                     round(float(lp[spans[i], label].mean()), 4)))
    # A word runs from its first character's first frame to its last character's
    # first frame, as the decoders see it (they know where a symbol starts, not how
    # long it is held), before :class:`WordTimes` moves the boundaries.
    firsts = [[spans[i][0] for i, k in enumerate(labels.word_of) if k == w]
              for w in range(len(labels.words))]
    bounds = word_bounds([(f[0], f[-1]) for f in firsts], frame_seconds, times,
                         len(path) * frame_seconds)
    words = []
    for word, parts, (start, end) in zip(labels.words, chars, bounds):
        score = min(c.score for c in parts)
        words.append(AlignedWord(word, start, end, score,
                                 LOW_SCORE_FLAG if score < min_score else None, tuple(parts)))
    return tuple(words)


def align(model: AsrModel, utterances: Iterable[Utterance],
          config: AlignConfig = AlignConfig(), batch_seconds: float = 240.0,
          on_skip: Callable[[Utterance, str], None] | None = None) -> Iterator[Alignment]:
    """Align each utterance's ``text`` to its audio, one by one.

    An utterance without text, with text the vocabulary cannot write, with unreadable
    audio or audio too short for its text is passed to ``on_skip(utt, reason)`` (the
    reason names the recording and what to do) and left out.
    """
    prepared: dict[int, Labels] = {}

    def readable() -> Iterator[Utterance]:
        for utt in utterances:
            try:
                if not utt.text or not utt.text.strip():
                    raise AlignmentError("no text to align; give the transcript")
                prepared[id(utt)] = text_labels(model.vocab, utt.text, config.drop_unknown)
            except AsrkitError as e:
                _skip(on_skip, utt, f"{utt.audio}: {e}")
                continue
            yield utt

    for utt, log_probs in compute_log_probs(model, readable(), batch_seconds, on_skip):
        labels = prepared.pop(id(utt))
        try:
            words, score, windows = align_log_probs(log_probs, labels, model.vocab,
                                                    model.frame_seconds, config)
        except AlignmentError as e:
            _skip(on_skip, utt, f"{utt.audio}: {e}")
            continue
        yield Alignment(utt, " ".join(labels.words), words,
                        round(log_probs.shape[0] * model.frame_seconds, 3), score, windows)


def _skip(on_skip, utt, reason):
    if on_skip is not None:
        on_skip(utt, reason)
