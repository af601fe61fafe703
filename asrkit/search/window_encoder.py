"""Embedding every candidate window of a recording at once, sharing what is shareable.

An archive's candidate windows overlap heavily (six lengths, one start every 0.1 s),
so every frame lies in dozens of windows. The embedding of a window is *not* a function
of frame-level states computed once per recording: each window's own mean is removed
before the encoder (``segment_mean``), and the second GRU layer reads the first layer's
backward states, which depend on where the window ends. So the recurrences are
per window; what is shared exactly is everything linear in the frames:

- the first layer's input projection ``W_ih @ step`` of a stacked step is a sum of
  per-frame products, ``sum_j W_j @ frame[a + stack * k + j]``; those products are
  computed once per frame of the recording, and each window subtracts ``W_j @ c`` for
  its own normalisation offset ``c`` (segment mean and global statistics);
- windows are grouped by their number of steps, so a batch needs no padding or packing,
  and both directions of a layer advance together in one batched matrix product;
- the later layers' input projections are one large matrix product per batch (the
  part that may run in bfloat16, where the CPU has it).

The result equals :meth:`SequenceAutoencoder.encode` on each window separately up to
float rounding (``tests/test_window_encoder.py`` checks this as a property).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

WINDOW_BATCH = 192  # windows per batch: bounds memory (~40 MB of gates at 50 steps)


@torch.no_grad()
def encode_windows(ae: nn.Module, feats: torch.Tensor, ranges: Sequence[tuple[int, int]],
                   bf16: bool = False) -> torch.Tensor:
    """Frames of one recording ``feats (frames, feats)`` and window frame ranges
    ``[(start, end), ...]`` → embeddings ``(windows, dim)`` (not unit length), in the
    order of ``ranges``. ``ae`` is a :class:`asrkit.search.embedding.SequenceAutoencoder`;
    ``bf16`` runs the second and later layers' input projections in bfloat16."""
    weights = _Weights(ae)
    feats = feats.float()
    out = torch.zeros(len(ranges), ae.config.dim)
    if not len(ranges):
        return out
    projected = weights.frame_projections(feats)  # (frames, stack, 2 * 3 * hidden)
    # prefix sums in float64: a window mean is a difference of two of them
    cumsum = torch.cat([torch.zeros(1, feats.shape[1], dtype=torch.float64),
                        feats.double().cumsum(0)])
    starts = torch.tensor([a for a, _ in ranges])
    ends = torch.tensor([b for _, b in ranges])
    steps = (ends - starts + weights.stack - 1) // weights.stack
    for count in torch.unique(steps).tolist():
        group = torch.nonzero(steps == count).flatten()
        for b in range(0, len(group), WINDOW_BATCH):
            idx = group[b:b + WINDOW_BATCH]
            gates = weights.first_gates(projected, cumsum, starts[idx], ends[idx], count)
            out[idx] = weights.encode(gates, bf16)
    return out


class _Weights:
    """The encoder's weights rearranged for batched, shared computation."""

    def __init__(self, ae: nn.Module):
        gru = ae.encoder
        self.hidden, self.layers, self.stack = gru.hidden_size, gru.num_layers, ae.config.stack
        self.segment_mean = ae.segment_mean
        self.mean, self.std = ae.normalizer.mean.float(), ae.normalizer.std.float()
        self.w_ih, self.b_ih, self.w_hh, self.b_hh = [], [], [], []
        for k in range(self.layers):
            p = {name: torch.stack([getattr(gru, f"{name}_l{k}{d}").detach().float()
                                    for d in ("", "_reverse")])
                 for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")}
            self.w_ih.append(p["weight_ih"])  # (2, 3 * hidden, in)
            self.b_ih.append(p["bias_ih"].reshape(1, 1, -1))  # (1, 1, 2 * 3 * hidden)
            self.w_hh.append(p["weight_hh"].transpose(1, 2).contiguous())  # (2, hidden, 3h)
            self.b_hh.append(p["bias_hh"].unsqueeze(1))  # (2, 1, 3 * hidden)
        dim = ae.config.input_dim
        # first layer, both directions: (2 * 3 * hidden, stack, feats); W_j = [:, j, :]
        self.first = self.w_ih[0].reshape(-1, self.stack, dim)
        self.project_w = ae.project.weight.detach().float().t()
        self.project_b = ae.project.bias.detach().float()

    def frame_projections(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats (frames, feats)`` → ``W_j @ (frame / std)`` for every frame and stack
        slot j, both directions: ``(stack, frames, 2 * 3 * hidden)``."""
        return torch.einsum("fd,gjd->jfg", feats / self.std, self.first).contiguous()

    def first_gates(self, projected: torch.Tensor, cumsum: torch.Tensor,
                    starts: torch.Tensor, ends: torch.Tensor, count: int) -> torch.Tensor:
        """First-layer input gates of windows ``[starts, ends)`` (frames) that all have
        ``count`` steps → ``(count, batch, 2 * 3 * hidden)``."""
        s, frames = self.stack, projected.shape[1]
        index = starts.view(1, -1, 1) + s * torch.arange(count).view(-1, 1, 1) \
            + torch.arange(s).view(1, 1, -1)  # (count, batch, stack) frame numbers
        valid = index < ends.view(1, -1, 1)  # the last step is zero-padded past the end
        index = index.clamp(max=frames - 1)
        gates = projected[0][index[..., 0]]  # (count, batch, 6h); slot 0 is always valid
        for j in range(1, s):
            gates += projected[j][index[..., j]] * valid[..., j].unsqueeze(-1)
        # each window's normalised frame is (x - c) with c = (its mean + mu) / std
        offset = self.mean.expand(len(starts), -1)
        if self.segment_mean:
            lengths = (ends - starts).clamp(min=1).view(-1, 1).double()
            offset = offset + ((cumsum[ends] - cumsum[starts]) / lengths).float()
        shift = torch.einsum("bd,gjd->bjg", offset / self.std, self.first)  # (b, stack, 6h)
        gates -= torch.bmm(valid.transpose(0, 1).float(), shift).transpose(0, 1)
        return gates.add_(self.b_ih[0])

    def encode(self, gates: torch.Tensor, bf16: bool) -> torch.Tensor:
        """First-layer input gates ``(steps, batch, 2 * 3 * hidden)`` → embeddings
        ``(batch, dim)``: the top layer's final forward and backward states, projected."""
        for k in range(self.layers):
            last = k == self.layers - 1
            states, final = self._bidirectional(k, gates, keep=not last)
            if not last:
                w = self.w_ih[k + 1].reshape(-1, 2 * self.hidden).t()  # (2h, 2 * 3h)
                if bf16:
                    gates = (states.bfloat16() @ w.bfloat16()).float()
                else:
                    gates = states @ w
                gates = gates.add_(self.b_ih[k + 1])
        return torch.cat([final[0], final[1]], dim=1) @ self.project_w + self.project_b

    def _bidirectional(self, k: int, gates: torch.Tensor, keep: bool):
        """Layer ``k``, both directions in lockstep, over input gates ``(steps, batch,
        6h)`` → states ``(steps, batch, 2h)`` (if ``keep``), final states ``(2, batch, h)``."""
        steps, batch, _ = gates.shape
        hid = self.hidden
        # (steps, 2, batch, 3h): step t holds forward step t and backward step steps-1-t
        x = gates.view(steps, batch, 2, 3 * hid)
        x = torch.stack([x[:, :, 0], x[:, :, 1].flip(0)], dim=1)
        b_hh = self.b_hh[k]
        x[..., :2 * hid] += b_hh[:, :, :2 * hid]  # r and z biases simply add
        b_hn = b_hh[:, :, 2 * hid:]
        w_hh = self.w_hh[k]
        h = torch.zeros(2, batch, hid)
        states = torch.empty(steps, 2, batch, hid) if keep else None
        for t in range(steps):
            gh = torch.bmm(h, w_hh)  # (2, batch, 3h)
            rz = gh[..., :2 * hid].add_(x[t, :, :, :2 * hid]).sigmoid_()
            n = gh[..., 2 * hid:].add_(b_hn).mul_(rz[..., :hid]).add_(x[t, :, :, 2 * hid:]).tanh_()
            h = torch.addcmul(n, rz[..., hid:], h - n)
            if keep:
                states[t] = h
        if not keep:
            return None, h
        states = torch.stack([states[:, 0], states[:, 1].flip(0)], dim=2)  # (steps, b, 2, h)
        return states.view(steps, batch, 2 * hid), h
