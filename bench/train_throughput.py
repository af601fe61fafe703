"""Training throughput of the default acoustic model, against a plain matmul.

Prints feature frames per second (forward + backward + AdamW step) and the achieved
FLOP/s as a fraction of what a large fp32 matmul reaches on this machine in the same
run, so the ratio is meaningful on a noisy, shared machine.

    python bench/train_throughput.py [--batch 16] [--frames 600] [--steps 5] [--bf16]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from asrkit.asr.model import AsrModel, ModelConfig
from asrkit.text import Vocabulary


def matmul_flops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def lstm_train_flops(cfg: ModelConfig, input_dim: int, frames: int, vocab: int) -> float:
    """Multiply-adds of a BiLSTM + output layer over ``frames`` model frames, ×2 for
    FLOPs, ×3 for forward + backward."""
    macs, n_in = 0, input_dim * cfg.subsample
    for _ in range(cfg.layers):
        macs += 2 * 4 * cfg.hidden * (n_in + cfg.hidden)  # two directions, four gates
        n_in = 2 * cfg.hidden
    macs += 2 * cfg.hidden * vocab
    return 3 * 2 * macs * frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=600, help="feature frames per utterance")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--subsample", type=int, default=2)
    p.add_argument("--bf16", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    vocab = Vocabulary(tuple(" 'ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    cfg = ModelConfig(subsample=args.subsample)
    model = AsrModel(vocab, cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    feats = torch.randn(args.batch, args.frames, 80)
    lengths = torch.full((args.batch,), args.frames)
    targets = torch.randint(1, len(vocab), (args.batch, args.frames // 8))
    target_lengths = torch.full((args.batch,), args.frames // 8)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            log_probs, out_lengths = model.forward_features(feats, lengths)
        loss = F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lengths,
                          target_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    reference = matmul_flops()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - t) / args.steps
    fps = args.batch * args.frames / seconds
    achieved = lstm_train_flops(cfg, 80, args.batch * -(-args.frames // cfg.subsample),
                                len(vocab)) / seconds
    print(f"model {cfg.layers}x{cfg.hidden} BiLSTM, subsample {cfg.subsample}, "
          f"{'bf16' if args.bf16 else 'fp32'}, {torch.get_num_threads()} threads")
    print(f"training: {fps:,.0f} feature frames/s ({fps / 100:.0f} s of audio per second)")
    print(f"achieved {achieved / 1e9:.1f} GFLOP/s; plain 1024² matmul {reference / 1e9:.1f} "
          f"GFLOP/s; ratio {achieved / reference:.2f}")


if __name__ == "__main__":
    main()
