"""A bench's charts: accuracy against teacher-signal cost, accuracy for the compute spent, and
validation curves. The figures are built here once; the bench writes them as PNG and
``report.html`` embeds the same figures as SVG."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from reffakd.files import pyplot, save_figure


def accuracy_vs_cost_figure(rows: list[dict[str, Any]]) -> Any:
    """Test top-1 (best-on-val epoch, mean ± std) against teacher-signal FLOPs, log x. Rows
    without a finished seed are left out; methods without a signal sit at a floor value."""
    rows = [r for r in rows if r.get("seeds")]
    plt = pyplot()
    positive = [r["signal_flops"] for r in rows if r["signal_flops"] > 0]
    floor = min(positive) / 10 if positive else 1.0
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    points = []
    for row in rows:
        x = max(row["signal_flops"], floor)
        family = row["method"].split("+")[0]
        color = "#d1495b" if family == "reffakd" else "#30638e" if x > floor else "#6c757d"
        ax.errorbar(
            x, row["test_best_mean"], yerr=row["test_best_std"], fmt="o", capsize=3, color=color
        )
        points.append((x, row["test_best_mean"], row["method"], color))
    ax.set_xscale("log")
    if points:
        ax.set_xlim(floor / 2, max(p[0] for p in points) * 6)  # room for the labels on the right
        _label_points(ax, points)
    ax.set_xlabel(f"teacher-signal FLOPs (log scale; methods without a signal at {floor:.0e})")
    ax.set_ylabel("test top-1 % (best-on-val epoch)")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def _label_points(ax: Any, points: list[tuple[float, float, str, str]]) -> None:
    """Method names right of their points, spread apart vertically where points share an x."""
    low, high = ax.get_ylim()
    gap = (high - low) * 0.05
    by_x: dict[float, list[tuple[float, str, str]]] = {}
    for x, y, name, color in points:
        by_x.setdefault(x, []).append((y, name, color))
    for x, group in by_x.items():
        group.sort(reverse=True)
        previous = math.inf
        for y, name, color in group:
            label_y = min(y, previous - gap)
            previous = label_y
            ax.annotate(
                name,
                (x, y),
                xytext=(x * 1.35, label_y),
                textcoords="data",
                va="center",
                fontsize=8,
                color=color,
                arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.5, "alpha": 0.6},
            )


def plot_accuracy_vs_cost(rows: list[dict[str, Any]], path: Path) -> None:
    """:func:`accuracy_vs_cost_figure` as a PNG file."""
    save_figure(accuracy_vs_cost_figure(rows), path)


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


# Line label ("METHOD" or "DATASET METHOD") -> the metrics records of each of its seeds' runs.
Curves = dict[str, list[list[dict[str, Any]]]]


def method_curves_figure(curves: Curves) -> Any:
    """Validation top-1 against epoch, one line per label: the mean over its seeds' runs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    colors = plt.get_cmap("tab20").colors
    for i, (label, runs) in enumerate(curves.items()):
        epochs, means = mean_curve(runs)
        ax.plot(
            epochs,
            means,
            _line_style(label),
            marker="o",
            markersize=3,
            label=label,
            color=colors[i % 20],
        )
    epoch_axis(ax, [r["epoch"] for runs in curves.values() for records in runs for r in records])
    ax.set_ylabel("validation top-1 % (mean over seeds)")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _line_style(label: str) -> str:
    """Solid for ReffAKD, dashed for KD, dotted for the rest; a label ends with its method."""
    method = label.rsplit(" ", 1)[-1]
    return "-" if method.startswith("reffakd") else "--" if method.startswith("kd") else ":"


def mean_curve(runs: list[list[dict[str, Any]]]) -> tuple[list[int], list[float]]:
    """Epochs and the mean validation top-1 of the runs that recorded one at each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for records in runs:
        for r in records:
            if r.get("val_top1") is not None:
                by_epoch.setdefault(r["epoch"], []).append(r["val_top1"])
    epochs = sorted(by_epoch)
    return epochs, [statistics.fmean(by_epoch[e]) for e in epochs]


def epoch_axis(ax: Any, epochs: list[int]) -> None:
    """Whole-number epoch ticks; a single epoch sits in the middle of the axis."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(set(epochs)) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)


def plot_method_curves(metrics_files: dict[str, list[Path]], path: Path) -> None:
    """:func:`method_curves_figure` as a PNG file, from each label's ``metrics.jsonl`` files
    (one per seed; missing files are skipped)."""
    curves = {}
    for label, files in metrics_files.items():
        runs = [_records(Path(f)) for f in files if Path(f).exists()]
        if any(runs):
            curves[label] = [records for records in runs if records]
    save_figure(method_curves_figure(curves), path)


def _records(file: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in file.read_text(encoding="utf-8").splitlines() if x.strip()]
