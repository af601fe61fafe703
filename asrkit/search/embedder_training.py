"""Training the sequence autoencoder of :mod:`asrkit.search.embedding`.

Material: recordings, cut into the same candidate windows the index uses
(:mod:`asrkit.search.segments`), or labelled single-word recordings. Each training example is
a *pair of views*: the same window seen at two playback speeds with slightly moved
boundaries (or, for labelled words, two recordings of the same word). The loss is

- reconstruction (Audio Word2Vec): the decoder rebuilds the clean view from the
  embedding of a corrupted one (Gaussian noise + SpecAugment masks: denoising);
- optionally contrastive (SupCon, Khosla et al. 2020): the two views' embeddings must
  be nearer to each other than to the other examples in the batch. Speed changes move
  formants and pitch the way a different speaker does, so this pulls towards
  speaker-invariant, word-discriminative vectors without any transcript.

With ``channel_copies`` each recording is also heard through that many channels drawn
from the ``augment`` section's effects (noise at a random SNR, simulated rooms, 8 kHz
or low-pass), made once before training; a view is any of the clean speeds or these
copies, so the two views of a pair often come through different channels and the
contrastive term asks for vectors the channel does not move.

Every epoch is reproducible from the seed, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from ..audio import change_speed, load_audio
from ..augment import ChannelAugmenter
from .embedding import Embedder, EmbedderConfig, save_embedder
from ..errors import AudioError, ConfigError, ModelFileError
from ..features import AugmentConfig, RunningStats, frame_mask, spec_augment
from ..io import atomic_open
from ..manifest import Utterance
from .segments import TRAINING_WINDOWS, SegmentConfig, candidate_segments, trim_silence

CHECKPOINT_FORMAT = "asrkit-embedder-checkpoint"
CHECKPOINT_VERSION = 1
GRAD_CLIP = 5.0
MIN_VIEW_FRAMES = 5  # views shorter than this carry too little to learn from
CHANNEL_SEED = 0xC4A  # channel copies draw from (seed, this, recording, copy)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 64  # pairs per step (2 × this many segments)
    learning_rate: float = 2e-3
    windows_per_epoch: int = 4096  # pairs drawn each epoch
    speed_factors: tuple[float, ...] = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15)
    jitter: float = 0.1  # seconds each view's edges may move (index windows sit 0.1 s apart)
    noise_std: float = 0.3  # denoising: Gaussian noise, in normalised feature units
    # SpecAugment on the encoder's input; the channel effects act only with channel_copies
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(
        freq_masks=1, freq_mask_width=6, time_masks=1, time_mask_width=10,
        speed_factors=(), noise_prob=0.7, noise_snr_db=(0.0, 20.0), reverb_prob=0.3,
        narrowband_prob=0.3))
    channel_copies: int = 0  # channel-corrupted copies of each recording (see above)
    reconstruction_weight: float = 1.0
    contrastive_weight: float = 1.0  # 0 = plain (denoising) autoencoder
    word_share: float = 0.25  # share of each batch from labelled words, when mixed
    temperature: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 2 or self.windows_per_epoch < self.batch_size:
            raise ConfigError("training needs epochs >= 1, batch_size >= 2 and "
                              "windows_per_epoch >= batch_size")
        if not self.speed_factors or min(self.speed_factors) <= 0:
            raise ConfigError("speed_factors must be positive numbers")
        if self.channel_copies < 0:
            raise ConfigError(f"channel_copies must not be negative, not {self.channel_copies}")
        if self.reconstruction_weight <= 0 and self.contrastive_weight <= 0:
            raise ConfigError("at least one of the reconstruction and contrastive "
                              "losses needs a positive weight")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["speed_factors"] = tuple(d["speed_factors"])
        aug = dict(d["augment"])
        aug["speed_factors"] = tuple(aug["speed_factors"])
        d["augment"] = AugmentConfig(**aug)
        return cls(**d)


@dataclass(frozen=True)
class TrainProgress:
    """Reported after every step and at the end of every epoch."""

    epoch: int  # 1-based
    epochs: int
    step: int  # within the epoch, 1-based
    steps: int
    loss: float  # running mean over the epoch so far
    reconstruction: float
    contrastive: float
    epoch_done: bool = False

    @property
    def done(self) -> int:  # the progress-report convention: done of total, this epoch
        return self.step

    @property
    def total(self) -> int:
        return self.steps


@dataclass(frozen=True)
class Window:
    """One training segment: a span of a source recording and its word group."""

    source: int
    start: float  # seconds, at speed 1
    end: float
    group: int  # windows of one group are the same word


class TrainingMaterial:
    """Frontend frames of every recording at every speed, plus the windows to sample.

    ``recordings`` are cut into candidate windows (each its own group); ``words`` are
    single-word recordings whose ``text`` is the word (one group per word)."""

    def __init__(self, embedder: Embedder, recordings: Sequence[Utterance],
                 words: Sequence[Utterance], config: TrainConfig,
                 segment_config: SegmentConfig,
                 on_skip: Callable[[str, str], None] | None = None):
        self.fps = embedder.frames_per_second
        self.speeds = config.speed_factors
        # [recording][variant] → (frames, feats): every speed, then the channel copies
        self.feats: list[list[torch.Tensor]] = []
        self.rates: list[list[float]] = []  # [recording][variant] → its speed factor
        self.windows: list[Window] = []
        channel = ChannelAugmenter(config.augment, recordings or words, config.seed) \
            if config.channel_copies else None
        labels: dict[str, int] = {}
        for utt, labelled in [(u, False) for u in recordings] + [(u, True) for u in words]:
            group = labels.setdefault(_label(utt), len(labels)) if labelled else -1
            try:
                wave = load_audio(utt.audio, offset=utt.offset, duration=utt.duration)
            except AudioError as e:
                if on_skip:
                    on_skip(utt.id, str(e))
                continue
            wave = trim_silence(wave, segment_config) if labelled else wave
            index = len(self.feats)
            rates = list(self.speeds)
            variants = [change_speed(wave, f) for f in rates]
            for copy in range(config.channel_copies):
                rng = np.random.default_rng([config.seed, CHANNEL_SEED, index, copy])
                rates.append(self.speeds[int(rng.integers(len(self.speeds)))])
                variants.append(channel(change_speed(wave, rates[-1]), rng))
            self.feats.append([embedder.features(v) for v in variants])
            self.rates.append(rates)
            if labelled:
                duration = len(wave) / segment_config.sample_rate
                self.windows.append(Window(index, 0.0, duration, group))
            else:
                self.windows += [Window(index, span.start, span.end, -1)
                                 for span in candidate_segments(wave, segment_config)]
        if not self.windows:
            raise ConfigError("no usable training audio: every recording was skipped or silent")
        # Unlabelled windows each form their own group, numbered after the words.
        self.windows = [w if w.group >= 0 else replace(w, group=len(labels) + i)
                        for i, w in enumerate(self.windows)]
        self.by_group: dict[int, list[int]] = {}
        for i, w in enumerate(self.windows):
            self.by_group.setdefault(w.group, []).append(i)
        self.word_windows = [i for i, w in enumerate(self.windows) if w.group < len(labels)]
        self.other_windows = [i for i, w in enumerate(self.windows) if w.group >= len(labels)]

    def feature_stats(self) -> RunningStats:
        """Statistics of segment-mean-removed frames at normal speed (for the normaliser)."""
        stats = None
        for per_speed in self.feats:
            f = per_speed[self.speeds.index(1.0)] if 1.0 in self.speeds else per_speed[0]
            stats = stats or RunningStats(f.shape[1])
            stats.update(f - f.mean(0))
        return stats

    def view(self, window: Window, gen: torch.Generator, jitter: float) -> torch.Tensor:
        """Frames ``(frames, feats)`` of ``window`` in a random variant (speed or
        channel copy) with moved edges."""
        rates = self.rates[window.source]
        k = int(torch.randint(len(rates), (1,), generator=gen))
        feats = self.feats[window.source][k]
        move = (torch.rand(2, generator=gen) * 2 - 1) * jitter
        start = (window.start + float(move[0])) / rates[k]
        end = (window.end + float(move[1])) / rates[k]
        a = min(max(int(round(start * self.fps)), 0), max(len(feats) - MIN_VIEW_FRAMES, 0))
        b = max(min(int(round(end * self.fps)), len(feats)), a + MIN_VIEW_FRAMES)
        return feats[a:b]

    def pair(self, i: int, gen: torch.Generator) -> tuple[int, int]:
        """Window ``i`` and a partner of the same group (itself if alone)."""
        members = self.by_group[self.windows[i].group]
        if len(members) == 1:
            return i, i
        j = members[int(torch.randint(len(members) - 1, (1,), generator=gen))]
        return i, (j if j != i else members[-1])


def train_embedder(
    out: str | os.PathLike, recordings: Sequence[Utterance] = (),
    words: Sequence[Utterance] = (), config: TrainConfig = TrainConfig(),
    embedder_config: EmbedderConfig = EmbedderConfig(),
    segment_config: SegmentConfig = TRAINING_WINDOWS, resume: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> Embedder:
    """Train an embedder and write it to ``out``.

    ``recordings`` (unlabelled) are cut into candidate windows; ``words`` are single-word
    recordings with the word as ``text``. Either may be empty, not both. A checkpoint
    is written atomically to ``<out>.ckpt`` after every epoch; ``resume`` continues
    from it. Unreadable audio is skipped and reported through ``on_skip(id, reason)``.
    """
    torch.manual_seed(config.seed)
    embedder = Embedder(embedder_config)
    material = TrainingMaterial(embedder, recordings, words, config, segment_config, on_skip)
    embedder.autoencoder.normalizer.fit(material.feature_stats())
    optimizer = torch.optim.Adam(embedder.parameters(), lr=config.learning_rate)
    checkpoint = checkpoint_path(out)
    history: list[dict] = []
    first_epoch = 1
    if resume and checkpoint.exists():
        first_epoch, history = _load_checkpoint(checkpoint, embedder, optimizer, config)
    for epoch in range(first_epoch, config.epochs + 1):
        scheduler_step(optimizer, config, epoch)
        stats = _train_epoch(embedder, material, optimizer, config, epoch, progress)
        history.append({"epoch": epoch, **stats})
        _save_checkpoint(checkpoint, embedder, optimizer, config, epoch, history)
    info = {"train_config": config.to_dict(), "segment_config": asdict(segment_config),
            "recordings": len(recordings), "words": len(words),
            "windows": len(material.windows), "history": history}
    embedder.info = info
    save_embedder(out, embedder)
    return embedder.eval()


def scheduler_step(optimizer: torch.optim.Optimizer, config: TrainConfig, epoch: int) -> None:
    """Cosine learning-rate decay by epoch (a function of the epoch, so resuming is exact)."""
    lr = config.learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / config.epochs))
    for group in optimizer.param_groups:
        group["lr"] = lr


def _train_epoch(embedder: Embedder, material: TrainingMaterial, optimizer, config: TrainConfig,
                 epoch: int, progress) -> dict:
    gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    embedder.train()
    draws = _epoch_draws(material, config, gen)
    steps = len(draws) // config.batch_size
    totals = np.zeros(3)
    for step in range(steps):
        batch = draws[step * config.batch_size:(step + 1) * config.batch_size]
        losses = _train_step(embedder, material, optimizer, config, batch, gen)
        totals += losses
        if progress:
            mean = totals / (step + 1)
            progress(TrainProgress(epoch, config.epochs, step + 1, steps, *mean.tolist(),
                                   epoch_done=step + 1 == steps))
    mean = totals / max(steps, 1)
    return {"loss": float(mean[0]), "reconstruction": float(mean[1]),
            "contrastive": float(mean[2])}


def _epoch_draws(material: TrainingMaterial, config: TrainConfig, gen: torch.Generator,
                 ) -> list[int]:
    """Window indices for one epoch; each batch holds ``word_share`` labelled words
    when there are both words and recordings."""
    words, other = material.word_windows, material.other_windows
    per_batch = config.batch_size
    n_words = per_batch if not other else 0 if not words else round(per_batch * config.word_share)
    steps = config.windows_per_epoch // per_batch

    def stream(pool: list[int], count: int) -> list[int]:
        if count == 0:
            return []
        order = torch.randperm(len(pool), generator=gen).repeat(math.ceil(count / len(pool)))
        return [pool[i] for i in order[:count].tolist()]

    w, o = stream(words, steps * n_words), stream(other, steps * (per_batch - n_words))
    draws = []
    for b in range(steps):
        draws += w[b * n_words:(b + 1) * n_words]
        draws += o[b * (per_batch - n_words):(b + 1) * (per_batch - n_words)]
    return draws


def _train_step(embedder: Embedder, material: TrainingMaterial, optimizer, config: TrainConfig,
                batch: list[int], gen: torch.Generator) -> np.ndarray:
    pairs = [material.pair(i, gen) for i in batch]
    views = [material.view(material.windows[i], gen, config.jitter) for i, _ in pairs]
    views += [material.view(material.windows[j], gen, config.jitter) for _, j in pairs]
    groups = torch.tensor([material.windows[i].group for i, _ in pairs] * 2)
    feats = pad_sequence(views, batch_first=True)  # (2 * batch, frames, feats)
    lengths = torch.tensor([len(v) for v in views])
    ae = embedder.autoencoder
    clean = ae.normalize(feats, lengths)
    noisy = clean + config.noise_std * torch.randn(clean.shape, generator=gen)
    if config.augment.enabled:
        noisy = spec_augment(noisy, lengths, config.augment, generator=gen)
    target, step_lengths = ae.stack(clean, lengths)
    inputs, _ = ae.stack(noisy * frame_mask(noisy, lengths).unsqueeze(-1).float(), lengths)
    emb = ae.encode(inputs, step_lengths)  # (2 * batch, dim)
    recon = _reconstruction_loss(ae.decode(emb, step_lengths, target.shape[1]), target,
                                 step_lengths)
    contrast = supervised_contrastive_loss(emb, groups, config.temperature)
    loss = config.reconstruction_weight * recon + config.contrastive_weight * contrast
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(embedder.parameters(), GRAD_CLIP)
    optimizer.step()
    return np.array([loss.item(), recon.item(), contrast.item()])


def supervised_contrastive_loss(emb: torch.Tensor, groups: torch.Tensor, temperature: float,
                                ) -> torch.Tensor:
    """SupCon: ``emb (n, dim)``, ``groups (n,)``; every other member of an anchor's group
    is a positive, everything else a negative (cosine similarity / temperature)."""
    z = nn.functional.normalize(emb, dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool)
    logits = logits.masked_fill(self_mask, -1e9)
    positives = (groups.unsqueeze(0) == groups.unsqueeze(1)) & ~self_mask
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per_anchor = (log_prob * positives).sum(1) / positives.sum(1).clamp(min=1)
    return -per_anchor[positives.any(1)].mean()


def _reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor,
                         ) -> torch.Tensor:
    """Mean squared error over real (unpadded) steps of ``(batch, steps, step_dim)``."""
    mask = frame_mask(target, lengths).unsqueeze(-1).float()  # (batch, steps, 1)
    return (((pred - target) ** 2) * mask).sum() / (mask.sum() * target.shape[2])


def _label(utt: Utterance) -> str:
    if not utt.text or len(utt.text.split()) != 1:
        raise ConfigError(f"{utt.id}: labelled training needs exactly one word in 'text', "
                          f"got {utt.text!r}")
    return utt.text.strip().upper()


def checkpoint_path(out: str | os.PathLike) -> Path:
    return Path(f"{out}.ckpt")


def _save_checkpoint(path: Path, embedder: Embedder, optimizer, config: TrainConfig, epoch: int,
                     history: list[dict]) -> None:
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
               "embedder_config": embedder.config.to_dict(), "train_config": config.to_dict(),
               "state_dict": embedder.state_dict(), "optimizer": optimizer.state_dict(),
               "history": history}
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)


def _load_checkpoint(path: Path, embedder: Embedder, optimizer, config: TrainConfig,
                     ) -> tuple[int, list[dict]]:
    """Restore weights and optimizer; return (next epoch, history so far)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not an embedder training checkpoint")
        if payload["embedder_config"] != embedder.config.to_dict():
            raise ConfigError(f"{path}: the checkpoint's model settings differ from this "
                              "run's; resume with the same settings or start afresh")
        embedder.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
    except ConfigError:
        raise
    except Exception as e:
        raise ModelFileError(f"{path}: cannot resume from this checkpoint "
                             f"({str(e).splitlines()[0][:200]}); delete it to start afresh") from e
    saved = TrainConfig.from_dict(payload["train_config"])
    if replace(saved, epochs=config.epochs) != config:
        raise ConfigError(f"{path}: the checkpoint was trained with other settings; only "
                          "--epochs may change when resuming")
    return int(payload["epoch"]) + 1, list(payload["history"])
