"""A run's summary: the best-on-validation and last epochs, and their one-line rendering."""

from __future__ import annotations

import math
from typing import Any

from reffakd.files import write_json
from reffakd.training.rundir import RunDir


def summarize(history: list[dict[str, Any]], key: str, mode: str) -> dict[str, Any]:
    """Best-on-validation epoch and last epoch, with every metric of both."""
    if not history:
        return {}
    scored = [r for r in history if key in r and not math.isnan(r[key])]
    pick = max if mode == "max" else min
    best = pick(scored, key=lambda r: r[key]) if scored else history[-1]
    last = history[-1]
    return {
        "selection_metric": key,
        "selection_mode": mode,
        "epochs": last["epoch"],
        "best_epoch": best["epoch"],
        "best": {k: v for k, v in best.items() if k != "epoch"},
        "last": {k: v for k, v in last.items() if k != "epoch"},
        "train_seconds_total": round(sum(r.get("train_seconds", 0.0) for r in history), 3),
        "seconds_total": round(sum(r.get("seconds", 0.0) for r in history), 3),
    }


def write_summary(run_dir: RunDir, summary: dict[str, Any]) -> None:
    write_json(run_dir.summary, summary)


def format_percent(value: float | None) -> str:
    """``89.12%``, or ``n/a`` when a metric is missing."""
    return "n/a" if value is None else f"{value:.2f}%"


def summary_line(summary: dict[str, Any]) -> str:
    """Best-on-validation and last-epoch accuracy in one line."""

    def accuracy(record: dict[str, Any], split: str) -> str:
        return format_percent(record.get(f"{split}_top1"))

    best, last = summary["best"], summary["last"]
    return (
        f"best epoch {summary['best_epoch']}: val {accuracy(best, 'val')} "
        f"test {accuracy(best, 'test')} | last epoch {summary['epochs']}: "
        f"val {accuracy(last, 'val')} test {accuracy(last, 'test')}"
    )
