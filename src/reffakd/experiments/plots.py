"""A bench's plots (PNG): accuracy against teacher-signal cost, and validation curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reffakd.files import pyplot, save_figure


def plot_accuracy_vs_cost(rows: list[dict[str, Any]], path: Path) -> None:
    """Test accuracy (best-on-val epoch, mean ± std) against teacher-signal FLOPs (log x)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    positive = [r["signal_flops"] for r in rows if r["signal_flops"] > 0]
    floor = min(positive) / 10 if positive else 1.0
    for row in rows:
        if not row["seeds"]:
            continue
        x = max(row["signal_flops"], floor)
        ax.errorbar(x, row["test_best_mean"], yerr=row["test_best_std"], fmt="o", capsize=3)
        ax.annotate(
            row["method"],
            (x, row["test_best_mean"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"teacher-signal FLOPs (log; no signal plotted at {floor:.1e})")
    ax.set_ylabel("test top-1 % (best-on-val epoch)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot_budget(rows: list[dict[str, Any]], path: Path) -> None:
    """Test accuracy against the whole run's training FLOPs (log x), one panel per dataset;
    the ce points (ce, ce@1.5x, ...) are joined by a line: the price of more student epochs."""
    plt = pyplot()
    datasets = sorted({r["dataset"] for r in rows if r["seeds"]})
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        done = [r for r in rows if r["dataset"] == dataset and r["seeds"] and r["total_flops"]]
        ce = sorted(
            (r for r in done if r["method"] == "ce" or r["method"].startswith("ce@")),
            key=lambda r: r["total_flops"],
        )
        if ce:
            ax.plot([r["total_flops"] for r in ce], [r["test_best_mean"] for r in ce], "k--")
        for row in done:
            ax.errorbar(
                row["total_flops"], row["test_best_mean"], yerr=row["test_best_std"], fmt="o",
                capsize=3,
            )  # fmt: skip
            ax.annotate(
                row["method"], (row["total_flops"], row["test_best_mean"]),
                textcoords="offset points", xytext=(4, 4), fontsize=7,
            )  # fmt: skip
        ax.set_xscale("log")
        ax.set_title(dataset)
        ax.set_xlabel("total training FLOPs: teacher + signal + student (log)")
        ax.set_ylabel("test top-1 % (best-on-val epoch)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot_method_curves(metrics_files: dict[str, Path], path: Path) -> None:
    """Validation top-1 against epoch, one line per method (first seed)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, file in metrics_files.items():
        if not Path(file).exists():
            continue
        records = [json.loads(x) for x in Path(file).read_text().splitlines() if x.strip()]
        ax.plot(
            [r["epoch"] for r in records],
            [r.get("val_top1") for r in records],
            marker="o",
            markersize=3,
            label=label,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
