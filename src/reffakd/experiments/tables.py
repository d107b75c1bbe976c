"""A bench's results as text: ``results.md`` and ``results.csv``, and the cell formats they share
with ``report.html`` and ``reffakd show``."""

from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Any, Protocol


class SuiteText(Protocol):
    """What the results page needs of a suite (``bench.Suite`` has it)."""

    name: str
    description: str
    seeds: list[int]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1); std is 0 for a single value."""
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], 0.0
    return statistics.fmean(values), statistics.stdev(values)


def format_mean_std(values: list[float], digits: int = 2) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def results_markdown(results: dict[str, Any], suite: SuiteText) -> str:
    lines = [
        f"# Results: {suite.name}",
        "",
        suite.description.strip(),
        "",
        f"Seeds in this table: {', '.join(map(str, suite.seeds))}.",
        "",
        "Top-1 accuracy (%), mean ± sample std over seeds; *best* is the epoch with the best "
        "validation accuracy, *last* the final epoch. The validation split is held out from "
        "train; the test split is never used for a choice. Teacher-signal cost is what it takes "
        "to make the soft targets (training the teacher or autoencoder, computing soft labels, "
        "running a frozen teacher during distillation); its peak memory is the highest of those "
        "phases' own peaks (RSS on CPU, allocated memory on CUDA). Ratios are against vanilla "
        "KD's (where no kd run finished, against another method on the same trained teacher, "
        "whose signal is the same).",
        "",
        "| dataset | method | seeds | val best | val last | test best | test last | "
        "signal GFLOPs | signal s | signal peak MB | FLOPs vs KD | time vs KD | memory vs KD |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['dataset']} | {row['method']} | {len(row['seeds'])} | "
            f"{format_mean_std(row['val_best'])} | {format_mean_std(row['val_last'])} | "
            f"{format_mean_std(row['test_best'])} | {format_mean_std(row['test_last'])} | "
            f"{row['signal_flops'] / 1e9:,.1f} | {row['signal_seconds']:,.1f} | "
            f"{row['signal_peak_mb']:,.0f} | {format_ratio(row['signal_flops_vs_kd'])} | "
            f"{format_ratio(row['signal_seconds_vs_kd'])} | "
            f"{format_ratio(row['signal_peak_mb_vs_kd'])} |"
        )
    lines += _convergence_lines(results.get("convergence", {}))
    lines += comparison_markdown(results.get("comparisons", []))
    lines += budget_markdown(results["rows"])
    failed = diverged_runs(results["rows"])
    if failed:
        lines += ["", "Diverged (non-finite loss; not in the means above):", ""]
        lines += [f"- {line}" for line in failed]
    warned = warned_runs(results["rows"])
    if warned:
        lines += ["", "Warnings (the runs finished; their numbers may mean little):", ""]
        lines += [f"- {line}" for line in warned]
    return "\n".join(lines) + "\n"


def _convergence_lines(convergence: dict[str, Any]) -> list[str]:
    if not convergence:
        return []
    lines = ["", "## Has ce converged?", ""]
    for dataset, c in convergence.items():
        verdict = "converged" if c["last_20pct_gain"] < 0.3 else "still rising"
        lines.append(
            f"- {dataset}: ce's validation top-1 rose {c['last_20pct_gain']:+.2f} points in "
            f"the last 20% of its {c['epochs']} epochs ({verdict}; the bar is 0.3)."
        )
    return lines


def format_difference(c: dict[str, Any]) -> str:
    if math.isnan(c["low"]):
        why = "no spread over seeds" if c["n"] > 1 else "1 seed"
        return f"{c['mean']:+.2f} ({why}: no interval)"
    p = "–" if math.isnan(c["p_value"]) else f"{c['p_value']:.3f}"
    return f"{c['mean']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}], p {p}: {c['verdict']}"


def comparison_markdown(
    comparisons: list[dict[str, Any]], measured: str = "best-on-val epoch"
) -> list[str]:
    """Differences against ce and ls, one row per method; ``measured`` names the epoch."""
    if not comparisons:
        return []
    table: dict[tuple[str, str], dict[str, str]] = {}
    for c in comparisons:
        table.setdefault((c["dataset"], c["method"]), {})[c["reference"]] = format_difference(c)
    lines = [
        "",
        "## Differences against ce and ls",
        "",
        f"Test top-1 ({measured}), method − reference in points: mean, 95% confidence "
        "interval (paired by seed: every method of a seed shares its split and data order) and "
        "Welch's two-sided p (unpaired, so it can exceed 0.05 where the paired interval "
        "excludes 0). *better*/*worse* only when the interval excludes 0, else *tie*.",
        "",
        "| dataset | method | vs ce | vs ls |",
        "|---|---|---|---|",
    ]
    for (dataset, method), refs in table.items():
        lines.append(f"| {dataset} | {method} | {refs.get('ce', '–')} | {refs.get('ls', '–')} |")
    return lines


def budget_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Accuracy against the whole run's compute: teacher + signal + student."""
    done = sorted((r for r in rows if r["seeds"]), key=lambda r: (r["dataset"], r["total_flops"]))
    if not done:
        return []
    lines = [
        "",
        "## Accuracy for the compute spent",
        "",
        "Total training compute of each run (teacher or autoencoder training, soft labels, "
        "frozen-teacher forwards and the student; FLOPs from `torch.utils.flop_counter`, "
        "training = 3 × forward) and its wall time, mean over seeds; `ce@Nx` is cross-entropy "
        "trained N times as long. Plot: `budget.png`.",
        "",
        "| dataset | method | total TFLOPs | total s | test best | test last |",
        "|---|---|---|---|---|---|",
    ]
    for r in done:
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['total_flops'] / 1e12:,.2f} | "
            f"{r['total_seconds']:,.0f} | {format_mean_std(r['test_best'])} | "
            f"{format_mean_std(r['test_last'])} |"
        )
    return lines


def diverged_runs(rows: list[dict[str, Any]]) -> list[str]:
    """One line per diverged run: dataset, method, seed and the error."""
    return [
        f"{row['dataset']} {row['method']} seed {failure['seed']}: {failure['error']}"
        for row in rows
        for failure in row.get("diverged", [])
    ]


def warned_runs(rows: list[dict[str, Any]]) -> list[str]:
    """One line per warning of a finished run (see reffakd.training.checks)."""
    return [
        f"{row['dataset']} {row['method']} seed {entry['seed']}: {entry['warning']}"
        for row in rows
        for entry in row.get("warnings", [])
    ]


def format_ratio(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}×" if value else "0"


CSV_FIELDS = [
    "dataset",
    "method",
    "seeds",
    "val_best_mean",
    "val_best_std",
    "val_last_mean",
    "val_last_std",
    "test_best_mean",
    "test_best_std",
    "test_last_mean",
    "test_last_std",
    "signal_flops",
    "signal_seconds",
    "signal_peak_mb",
    "signal_flops_vs_kd",
    "signal_seconds_vs_kd",
    "signal_peak_mb_vs_kd",
    "student_seconds",
    "total_flops",
    "total_seconds",
]


def results_csv(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in results["rows"]:
        writer.writerow({**row, "seeds": " ".join(map(str, row["seeds"]))})
    return buffer.getvalue()
