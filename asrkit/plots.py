"""Pictures of training runs and evaluations (matplotlib, written atomically as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .io import atomic_open

if TYPE_CHECKING:
    from .asr.calibration import Reliability


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


def plot_conditions(rows: Sequence[tuple], path: str | Path, title: str = "",
                    series: Sequence[str] = ("WER", "CER"), percent: bool = True) -> Path:
    """Figures per test condition, as grouped bars: ``rows`` are ``(condition, value,
    ...)`` in the order to show, one value per name in ``series`` (by default WER and
    CER); fractions are drawn as percentages when ``percent``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r[0] for r in rows]
    x = range(len(rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 3, 4), constrained_layout=True)
    for k, label in enumerate(series):
        values = [(100 if percent else 1) * r[k + 1] for r in rows]
        bars = ax.bar([i + (k - (len(series) - 1) / 2) * width for i in x], values,
                      width=width, label=label)
        ax.bar_label(bars, fmt="%.1f" if percent else "%.3f", fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set(ylabel="%" if percent else "", title=title or "By condition")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def plot_reliability(curves: Sequence[tuple[str, "Reliability"]], path: str | Path,
                     title: str = "") -> Path:
    """Reliability diagram: accuracy against mean confidence per bin, one line per
    ``(label, curve)`` (e.g. before and after calibration), beside the diagonal that a
    calibrated model follows; each label gives its ECE. Empty bins are left out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), constrained_layout=True)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for label, curve in curves:
        full = [b for b in curve.bins if b.count]
        ax.plot([b.confidence for b in full], [b.accuracy for b in full], marker="o",
                label=f"{label} (ECE {curve.ece:.3f})")
    ax.set(xlabel="word confidence (bin mean)", ylabel="fraction of words right",
           title=title or "Reliability of word confidences", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
