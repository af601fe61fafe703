"""Training step cost of the AN4 recipe's two acoustic models, measured in one run.

The bidirectional model (recipes/an4/conf.yaml) against the forward-only streaming
model (recipes/an4/conf_stream.yaml): one training step (forward, CTC loss, backward,
AdamW) on the same batch, one thread, the best of several alternating repeats. The
ratio says how many forward-only epochs cost what one bidirectional epoch does: the
"same budget" of the streaming recipe (100 epochs against conf.yaml's 60).

    python bench/recurrent_step_cost.py [--batch 16] [--seconds 6] [--repeats 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.text import Vocabulary

RECIPE = Path(__file__).resolve().parent.parent / "recipes/an4"


def model_config(name: str) -> ModelConfig:
    return ModelConfig(**yaml.safe_load((RECIPE / name).read_text())["model"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=6.0, help="audio per utterance")
    p.add_argument("--repeats", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab = Vocabulary(tuple(" 'ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    frames = int(args.seconds * 100)
    feats, lengths = torch.randn(args.batch, frames, 80), torch.full((args.batch,), frames)
    targets = torch.randint(1, len(vocab), (args.batch, frames // 10))
    target_lengths = torch.full((args.batch,), frames // 10)
    models = {name: AsrModel(vocab, model_config(name)).train()
              for name in ("conf.yaml", "conf_stream.yaml")}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, m in models.items()}
    best = {name: float("inf") for name in models}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, model in models.items():
            start = time.perf_counter()
            log_probs, out_lengths = model.forward_features(feats, lengths)
            loss = F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lengths,
                              target_lengths)
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()
            if repeat:
                best[name] = min(best[name], time.perf_counter() - start)
    for name, model in models.items():
        c = model.config
        kind = "bidirectional" if c.bidirectional else f"forward-only, look-ahead {c.lookahead}"
        print(f"{name}: {c.layers}x{c.hidden} {kind}, "
              f"{sum(q.numel() for q in model.parameters()) / 1e6:.1f} M parameters: "
              f"{best[name]:.3f} s per step ({args.batch} x {args.seconds:g} s, 1 thread)")
    ratio = best["conf_stream.yaml"] / best["conf.yaml"]
    print(f"forward-only / bidirectional step time: {ratio:.2f} "
          f"(60 bidirectional epochs = {60 / ratio:.0f} forward-only epochs)")


if __name__ == "__main__":
    main()
