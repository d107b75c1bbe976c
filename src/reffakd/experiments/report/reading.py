"""Which kind of directory a report is for, and the files it reads there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reffakd.errors import UserError
from reffakd.training.summary import RunSummary

REPORT_NAME = "report.html"
COMMAND_FILE = "command.txt"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report_kind(directory: Path) -> str:
    """``"training"``, ``"soft-labels"`` or ``"bench"``; UserError saying what is missing."""
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory; pass a run or bench directory.")
    bench_files = [name for name in ("results.json", "suite.yaml") if (directory / name).exists()]
    if bench_files:
        missing = {"results.json", "suite.yaml"} - set(bench_files)
        if missing:
            raise UserError(
                f"{directory} looks like a bench directory but has no {missing.pop()}; "
                "finish it with `reffakd bench SUITE --out DIR`."
            )
        return "bench"
    if not (directory / "summary.json").exists():
        if (directory / "config.yaml").exists():
            raise UserError(
                f"{directory} holds a run that has not finished (no summary.json); "
                "finish it with --resume first."
            )
        raise UserError(
            f"{directory} is neither a run directory (config.yaml + summary.json) nor a bench "
            "directory (results.json + suite.yaml)."
        )
    summary = read_json(directory / "summary.json")
    if "soft_labels" in summary and "method" not in summary:  # a student run records its method
        if not (directory / "soft_labels.pt").exists():
            raise UserError(f"soft-label run {directory} has summary.json but no soft_labels.pt.")
        return "soft-labels"
    if "best" not in summary or "last" not in summary:
        raise UserError(
            f"{directory / 'summary.json'} has no 'best' and 'last' records; it was not "
            "written by `reffakd train` or `reffakd soft-labels`."
        )
    if not (directory / "config.yaml").exists():
        raise UserError(f"training run {directory} has summary.json but no config.yaml.")
    return "training"


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"cannot read {path} ({type(exc).__name__}); it is not valid JSON."
        ) from None
    if not isinstance(value, dict):
        raise UserError(f"{path} must hold a JSON object.")
    return value


def read_run_summary(run: Path) -> RunSummary:
    """``run/summary.json`` as a :class:`RunSummary`; a UserError when it is not valid JSON."""
    return RunSummary.from_json(read_json(run / "summary.json"))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Per-epoch records of ``metrics.jsonl``; [] when the file does not exist."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(
                f"{path} line {number} is not valid JSON; the file is damaged."
            ) from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise UserError(f"{path} line {number} is not an epoch record.")
        records.append(record)
    return records


def read_png(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise UserError(f"{path} is not a PNG image; remove it or regenerate it.")
    return data


BENCH_KEYS = (
    "dataset",
    "method",
    "seeds",
    "val_best",
    "val_last",
    "test_best",
    "test_last",
    "test_best_mean",
    "test_best_std",
    "signal_flops",
    "signal_seconds",
    "signal_peak_mb",
)


def bench_rows(directory: Path) -> list[dict[str, Any]]:
    """The rows of ``results.json``, each checked for the keys the bench page reads."""
    results = read_json(directory / "results.json")
    rows = results.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{directory / 'results.json'} has no list of 'rows'; rerun the bench.")
    for number, row in enumerate(rows, start=1):
        missing = [k for k in BENCH_KEYS if k not in row]
        if missing:
            raise UserError(
                f"{directory / 'results.json'} row {number} lacks {', '.join(missing)}; "
                "rerun the bench to rewrite it."
            )
    return rows


RunList = list[tuple[int, RunSummary, list[dict[str, Any]]]]


def bench_runs(directory: Path, rows: list[dict[str, Any]]) -> dict[tuple[str, str], RunList]:
    """(dataset, method) -> [(seed, summary, metrics records)] for runs present on disk."""
    runs: dict[tuple[str, str], RunList] = {}
    for row in rows:
        for seed in row["seeds"]:
            run = directory / "runs" / row["dataset"] / row["method"] / f"s{seed}"
            if (run / "summary.json").exists():
                found = (
                    seed,
                    read_run_summary(run),
                    read_metrics(run / "metrics.jsonl"),
                )
                runs.setdefault((row["dataset"], row["method"]), []).append(found)
    return runs
