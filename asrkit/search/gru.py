"""A bidirectional GRU encoder for one sequence at a time, in numpy.

``torch.nn.GRU`` dispatches a dozen small operators per time step; for a single short
sequence (a search query of ~20 steps) that overhead, not arithmetic, sets the
latency. This is the same computation (PyTorch's gate equations and weight layout) with the
recurrence compiled by numba, much faster for one query (bench/search_notes.md has the
measurement). Batches of many
segments still go through torch, where the overhead is shared by the batch.
"""

from __future__ import annotations

import numpy as np
from ..jit import njit
from torch import nn


class GruWeights:
    """The weights of an ``nn.GRU`` (bidirectional, batch_first) as float32 arrays."""

    def __init__(self, gru: nn.GRU):
        if not gru.bidirectional or not gru.batch_first:
            raise ValueError("expects a bidirectional, batch_first GRU")
        self.hidden = gru.hidden_size
        self.layers = []  # per layer: [(w_ih.T, b_ih, w_hh.T, b_hh) forward, backward]
        for k in range(gru.num_layers):
            dirs = []
            for suffix in (f"l{k}", f"l{k}_reverse"):
                p = {name: getattr(gru, f"{name}_{suffix}").detach().numpy().astype(np.float32)
                     for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")}
                dirs.append((np.ascontiguousarray(p["weight_ih"].T), p["bias_ih"],
                             np.ascontiguousarray(p["weight_hh"].T), p["bias_hh"]))
            self.layers.append(dirs)


def final_states(x: np.ndarray, weights: GruWeights) -> np.ndarray:
    """``x (steps, features)`` → the top layer's last forward and backward states,
    concatenated ``(2 * hidden,)`` — what ``h_n[-2:]`` of ``nn.GRU`` holds."""
    out = np.ascontiguousarray(x, dtype=np.float32)
    for dirs in weights.layers:
        forward = _run(out, *dirs[0])
        backward = _run(out[::-1], *dirs[1])[::-1]
        out = np.concatenate([forward, backward], axis=1)
    return np.concatenate([forward[-1], backward[0]])


def _run(x: np.ndarray, w_ih: np.ndarray, b_ih: np.ndarray, w_hh: np.ndarray,
         b_hh: np.ndarray) -> np.ndarray:
    """One direction of one layer: ``x (steps, in)`` → states ``(steps, hidden)``."""
    return _recur(_input_gates(x, w_ih, b_ih), w_hh, b_hh)


@njit(cache=True)
def _input_gates(x, w_ih, b_ih):
    """``x @ w_ih + b_ih`` → ``(steps, 3 * hidden)``: reset, update, new. Compiled rather
    than BLAS: for a query this size, BLAS threads only wait on each other, which on a
    busy machine made a whole search several times slower (bench/search_notes.md)."""
    steps, size = x.shape
    gates = np.empty((steps, w_ih.shape[1]), np.float32)
    for t in range(steps):
        gates[t] = b_ih
        for k in range(size):
            xk = x[t, k]
            for j in range(w_ih.shape[1]):
                gates[t, j] += xk * w_ih[k, j]
    return gates


@njit(cache=True)
def _recur(gates_x, w_hh, b_hh):
    """The sequential part: ``h_t`` from ``h_{t-1}`` with PyTorch's GRU equations
    (r, z = sigmoid; n = tanh(x_n + r * (W_hn h + b_hn)); h = (1 - z) n + z h)."""
    steps, hidden = gates_x.shape[0], w_hh.shape[0]
    states = np.empty((steps, hidden), np.float32)
    h = np.zeros(hidden, np.float32)
    gh = np.empty(3 * hidden, np.float32)
    for t in range(steps):
        gh[:] = b_hh
        for k in range(hidden):  # gh += h @ w_hh, row by row (contiguous, vectorises)
            hk = h[k]
            for j in range(3 * hidden):
                gh[j] += hk * w_hh[k, j]
        for j in range(hidden):
            r = 1.0 / (1.0 + np.exp(-(gates_x[t, j] + gh[j])))
            z = 1.0 / (1.0 + np.exp(-(gates_x[t, hidden + j] + gh[hidden + j])))
            n = np.tanh(gates_x[t, 2 * hidden + j] + r * gh[2 * hidden + j])
            h[j] = n + z * (h[j] - n)
        states[t] = h
    return states
