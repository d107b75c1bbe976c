"""A run's training curves (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reffakd.files import pyplot, save_figure


def plot_curves(history: list[dict[str, Any]], path: Path, keys: list[str]) -> None:
    """One line per metric key against epoch; missing keys are skipped."""
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
