"""A labelled heatmap of a soft-label table (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reffakd.aesl.soft_labels import SoftLabels
from reffakd.files import pyplot, save_figure


def save_heatmap(labels: SoftLabels, path: Path, title: str = "AESL soft labels") -> None:
    """Write a labelled heatmap of the soft-label table as PNG."""
    save_figure(heatmap_figure(labels, title), path, dpi=110)


def heatmap_figure(labels: SoftLabels, title: str = "AESL soft labels") -> Any:
    """A labelled heatmap of the soft-label table (a matplotlib figure)."""
    plt = pyplot()
    table = labels.table.numpy()
    names = labels.meta.get("class_names") or [str(i) for i in range(len(table))]
    size = min(4 + 0.45 * len(table), 24)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(table, cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="probability")
    if len(table) <= 40:
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        if len(table) <= 12:
            for (row, col), value in _cells(table):
                ax.text(
                    col,
                    row,
                    f"{value:.3f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if value < table.max() * 0.6 else "black",
                )
    ax.set_xlabel("class (soft-label mass)")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _cells(table: Any) -> Any:
    rows, cols = table.shape
    return (((r, c), float(table[r, c])) for r in range(rows) for c in range(cols))
