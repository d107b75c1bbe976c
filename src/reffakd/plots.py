"""Training-curve plots (PNG)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from reffakd.utils import atomic_write_bytes


def plot_curves(history: list[dict[str, Any]], path: Path, keys: list[str]) -> None:
    """One line per metric key against epoch; missing keys are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
