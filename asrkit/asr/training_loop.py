"""The training loop behind :func:`asrkit.asr.training.train`: optimiser, schedule,
mixed precision, gradient accumulation and data parallelism, per-epoch validation,
early stopping and checkpoints (see :mod:`asrkit.asr.training` for the files and the
resumability contract), and the progress hooks it reports through."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..audio import normalize_gain
from ..augment import ChannelAugmenter
from .checkpoint import model_record, save_record
from .finetune import freeze_lower
from .config import ExperimentConfig
from .dataset import Example, epoch_batches, load_batch, shard_batches
from .distributed import (Cluster, all_reduce_sum, autocast, data_parallel, grad_scaler,
                          merge_over_processes)
from ..errors import AsrkitError, ConfigError
from .evaluation import validate
from ..features import spec_augment
from ..io import atomic_write_text
from .model import AsrModel

log = logging.getLogger("asrkit")


@dataclass(frozen=True)
class StepInfo:
    epoch: int
    step: int  # global optimiser step, from 1
    batch: int  # optimiser step within the epoch, from 1
    batches: int  # optimiser steps in this epoch
    loss: float  # of this process's batches
    frames_per_second: float  # feature frames through the model (all processes), smoothed
    lr: float

    @property
    def done(self) -> int:  # the progress-report convention: done of total, this epoch
        return self.batch

    @property
    def total(self) -> int:
        return self.batches


@dataclass(frozen=True)
class EpochInfo:
    epoch: int
    train_loss: float
    valid_loss: float
    valid_cer: float
    valid_wer: float
    improved: bool
    seconds: float
    corpora: dict = field(default_factory=dict)  # name → valid_loss/cer/wer, if several


@dataclass
class TrainCallbacks:
    """Optional hooks for progress display; the library itself never prints."""

    on_start: Callable[[dict], None] | None = None  # summary of the run
    on_step: Callable[[StepInfo], None] | None = None
    on_epoch: Callable[[EpochInfo], None] | None = None


@dataclass
class LoopState:
    """Everything that changes during training, saved in ``last.pt`` for resuming."""

    epoch: int = 0
    batch: int = 0  # batches of ``epoch`` already done
    step: int = 0
    best_wer: float = math.inf
    best_loss: float = math.inf  # validation loss of the best epoch (breaks ties)
    best_cer: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    stopped: bool = False
    # Finite training losses of the current epoch summed over all processes, for the
    # batches done before the last checkpoint: a resumed epoch's loss covers it whole.
    loss_sum: float = 0.0
    loss_count: int = 0
    # Utterances left out of a batch because their audio could not be used (e.g.
    # NaN samples): id → reason, kept over resumes for the final report.
    unusable: dict = field(default_factory=dict)


def write_metrics(out: Path, history: list[dict]) -> None:
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def _better(select_by: str, new: tuple[float, float, float],
            best: tuple[float, float, float]) -> bool:
    """Whether validation figures ``new`` (WER, CER, loss) beat ``best`` by ``select_by``.
    An equal WER or CER (e.g. 100 % while CTC still emits only blanks) with a lower loss
    is progress too: otherwise early stopping ends a run that is learning."""
    if select_by == "loss":
        return new[2] < best[2]
    i = 0 if select_by == "wer" else 1
    return new[i] < best[i] - 1e-9 or (new[i] <= best[i] + 1e-9 and new[2] < best[2])


class _Network(nn.Module):
    """The trainable part of an :class:`AsrModel` (normaliser → recurrent stack → output) as one
    ``forward``, the call DistributedDataParallel hooks into."""

    def __init__(self, model: AsrModel):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, augment=None):
        """``feats (batch, frames, feats)``, ``lengths (batch,)`` → log-probs, lengths."""
        return self.model.forward_features(feats, lengths, augment)


def _batch_seed(seed: int, epoch: int, index: int) -> int:
    """The random seed of batch ``index`` of ``epoch``: the same whichever process
    takes the batch, and after a resume."""
    return ((seed * 1_000_003 + epoch) * 1_000_033 + index) % 2 ** 63


class TrainingLoop:
    """The training loop proper. Its state is small and fully checkpointed."""

    def __init__(self, model: AsrModel, config: ExperimentConfig, examples, out: Path,
                 state: LoopState, cb: TrainCallbacks, cluster: Cluster, corpora=({}, {})):
        self.model, self.config, self.cfg = model, config, config.train
        (self.train_ex, self.valid_ex), self.out, self.state, self.cb = examples, out, state, cb
        self.cluster, self.device = cluster, next(model.parameters()).device
        self.group = cluster.world_size * self.cfg.accumulate  # batches per optimiser step
        self.durations = [e.duration for e in self.train_ex]
        weights, names = corpora  # by id() of the Utterance objects (ids may repeat)
        self.weights = [weights.get(id(e.utt), 1.0) for e in self.train_ex]
        groups: dict[str, list[Example]] = {}
        for e in self.valid_ex:
            groups.setdefault(names.get(id(e.utt), ""), []).append(e)
        self.valid_groups = groups if len(groups) > 1 else {}
        batches = len(self._epoch_batches(0))
        self.steps_per_epoch = batches // self.group
        if self.steps_per_epoch == 0:
            raise ConfigError(f"an epoch holds {batches} batches, fewer than one global batch "
                              f"({cluster.world_size} processes × train.accumulate "
                              f"{self.cfg.accumulate}); lower train.batch_seconds or use "
                              "fewer processes")
        self.total_steps = max(1, self.steps_per_epoch * self.cfg.epochs)
        self.net = data_parallel(_Network(model), cluster, self.device)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr,
                                           weight_decay=self.cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = grad_scaler(self.cfg.precision, self.device)
        if not 0 <= self.cfg.ema < 1:
            raise ConfigError(f"train.ema must be in [0, 1), not {self.cfg.ema}")
        # The same on every process: each averages the same (all-reduced) weights.
        self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema),
                                 use_buffers=True) if self.cfg.ema else None
        self._fps = 0.0
        self.augmenter = ChannelAugmenter(
            config.augment, [e.utt for e in self.train_ex], self.cfg.seed) \
            if config.augment.channel else None
        self.losses: list[float] = []  # this process's step losses since the last reset

    @property
    def evaluated(self) -> AsrModel:
        """The model that is validated and saved as ``best.pt``."""
        return self.ema.module if self.ema is not None else self.model

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to ``final_lr_ratio``. Warm-up is capped at
        a tenth of the run, so small corpora do not spend half of it warming up."""
        warmup = max(1, min(self.cfg.warmup_steps, self.total_steps // 10))
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        r = self.cfg.final_lr_ratio
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress))

    def restore(self, training: dict) -> None:
        self.optimizer.load_state_dict(training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        if training.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(training["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(training["ema"])

    def run(self) -> None:
        s, c = self.state, self.cluster
        t0 = time.monotonic() - s.seconds
        while s.epoch < self.cfg.epochs and not s.stopped:
            batches = self._epoch_batches(s.epoch)
            mine = shard_batches(batches, s.batch, c.world_size, c.rank, self.cfg.accumulate)
            for step_batches in mine:
                first = s.batch + c.rank * self.cfg.accumulate  # position of our first batch
                self.losses.append(self._step(step_batches, first, len(batches) // self.group))
                s.batch += self.group
                s.step += 1
                s.seconds = time.monotonic() - t0
                if self.cfg.max_steps and s.step >= self.cfg.max_steps:
                    self._save()
                    return
                if s.step % self.cfg.checkpoint_every == 0:
                    self._save()
            self._end_epoch(time.monotonic() - t0)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        return epoch_batches(self.durations, self.weights, self.cfg.batch_seconds, epoch,
                             self.cfg.seed, self.cfg.sortagrad)

    def _step(self, step_batches: list[list[int]], first: int, n_steps: int) -> float:
        """One optimiser step over this process's ``step_batches`` (epoch positions
        ``first``, ``first + 1``...); gradients of all processes are averaged."""
        s, cfg = self.state, self.cfg
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        t, losses, frames = time.monotonic(), [], 0
        for j, indices in enumerate(step_batches):
            # Only the last backward pass of a step exchanges gradients.
            last = j == len(step_batches) - 1 or not self.cluster.distributed
            with contextlib.nullcontext() if last else self.net.no_sync():
                loss, n = self._backward(indices, first + j)
            losses.append(loss)
            frames += n
        if s.epoch < cfg.freeze_epochs:
            freeze_lower(self.model)
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        # The averaged gradients are the same on every process, so all stop together
        # (with fp16, overflowing gradients are normal until the loss scale adapts).
        if self.scaler.is_enabled() and self.scaler.get_scale() < 1.0 or \
                not self.scaler.is_enabled() and not torch.isfinite(norm):
            raise AsrkitError(f"training diverged at step {s.step + 1} (gradient norm "
                              f"{float(norm)}, loss {', '.join(map(str, losses))}); "
                              "lower train.lr or resume from the last checkpoint")
        finite = [x for x in losses if math.isfinite(x)]
        loss = sum(finite) / len(finite) if finite else float("nan")
        self.scaler.step(self.optimizer)  # skipped when fp16 gradients overflowed
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        fps = frames * self.cluster.world_size / max(time.monotonic() - t, 1e-9)
        self._fps = fps if self._fps == 0 else 0.9 * self._fps + 0.1 * fps
        if self.cb.on_step:
            self.cb.on_step(StepInfo(s.epoch + 1, s.step + 1, s.batch // self.group + 1,
                                     n_steps, loss, self._fps, self.scheduler.get_last_lr()[0]))
        return loss

    def _backward(self, indices: list[int], position: int) -> tuple[float, int]:
        """Forward and backward pass over one batch; its loss and feature frames."""
        cfg, model, dev = self.cfg, self.model, self.device
        seed = _batch_seed(cfg.seed, self.state.epoch, position)
        generator = torch.Generator().manual_seed(seed)  # augmentation
        torch.manual_seed(seed)  # dropout
        examples = [self.train_ex[i] for i in indices]
        factors = self.config.augment.speed_factors if cfg.speed_perturb else (1.0,)
        picks = torch.randint(len(factors), (len(examples),), generator=generator)
        channel = None
        if self.augmenter is not None:
            def channel(i: int, wave: np.ndarray) -> np.ndarray:
                # Each utterance its own stream, as in a batch of one; the result is
                # gain-normalised as a recording made that way would be when loaded.
                out = self.augmenter(wave, np.random.default_rng([seed, i]))
                return normalize_gain(out) if model.feature_config.gain_normalize else out
        batch, skipped = load_batch(examples, model.feature_config.gain_normalize,
                                    [factors[int(p)] for p in picks], channel)
        for sk in skipped:
            log.warning("skipped %s: %s", sk.id, sk.reason)
            self.state.unusable[sk.id] = sk.reason
        if batch is None:
            self._idle_backward()
            return float("nan"), 0
        feats, lengths = model.features(batch.waves.to(dev), batch.wave_lengths.to(dev))
        augment = (lambda x, n: spec_augment(x, n, self.config.augment, generator)) \
            if cfg.spec_augment else None
        with autocast(cfg.precision, dev):
            log_probs, out_lengths = self.net(feats, lengths, augment)
        loss = F.ctc_loss(log_probs.float().transpose(0, 1), batch.targets.to(dev),
                          out_lengths, batch.target_lengths.to(dev), blank=0, reduction="mean")
        self.scaler.scale(loss / cfg.accumulate).backward()
        return loss.item(), int(lengths.sum())

    def _idle_backward(self) -> None:
        """A pass that adds nothing to the gradients, for a batch with no readable audio:
        this process must still take part in the averaging, or the others wait forever."""
        frames = self.model.config.subsample
        feats = torch.zeros(1, frames, self.model.feature_config.dim, device=self.device)
        log_probs, _ = self.net(feats, torch.tensor([frames], device=self.device))
        (log_probs.sum() * 0.0).backward()

    def _epoch_loss_sums(self) -> tuple[float, int]:
        """Finite step losses of this epoch so far, summed over processes and resumes."""
        finite = [x for x in self.losses if math.isfinite(x)]
        total, count = all_reduce_sum([sum(finite), len(finite)], self.cluster, self.device)
        return self.state.loss_sum + total, self.state.loss_count + int(count)

    def _end_epoch(self, elapsed: float) -> None:
        s = self.state
        valid_loss, cer, wer = validate(self.evaluated, self.valid_ex, self.cfg.batch_seconds,
                                        self.cluster)
        improved = _better(self.cfg.select_by, (wer, cer, valid_loss),
                           (s.best_wer, s.best_cer, s.best_loss))
        total, count = self._epoch_loss_sums()
        s.loss_sum, s.loss_count, self.losses = 0.0, 0, []
        info = EpochInfo(s.epoch + 1, total / max(count, 1), valid_loss, cer, wer, improved,
                         elapsed, self._validate_corpora())
        row = {"epoch": info.epoch, "step": s.step, "train_loss": info.train_loss,
               "valid_loss": valid_loss, "valid_cer": cer, "valid_wer": wer,
               "seconds": round(elapsed, 1)}
        if info.corpora:
            row["corpora"] = info.corpora
        self._gather_unusable()
        if self.state.unusable:  # recordings left out since the start, on any process
            row["unusable"] = len(self.state.unusable)
        s.history.append(row)
        if improved:
            s.best_wer, s.best_cer, s.best_loss = wer, cer, valid_loss
            s.best_epoch, s.bad_epochs = info.epoch, 0
            if self.cluster.is_main:
                save_record(self.out / "best.pt", model_record(self.evaluated, self._info()))
        else:
            s.bad_epochs += 1
        s.epoch += 1
        s.batch = 0
        s.stopped = s.bad_epochs >= self.cfg.patience
        self._save()
        if self.cb.on_epoch:
            self.cb.on_epoch(info)

    def _gather_unusable(self) -> None:
        """Every process's unusable audio, on every process (a collective call): rank 0
        saves it in ``last.pt`` and lists it at the end."""
        self.state.unusable = merge_over_processes(self.state.unusable, self.cluster)

    def _validate_corpora(self) -> dict:
        """Validation loss, CER and WER of each validation corpus (when there are several;
        the pooled figures decide early stopping)."""
        out = {}
        for name, examples in self.valid_groups.items():
            loss, cer, wer = validate(self.evaluated, examples, self.cfg.batch_seconds,
                                      self.cluster)
            out[name] = {"valid_loss": loss, "valid_cer": cer, "valid_wer": wer}
        return out

    def _info(self) -> dict:
        s = self.state
        return {"trained_steps": s.step, "epochs": s.epoch + 1,
                "train_hours": round(sum(self.durations) / 3600, 3),
                "train_utterances": len(self.train_ex), "valid_wer": s.best_wer,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def _save(self) -> None:
        total, count = self._epoch_loss_sums()  # every process takes part in the sum
        self._gather_unusable()
        if not self.cluster.is_main:
            return
        record = model_record(self.model, self._info())
        state = {**vars(self.state), "loss_sum": total, "loss_count": count}
        record["training"] = {
            "config": self.config.to_dict(), "state": state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
        }
        if self.ema is not None:
            record["training"]["ema"] = self.ema.state_dict()
        save_record(self.out / "last.pt", record)
        write_metrics(self.out, self.state.history)
