"""Training a CTC recogniser: resumable, early-stopped, with atomic checkpoints.

``out_dir`` receives ``last.pt`` (model + optimiser/scheduler/loss-scaler state +
position in the data, every ``checkpoint_every`` steps and every epoch), ``best.pt`` (the model
with the lowest validation WER), ``config.yaml`` (the resolved configuration) and
``metrics.jsonl`` (one line per epoch), and at the end ``curve.png`` (loss and validation
error per epoch). Checkpoints hold no random-generator state:
each batch's randomness is seeded from ``train.seed`` and the batch's position (see
:func:`asrkit.asr.training_loop._batch_seed`), so a resumed run draws exactly what an
unbroken run would.

Under ``torchrun`` every process calls :func:`train` with the same arguments; they
train one model together (DistributedDataParallel, see :mod:`asrkit.asr.distributed`).
Each optimiser step takes a global batch of ``processes × train.accumulate`` bucketed
batches, each process its own part, and averages the gradients of all of them: the
weights are those of one process taking the same global batch with ``accumulate``
raised to match. Randomness (augmentation, dropout) is seeded by the batch's position
in the epoch, not by the process, for the same reason. Rank 0 alone writes files and
reports progress; validation is shared out and its sums combined. A checkpoint holds
the position in the epoch as a count of batches, so a run may resume with another
number of processes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

from .checkpoint import load_model, load_record, model_from_record
from .finetune import init_config, init_from
from .config import ExperimentConfig, config_from_dict
from .dataset import Corpus, Example, Skipped, load_batch, prepare_examples
from .distributed import Cluster, check_precision, detect_cluster, process_group, select_device
from ..errors import AsrkitError, ConfigError
from ..features import RunningStats
from ..io import atomic_write_text, folder_lock
from ..manifest import Utterance
from ..plots import plot_training_curve
from .model import AsrModel
from ..text import Vocabulary
from .training_loop import (EpochInfo, LoopState, StepInfo, TrainCallbacks, TrainingLoop,
                            write_metrics)

__all__ = ["EpochInfo", "StepInfo", "TrainCallbacks", "TrainResult", "train"]

log = logging.getLogger("asrkit")

STATS_MAX_UTTERANCES = 2000  # normalisation statistics come from at most this many


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    best_wer: float
    best_epoch: int
    epochs_run: int
    steps: int
    skipped: tuple[Skipped, ...]
    seconds: float


def train(train_utts: Sequence[Utterance], valid_utts: Sequence[Utterance],
          out_dir: str | os.PathLike, config: ExperimentConfig = ExperimentConfig(),
          resume: bool = False, callbacks: TrainCallbacks | None = None,
          init: str | os.PathLike | AsrModel | None = None) -> TrainResult:
    """Train (or, with ``resume``, continue training) a model; see the module docs.

    ``init`` (a model, or a model file, run folder or bundled name) starts a new run
    from trained weights (see :mod:`asrkit.asr.finetune`); a resumed run ignores it,
    its checkpoint holds the weights already. ``train_utts`` and ``valid_utts`` may be
    lists of :class:`~asrkit.asr.dataset.Corpus`: training then draws each corpus's
    utterances by its weight, and validation is reported per corpus too."""
    train_utts, weights = _flatten(train_utts)
    valid_utts, valid_names = _flatten(valid_utts, names=True)
    cluster = detect_cluster()
    device = select_device(cluster)
    cb = (callbacks or TrainCallbacks()) if cluster.is_main else TrainCallbacks()
    torch.set_num_threads(config.train.threads or cluster.cpu_threads())
    out = Path(out_dir)
    with process_group(cluster, device), contextlib.ExitStack() as held:
        lock = _RunLock(out, held) if cluster.is_main else None
        return _train(train_utts, valid_utts, out, config, resume, cb, cluster,
                      device, init, (weights, valid_names), lock)


class _RunLock:
    """The run folder is locked while a run writes to it: a second ``train`` into the
    same folder would interleave its checkpoints and metrics with the first one's. A
    folder that exists is locked at once; a new one once it is made (``take``)."""

    def __init__(self, out: Path, stack: contextlib.ExitStack):
        self.out, self.stack, self.held = out, stack, False
        if out.is_dir():
            self.take()

    def take(self) -> None:
        if not self.held:
            self.stack.enter_context(folder_lock(
                self.out, "another training run", "wait for it to end, or choose another --out"))
            self.held = True


def _train(train_utts, valid_utts, out: Path, config: ExperimentConfig, resume: bool,
           cb: TrainCallbacks, cluster: Cluster, device: torch.device,
           init=None, corpora=({}, {}), lock: _RunLock | None = None) -> TrainResult:
    if resume and (out / "last.pt").exists():
        record = load_record(out / "last.pt")
        stored = config_from_dict(record["training"]["config"], source=str(out / "last.pt"))
        config = _resume_config(stored, config)
        model = model_from_record(record)
        state = LoopState(**record["training"]["state"])
    elif resume:
        raise AsrkitError(f"{out}: nothing to resume (no last.pt); run without --resume")
    elif (out / "last.pt").exists():
        raise AsrkitError(f"{out}: holds a training run already; pass --resume to continue "
                          "it or choose another --out")
    else:
        record, state = None, LoopState()
        torch.manual_seed(config.train.seed)  # weight initialisation
        source = None
        if init is not None:
            source = init if isinstance(init, AsrModel) else load_model(init)
            config = init_config(source, config)
        vocab = Vocabulary.from_texts((u.text or "" for u in train_utts), config.train.case)
        model = AsrModel(vocab, config.model, config.features) if source is None else \
            init_from(source, vocab, config.model)
    check_precision(config.train.precision, device)
    _check_run_length(config)
    if config.train.accumulate < 1:
        raise ConfigError(f"train.accumulate must be at least 1, not {config.train.accumulate}")
    train_ex, valid_ex, skipped = _examples(model, config, train_utts, valid_utts)
    if record is None and cluster.is_main:  # the other processes receive rank 0's weights
        if init is None:  # a fine-tuned model keeps the statistics its layers know
            _fit_normalizer(model, train_ex, config)
        out.mkdir(parents=True, exist_ok=True)
        if lock is not None:
            lock.take()
        atomic_write_text(out / "config.yaml", config.to_yaml())
    loop = TrainingLoop(model.to(device), config, (train_ex, valid_ex), out, state, cb, cluster,
                 corpora)
    if record is not None:
        loop.restore(record["training"])
    if cb.on_start:
        cb.on_start({"train_utterances": len(train_ex), "valid_utterances": len(valid_ex),
                     "train_hours": sum(e.duration for e in train_ex) / 3600,
                     "skipped": len(skipped), "parameters": model.num_parameters(),
                     "vocabulary": len(model.vocab), "resumed_at_step": state.step,
                     "steps_per_epoch": loop.steps_per_epoch,
                     "processes": cluster.world_size, "device": str(device)})
    loop.run()
    if cluster.is_main and state.history:
        # Again: a run resumed after its last checkpoint, whose metrics file could not
        # be written then (a full disk), trains no further step that would write it.
        write_metrics(out, state.history)
        plot_training_curve(state.history, out / "curve.png")
    late = [Skipped(i, r) for i, r in state.unusable.items()
            if i not in {s.id for s in skipped}]
    return TrainResult(out, state.best_wer, state.best_epoch, state.epoch, state.step,
                       tuple(skipped) + tuple(late), state.seconds)


def _check_run_length(config: ExperimentConfig) -> None:
    """Values that would otherwise fail deep inside the loop (or end it with nothing
    saved), checked before any work."""
    t = config.train
    if t.epochs < 1:
        raise ConfigError(f"train.epochs must be at least 1, not {t.epochs}")
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise ConfigError(f"train.lr must be a positive number, not {t.lr}")


def _flatten(data, names: bool = False) -> tuple[list[Utterance], dict[int, object]]:
    """Utterances, or :class:`Corpus` objects → all utterances and, by ``id()`` of each
    utterance, its corpus's weight (or, with ``names``, its corpus's name)."""
    data = list(data)
    if not data or not isinstance(data[0], Corpus):
        return data, {}
    utts, by_id = [], {}
    for c in data:
        utts.extend(c.utterances)
        by_id.update({id(u): c.name if names else c.weight for u in c.utterances})
    return utts, by_id


# A resumed run may also change its number of processes; ``accumulate`` can then keep
# the global batch the same, and ``precision`` must change when the GPU is gone.
RESUMABLE_CHANGES = ("epochs", "max_steps", "patience", "checkpoint_every", "threads",
                     "accumulate", "precision")


def _resume_config(stored: ExperimentConfig, given: ExperimentConfig) -> ExperimentConfig:
    """The stored config, with the run-length settings of ``given``. Any other
    difference would make the resumed run a different experiment, so it is an error."""
    changes = {k: getattr(given.train, k) for k in RESUMABLE_CHANGES}
    merged = replace(stored, train=replace(stored.train, **changes))
    if merged != given:
        a, b = merged.to_dict(), given.to_dict()
        diff = [f"{sec}.{k}" for sec in a for k in a[sec] if a[sec][k] != b[sec][k]]
        raise ConfigError(f"cannot resume with a different configuration ({', '.join(diff)}); "
                          f"only train.{{{','.join(RESUMABLE_CHANGES)}}} may change")
    return merged


def _examples(model, config, train_utts, valid_utts):
    max_speed = max(config.augment.speed_factors) if config.train.speed_perturb else 1.0
    fps = model.feature_config.frames_per_second

    def out_frames(duration: float, speed: float = 1.0) -> int:
        return model.output_frames(int(duration / speed * fps))

    train_ex, skipped = prepare_examples(train_utts, model.vocab,
                                         lambda d: out_frames(d, max_speed))
    valid_ex, skipped_valid = prepare_examples(valid_utts, model.vocab, out_frames)
    for s in skipped + skipped_valid:
        log.warning("excluded %s: %s", s.id, s.reason)
    if not train_ex:
        raise AsrkitError("no usable training utterances (all were excluded; see the log)")
    if not valid_ex:
        raise AsrkitError("no usable validation utterances (all were excluded; see the log)")
    return train_ex, valid_ex, skipped + skipped_valid


def _fit_normalizer(model: AsrModel, examples: Sequence[Example], config) -> None:
    stats = RunningStats(model.feature_config.dim)
    step = max(1, len(examples) // STATS_MAX_UTTERANCES)
    chosen = examples[::step]
    for i in range(0, len(chosen), 32):
        batch, _ = load_batch(chosen[i:i + 32], model.feature_config.gain_normalize)
        if batch is None:
            continue
        feats, lengths = model.features(batch.waves, batch.wave_lengths)
        for f, n in zip(feats, lengths):
            stats.update(f[:n])
    model.normalizer.fit(stats)
