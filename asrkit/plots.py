"""Pictures of training runs (matplotlib, written atomically as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .io import atomic_open


def plot_training_curve(history: Sequence[dict], path: str | Path) -> Path:
    """Loss (left) and validation CER/WER (right) per epoch, from ``metrics.jsonl`` rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["valid_loss"] for h in history], label="valid")
    ax_loss.set(xlabel="epoch", ylabel="CTC loss", title="Loss")
    ax_loss.legend()
    ax_err.plot(epochs, [100 * h["valid_cer"] for h in history], label="CER")
    ax_err.plot(epochs, [100 * h["valid_wer"] for h in history], label="WER")
    ax_err.set(xlabel="epoch", ylabel="%", title="Validation error (greedy)")
    ax_err.set_ylim(bottom=0)
    ax_err.legend()
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def plot_conditions(rows: Sequence[tuple[str, float, float]], path: str | Path,
                    title: str = "") -> Path:
    """WER and CER (fractions) per test condition, as grouped bars: ``rows`` are
    ``(condition, wer, cer)`` in the order to show."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r[0] for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 3, 4), constrained_layout=True)
    for shift, column, label in ((-0.2, 1, "WER"), (0.2, 2, "CER")):
        values = [100 * r[column] for r in rows]
        bars = ax.bar([i + shift for i in x], values, width=0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set(ylabel="%", title=title or "Error rate by condition")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
