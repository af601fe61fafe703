"""Fine-tuning: a new training run that starts from a trained model (``train --init``).

The new model keeps the source's architecture, features and normalisation statistics
(the lower layers were trained on features scaled that way). Only the output layer
depends on the vocabulary: when the new training texts need other symbols, it is
re-initialised and the rows of the symbols both vocabularies share (and the blank)
are copied, so the model still knows the letters it knew.
"""

from __future__ import annotations

from dataclasses import fields, replace

import torch

from ..errors import ConfigError
from ..text import BLANK, Vocabulary
from .config import ExperimentConfig
from .model import AsrModel, ModelConfig

OUTPUT_PREFIX = "output."  # the one layer that depends on the vocabulary


def init_config(source: AsrModel, config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with the source model's architecture and features. Settings that
    would change a weight's shape cannot apply to a model that already has weights, so
    any given explicitly (not left at the default) must match the source; dropout and its
    kind, which change no weight, may differ."""
    given, default = config.model, ModelConfig()
    free = ("dropout", "dropout_kind")
    shaped = {f.name: getattr(given, f.name) for f in fields(default) if f.name not in free}
    clash = [f"model.{f}" for f, v in shaped.items()
             if v != getattr(default, f) and v != getattr(source.config, f)]
    if config.features != type(config.features)() and config.features != source.feature_config:
        clash.append("features")
    if clash:
        raise ConfigError(f"--init takes the architecture of the model it starts from; "
                          f"{', '.join(clash)} differ from it: drop those settings")
    model = replace(source.config, **{name: getattr(given, name) for name in free
                                      if getattr(given, name) != getattr(default, name)})
    return replace(config, model=model, features=source.feature_config)


def init_from(source: AsrModel, vocab: Vocabulary, config: ModelConfig) -> AsrModel:
    """A model for ``vocab`` with ``source``'s weights; see the module docs."""
    model = AsrModel(vocab, config, source.feature_config)
    state = source.state_dict()
    own = {k: v for k, v in state.items() if not k.startswith(OUTPUT_PREFIX)}
    model.load_state_dict(own, strict=False)
    if vocab == source.vocab:
        model.output.load_state_dict(source.output.state_dict())
        return model
    with torch.no_grad():
        for new_id, old_id in shared_rows(source.vocab, vocab):
            model.output.weight[new_id] = source.output.weight[old_id]
            model.output.bias[new_id] = source.output.bias[old_id]
    return model


def shared_rows(old: Vocabulary, new: Vocabulary) -> list[tuple[int, int]]:
    """``(new id, old id)`` of the blank and every symbol in both vocabularies."""
    where = {s: i + 1 for i, s in enumerate(old.symbols)}
    return [(BLANK, BLANK)] + [(i + 1, where[s]) for i, s in enumerate(new.symbols)
                               if s in where]


def freeze_lower(model: AsrModel) -> None:
    """Drop the gradients of every layer below the output layer, so an optimiser step
    leaves them as they are (AdamW skips parameters without a gradient, weight decay
    included). Done after the backward pass rather than with ``requires_grad``, which
    DistributedDataParallel does not allow to change during a run."""
    for name, p in model.named_parameters():
        if not name.startswith(OUTPUT_PREFIX):
            p.grad = None
