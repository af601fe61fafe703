"""Training data: checked examples, length-bucketed batches, padded audio tensors."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..audio import audio_info, change_speed, load_audio
from ..errors import AsrkitError
from ..manifest import Utterance
from ..text import Vocabulary, ctc_min_frames

log = logging.getLogger("asrkit")

MAX_EXAMPLE_SECONDS = 120.0  # longer utterances are excluded: one alone would fill memory


@dataclass(frozen=True)
class Example:
    utt: Utterance
    labels: tuple[int, ...]
    duration: float  # seconds


@dataclass(frozen=True)
class Skipped:
    """An input left out of a batch job, with the reason (one line)."""

    id: str
    reason: str


@dataclass(frozen=True)
class Batch:
    ids: tuple[str, ...]
    waves: torch.Tensor  # (batch, samples), zero-padded
    wave_lengths: torch.Tensor  # (batch,) samples
    targets: torch.Tensor  # (sum of target lengths,) label ids, concatenated
    target_lengths: torch.Tensor  # (batch,)


def prepare_examples(
    utterances: Sequence[Utterance], vocab: Vocabulary,
    output_frames: Callable[[float], int],
) -> tuple[list[Example], list[Skipped]]:
    """Check each utterance and turn it into an :class:`Example`.

    Left out (and returned as :class:`Skipped`): unreadable audio, no transcript,
    characters outside the vocabulary, transcripts CTC cannot align because the
    model emits fewer frames (``output_frames(duration)``) than the labels need, and
    utterances longer than :data:`MAX_EXAMPLE_SECONDS`.
    """
    examples, skipped = [], []
    for utt in utterances:
        try:
            duration = utt.duration if utt.duration is not None else \
                audio_info(utt.audio).duration - utt.offset
            if utt.text is None:
                raise AsrkitError("no transcript")
            labels = vocab.encode(utt.text)
        except AsrkitError as e:
            skipped.append(Skipped(utt.id, str(e)))
            continue
        if not labels:
            skipped.append(Skipped(utt.id, "empty transcript"))
        elif duration > MAX_EXAMPLE_SECONDS:
            skipped.append(Skipped(utt.id, f"{utt.audio}: {duration:.0f}s is too long to train "
                                   f"on (limit {MAX_EXAMPLE_SECONDS:.0f}s); cut it into "
                                   "segments with offset/duration in the manifest"))
        elif output_frames(duration) < ctc_min_frames(labels):
            skipped.append(Skipped(utt.id, f"transcript of {len(labels)} symbols cannot fit "
                                   f"in {output_frames(duration)} output frames "
                                   f"({duration:.2f}s); CTC cannot align it"))
        else:
            examples.append(Example(utt, tuple(labels), duration))
    return examples, skipped


def bucket_batches(durations: Sequence[float], batch_seconds: float, epoch: int, seed: int,
                   shuffle: bool = True, max_batch_size: int = 256) -> list[list[int]]:
    """Group indices into batches of similar length whose padded size (longest × count)
    stays under ``batch_seconds``. Deterministic for ``(seed, epoch)``."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = np.argsort(np.asarray(durations), kind="stable")
    if shuffle:  # jitter within similar lengths so batches differ between epochs
        noise = torch.rand(len(order), generator=gen).numpy() * 0.1
        order = np.argsort(np.asarray(durations) * (1 + noise), kind="stable")
    batches, current, longest = [], [], 0.0
    for i in order.tolist():
        longest_if = max(longest, durations[i])
        if current and (longest_if * (len(current) + 1) > batch_seconds
                        or len(current) >= max_batch_size):
            batches.append(current)
            current, longest_if = [], durations[i]
        current.append(i)
        longest = longest_if
    if current:
        batches.append(current)
    if shuffle:
        perm = torch.randperm(len(batches), generator=gen).tolist()
        batches = [batches[p] for p in perm]
    return batches


def epoch_batches(durations: Sequence[float], weights: Sequence[float], batch_seconds: float,
                  epoch: int, seed: int, sortagrad: bool = False) -> list[list[int]]:
    """One training epoch's batches of example indices (``durations`` in seconds); with
    corpus ``weights``, each example appears as often as :func:`epoch_draws` says.

    ``sortagrad`` (DeepSpeech 2's SortaGrad) gives the first epoch (``epoch == 0``) in
    order of length, shortest first, unshuffled; later epochs are as without it. The
    order depends only on ``(seed, epoch)``, so a resumed run takes the same batches.
    """
    shuffle = not (sortagrad and epoch == 0)
    if all(w == 1.0 for w in weights):
        return bucket_batches(durations, batch_seconds, epoch, seed, shuffle)
    order = epoch_draws(weights, seed, epoch)
    batches = bucket_batches([durations[i] for i in order], batch_seconds, epoch, seed, shuffle)
    return [[order[j] for j in b] for b in batches]


def shard_batches(batches: Sequence[list[int]], start: int, world_size: int = 1,
                  rank: int = 0, accumulate: int = 1) -> list[list[list[int]]]:
    """The batches process ``rank`` of ``world_size`` trains on, one entry (a list of
    ``accumulate`` batches) per optimiser step, from position ``start`` of an epoch's
    ``batches`` (as :func:`bucket_batches` orders them).

    Step ``k`` uses the global batch ``batches[start + k*g : start + (k+1)*g]`` with
    ``g = world_size * accumulate``, of which each rank takes its own contiguous part:
    the ranks' shares are disjoint, equally long (so no process waits for a step the
    others never take) and depend only on the epoch's batches. The last ``< g`` batches
    of an epoch are left out. Since the position is a count of global batches consumed,
    a run can resume at it with another world size.
    """
    group = world_size * accumulate
    steps = max(0, len(batches) - start) // group
    first = start + rank * accumulate
    return [[list(batches[first + k * group + j]) for j in range(accumulate)]
            for k in range(steps)]


def load_batch(examples: Sequence[Example], gain_normalize: bool, speeds: Sequence[float] = (),
               transform: Callable[[int, np.ndarray], np.ndarray] | None = None,
               ) -> tuple[Batch | None, list[Skipped]]:
    """Read and pad the audio of ``examples``; ``speeds[i]`` perturbs example i, then
    ``transform(i, wave)`` (e.g. channel augmentation) changes its ``(samples,)``.
    Unreadable items are skipped and returned (the batch is None if none is left)."""
    waves, kept, skipped = [], [], []
    for i, ex in enumerate(examples):
        try:
            wave = load_audio(ex.utt.audio, offset=ex.utt.offset, duration=ex.utt.duration,
                              normalize=gain_normalize)
        except AsrkitError as e:
            skipped.append(Skipped(ex.utt.id, str(e)))
            continue
        if speeds and speeds[i] != 1.0:
            wave = change_speed(wave, speeds[i])
        if transform is not None:
            wave = transform(i, wave)
        waves.append(torch.from_numpy(wave))
        kept.append(ex)
    if not kept:
        return None, skipped
    lengths = torch.tensor([len(w) for w in waves])
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    targets = torch.tensor([t for ex in kept for t in ex.labels], dtype=torch.long)
    target_lengths = torch.tensor([len(ex.labels) for ex in kept])
    return Batch(tuple(ex.utt.id for ex in kept), padded, lengths, targets,
                 target_lengths), skipped


def total_hours(examples: Sequence[Example]) -> float:
    return math.fsum(ex.duration for ex in examples) / 3600


@dataclass(frozen=True)
class Corpus:
    """A named set of utterances trained or validated on together with others.

    ``weight`` is how often each of its utterances is drawn per epoch (2: twice as often
    as an utterance of a weight-1 corpus), whatever the corpus's size."""

    name: str
    utterances: tuple[Utterance, ...]
    weight: float = 1.0

    def __post_init__(self):
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise AsrkitError(f"corpus {self.name}: weight must be a positive number, "
                              f"not {self.weight}")


def epoch_draws(weights: Sequence[float], seed: int, epoch: int) -> list[int]:
    """The example indices one epoch trains on: example ``i`` appears ``floor(w_i)``
    times and once more with probability ``frac(w_i)``, so its expected count is
    exactly ``weights[i]``. Deterministic for ``(seed, epoch)``."""
    gen = torch.Generator().manual_seed(seed * 100_019 + epoch + 7)
    w = torch.as_tensor(weights, dtype=torch.float64)
    counts = torch.floor(w).long() + (torch.rand(len(w), generator=gen, dtype=torch.float64)
                                      < w - torch.floor(w)).long()
    return torch.repeat_interleave(torch.arange(len(w)), counts).tolist()
