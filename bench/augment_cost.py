"""What channel augmentation costs in training throughput.

Trains the default acoustic model on the same AN4 batches with and without channel
augmentation (every effect on, at the given probability), alternating the two so a
busy machine slows both alike, and prints training feature frames/s of each and their
ratio. Reading audio, augmentation, features, forward, backward and the optimiser step
are all inside the timing; making the room and babble banks (once per run) is timed
apart.

    python bench/augment_cost.py [--batches 8] [--batch-seconds 60] [--prob 0.5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from _an4 import an4_utterances
from asrkit.asr.dataset import bucket_batches, load_batch, prepare_examples
from asrkit.asr.model import AsrModel
from asrkit.augment import ChannelAugmenter
from asrkit.features import AugmentConfig
from asrkit.text import Vocabulary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch-seconds", type=float, default=60.0)
    p.add_argument("--prob", type=float, default=0.5, help="probability of each effect")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    utts = [u for u in an4_utterances() if u.id.startswith(("an", "cen"))][:800]
    vocab = Vocabulary.from_texts(u.text for u in utts)
    model = AsrModel(vocab).train()
    examples, _ = prepare_examples(utts, vocab, lambda d: model.output_frames(int(d * 100)))
    batches = bucket_batches([e.duration for e in examples], args.batch_seconds, 0, 0)
    batches = batches[:args.batches]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    q = args.prob
    config = AugmentConfig(narrowband_prob=q, telephone_prob=q / 2, noise_prob=q,
                           reverb_prob=q, gain_prob=q, clip_prob=q / 2)
    aug = ChannelAugmenter(config, [e.utt for e in examples], seed=0)
    t = time.perf_counter()
    aug.rirs, aug.babble  # the banks are made once per run
    bank_seconds = time.perf_counter() - t

    def step(indices: list[int], position: int, augment: bool) -> tuple[int, float, float]:
        """One training step; its frames, seconds, and seconds spent augmenting."""
        spent = [0.0]

        def channel(i: int, wave: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            out = aug(wave, np.random.default_rng([position, i]))
            spent[0] += time.perf_counter() - t0
            return out

        t0 = time.perf_counter()
        batch, _ = load_batch([examples[i] for i in indices], True,
                              transform=channel if augment else None)
        feats, lengths = model.features(batch.waves, batch.wave_lengths)
        log_probs, out_lengths = model.forward_features(feats, lengths)
        loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, out_lengths,
                          batch.target_lengths, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return int(lengths.sum()), time.perf_counter() - t0, spent[0]

    step(batches[0], 0, True)  # warm-up (first calls allocate)
    totals = {False: [0, 0.0, 0.0], True: [0, 0.0, 0.0]}
    for k, indices in enumerate(batches):
        for augment in ((False, True) if k % 2 == 0 else (True, False)):
            frames, seconds, spent = step(indices, k, augment)
            totals[augment][0] += frames
            totals[augment][1] += seconds
            totals[augment][2] += spent
    plain = totals[False][0] / totals[False][1]
    augmented = totals[True][0] / totals[True][1]
    print(f"{len(batches)} batches of <= {args.batch_seconds:.0f} s, {torch.get_num_threads()} "
          f"threads, each effect at p={q} (telephone, clipping p={q / 2})")
    print(f"room bank ({config.rir_bank} rooms) and babble: {bank_seconds:.1f} s once per run")
    print(f"without augmentation: {plain:,.0f} frames/s")
    print(f"with augmentation:    {augmented:,.0f} frames/s "
          f"(augmenting: {totals[True][2]:.2f} s of {totals[True][1]:.2f} s)")
    print(f"cost: {100 * (1 - augmented / plain):.1f} % of training throughput")


if __name__ == "__main__":
    main()
