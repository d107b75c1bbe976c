"""A run's summary: the best-on-validation and last epochs, what ran, what it cost.

:class:`RunSummary` is ``summary.json`` typed. Every trained network (a student, an
autoencoder, a light teacher) writes the training fields; a student run adds who trained what
and how; a soft-label run adds its ``soft_labels`` record. ``records`` holds what the teacher
signal recorded under its own key (``teacher``, ``soft_labels``, ``light_teacher``, ...) and any
key this version does not know, so a file reads back and writes out unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass
class RunSummary:
    """``summary.json`` of a finished run. Fields a kind of run does not write are None."""

    # training: every trained network (an embedder-made soft-label run trains none)
    selection_metric: str | None = None
    selection_mode: str | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    best: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    train_seconds_total: float | None = None
    seconds_total: float | None = None
    # student runs: what trained on what, and how
    method: dict[str, Any] | None = None
    student: str | None = None
    student_parameters: int | None = None
    dataset: str | None = None
    data_source: str | None = None
    split_sizes: dict[str, int] | None = None
    inputs: dict[str, Any] | None = None
    seed: int | None = None
    device: str | None = None
    precision: str | None = None
    channels_last: bool | None = None
    cpu_bf16_units: str | None = None
    distributed: dict[str, Any] | None = None
    phases: dict[str, Any] | None = None
    # the soft labels' record: a soft-label run's own, or the labels a student learned from
    # (other teacher-signal records go under ``records``)
    soft_labels: dict[str, Any] | None = None
    cost: dict[str, Any] = field(default_factory=dict)
    torch: str | None = None
    python: str | None = None
    reffakd_version: str | None = None
    command: str | None = None
    warnings: list[str] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> RunSummary:
        """A summary from its JSON object; unknown keys go to ``records``."""
        known = {f.name for f in dataclasses.fields(cls)} - {"records"}
        typed = {key: value for key, value in values.items() if key in known}
        for key in ("best", "last", "cost"):
            typed[key] = typed.get(key) or {}
        typed["warnings"] = list(typed.get("warnings") or [])
        records = {key: value for key, value in values.items() if key not in known}
        return cls(**typed, records=records)

    def to_json(self) -> dict[str, Any]:
        """The JSON object: fields in order, unset ones left out, then the records."""
        values = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "records"
        }
        values = {key: value for key, value in values.items() if value is not None}
        if self.epochs is None:  # a run that trained nothing has no epoch records
            values = {k: v for k, v in values.items() if k not in ("best", "last")}
        return {**values, **self.records}

    def record(self, key: str) -> dict[str, Any]:
        """A teacher signal's record (``teacher``, ``light_teacher``, ...); {} when absent."""
        value = self.soft_labels if key == "soft_labels" else self.records.get(key)
        return value if isinstance(value, dict) else {}

    def phase_seconds(self, phase: str) -> float | None:
        """The seconds of one cost phase (``synthesis``, ...), None when not recorded."""
        for entry in self.cost.get("phases") or []:
            if entry.get("phase") == phase:
                return entry.get("seconds")
        return None

    @property
    def signal_cost(self) -> dict[str, Any]:
        """FLOPs, seconds and peak memory of the phases that made the teacher signal."""
        cost = self.cost.get("teacher_signal")
        return dict(cost) if cost else {"flops": 0.0, "seconds": 0.0, "peak_mb": 0.0}


def write_summary(run_dir: RunDir, summary: RunSummary) -> None:
    write_json(run_dir.summary, summary.to_json())


def read_summary(run: str | Path) -> RunSummary | None:
    """A run's summary.json, or None while the run is unfinished (or the file unreadable)."""
    path = Path(run) / "summary.json"
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return RunSummary.from_json(values) if isinstance(values, dict) else None


def format_percent(value: float | None) -> str:
    """``89.12%``, or ``n/a`` when a metric is missing."""
    return "n/a" if value is None else f"{value:.2f}%"


def summary_line(summary: RunSummary) -> str:
    """Best-on-validation and last-epoch accuracy in one line."""

    def accuracy(record: dict[str, Any], split: str) -> str:
        return format_percent(record.get(f"{split}_top1"))

    best, last = summary.best, summary.last
    return (
        f"best epoch {summary.best_epoch}: val {accuracy(best, 'val')} "
        f"test {accuracy(best, 'test')} | last epoch {summary.epochs}: "
        f"val {accuracy(last, 'val')} test {accuracy(last, 'test')}"
    )
