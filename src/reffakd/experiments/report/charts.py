"""The report's charts: matplotlib figures as inline SVG (the bench's shared figures come from
:mod:`reffakd.experiments.plots`), and the AESL heatmap as PNG."""

from __future__ import annotations

import io
import math
import re
from typing import Any

from reffakd.aesl.heatmap import heatmap_figure
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.experiments.plots import (
    Curves,
    accuracy_vs_cost_figure,
    epoch_axis,
    method_curves_figure,
)
from reffakd.experiments.report.markup import esc
from reffakd.files import figure_png, pyplot

# Keys of a metrics record that are neither an accuracy nor a loss.
NOT_LOSSES = {"epoch", "lr", "seconds", "train_seconds"}


def _svg(fig: Any, name: str) -> str:
    """A matplotlib figure as inline SVG; its ids are prefixed with ``name`` to stay unique."""
    import matplotlib

    buffer = io.StringIO()
    # Text stays text (small, selectable); a fixed salt makes the ids, hence the page, repeatable.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    pyplot().close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", name)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{esc(name)}" ', 1)


def curves_svg(records: list[dict[str, Any]], name: str) -> str | None:
    """Top-1 (train/val/test) and every loss term against epoch, side by side."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    accuracy = [k for k in keys if k.endswith("_top1")]
    losses = [k for k in keys if k not in NOT_LOSSES and not k.endswith(("_top1", "_top5"))]
    panels = [(k, label) for k, label in ((accuracy, "top-1 %"), (losses, "loss")) if k]
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.5), squeeze=False)
    epochs = [r["epoch"] for r in records]
    for ax, (panel_keys, label) in zip(axes[0], panels, strict=True):
        for key in panel_keys:
            values = [r.get(key) for r in records]
            values = [math.nan if v is None else v for v in values]
            ax.plot(epochs, values, marker="o", markersize=3, linewidth=1.5, label=key)
        epoch_axis(ax, epochs)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _svg(fig, name)


def accuracy_vs_cost_svg(rows: list[dict[str, Any]], name: str) -> str | None:
    """The bench's accuracy-against-cost chart (:mod:`..plots`) for ``rows``; None when no row
    has a finished seed."""
    if not any(r.get("seeds") for r in rows):
        return None
    return _svg(accuracy_vs_cost_figure(rows), name)


def method_curves_svg(curves: Curves, name: str) -> str | None:
    """The bench's validation curves (:mod:`..plots`), one line per method; None without any."""
    return _svg(method_curves_figure(curves), name) if curves else None


def heatmap_png(labels: SoftLabels, title: str) -> bytes:
    return figure_png(heatmap_figure(labels, title), dpi=110)
