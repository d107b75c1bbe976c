"""``reffakd show DIR``: a run, soft-label run or bench directory summed up on one screen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reffakd.config import load_yaml
from reffakd.errors import UserError
from reffakd.experiments.cost import human
from reffakd.experiments.listing import table
from reffakd.experiments.report import RECONSTRUCTION_LABELS, REPORT_NAME, report_kind
from reffakd.experiments.tables import format_mean_std, warned_runs
from reffakd.training.rundir import COMMAND_FILE
from reffakd.training.summary import RunSummary, format_percent


def show(directory: Path) -> str:
    """The summary of ``directory``: finished runs and benches, or an unfinished run's progress."""
    directory = Path(directory)
    if (
        directory.is_dir()
        and (directory / "config.yaml").exists()
        and not (directory / "summary.json").exists()
    ):
        return _unfinished(directory)
    kind = report_kind(directory)
    pairs, rows = {"training": _training, "soft-labels": _soft_labels, "bench": _bench}[kind](
        directory
    )
    lines = _facts([*pairs, *_footer(directory)])
    return "\n".join([*lines, *(["", rows] if rows else [])])


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"cannot read {path}; it is missing or not valid JSON.") from None


Facts = list[tuple[str, Any]]


def _facts(pairs: Facts) -> list[str]:
    width = max(len(k) for k, _ in pairs)
    return [f"{k.ljust(width)}  {v}" for k, v in pairs if v not in (None, "")]


def _options(options: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (options or {}).items())


def _signal(summary: RunSummary) -> str:
    cost = summary.cost.get("teacher_signal") or {}
    if not cost.get("flops") and not cost.get("seconds"):
        return "none (labels only)"
    peak = f", peak {cost['peak_mb']:,.0f} MB" if cost.get("peak_mb") else ""
    return f"{human(cost.get('flops', 0.0), 'FLOPs')}, {cost.get('seconds', 0.0):,.1f} s{peak}"


def _training(directory: Path) -> tuple[Facts, str]:
    summary = RunSummary.from_json(_read(directory / "summary.json"))
    method = summary.method or {}
    options = [_options(method.get("source_options")), _options(method.get("loss_options"))]
    params = summary.student_parameters
    student = summary.student or "?"
    if isinstance(params, int):
        student += f" ({params:,} params)"
    sizes = " / ".join(f"{k} {v:,}" for k, v in (summary.split_sizes or {}).items())
    epochs = (
        f"{summary.epochs} (best {summary.best_epoch}, on {summary.selection_metric or 'val_top1'})"
    )
    seconds = summary.seconds_total or 0.0
    facts = [
        ("run", f"{directory} (training, finished)"),
        (
            "method",
            f"{method.get('name', '?')}: source {method.get('source') or 'none'}, "
            f"loss {method.get('loss', '?')}",
        ),
        ("options", "; ".join(o for o in options if o)),
        ("student", student),
        ("dataset", f"{summary.dataset or '?'} ({sizes})"),
        ("epochs", epochs),
        ("signal", _signal(summary)),
        ("time", f"{seconds:,.1f} s training, device {summary.device or '?'}"),
        ("compute", _precision(summary)),
        *_warnings(summary),
    ]
    rows = []
    for which, record, epoch in (
        ("best", summary.best, summary.best_epoch),
        ("last", summary.last, summary.epochs),
    ):
        rows.append(
            [
                f"{which} ({'?' if epoch is None else epoch})",
                format_percent(record.get("val_top1")),
                format_percent(record.get("test_top1")),
            ]
        )
    return facts, table(["epoch", "val top-1", "test top-1"], rows)


def _precision(summary: RunSummary) -> str:
    """``bf16, channels-last (CPU bf16 units: avx512_bf16)``; runs from before it was recorded
    trained in fp32 unless their config says otherwise."""
    text = summary.precision or "fp32 (not recorded)"
    if summary.channels_last:
        text += ", channels-last"
    if summary.cpu_bf16_units is not None:
        text += f" (CPU bf16 units: {summary.cpu_bf16_units})"
    return text


def _soft_labels(directory: Path) -> tuple[Facts, str]:
    summary = RunSummary.from_json(_read(directory / "summary.json"))
    meta = summary.soft_labels or {}
    classes = len(meta.get("class_names") or [])
    best = summary.best
    table_text = (
        f"{classes}x{classes}, boost {meta.get('boost')}, temperature "
        f"{meta.get('temperature')}, mean row entropy {meta.get('entropy_bits')} bits"
    )
    autoencoder = _autoencoder(summary, meta, best)
    facts = [
        ("run", f"{directory} (soft labels, finished)"),
        ("dataset", meta.get("dataset", "?")),
        ("table", table_text),
        ("autoencoder", autoencoder),
        ("cost", _signal(summary)),
        *_warnings(summary),
    ]
    return facts, ""


def _warnings(summary: RunSummary) -> Facts:
    return [("warning", text) for text in summary.warnings]


def _autoencoder(summary: RunSummary, meta: dict[str, Any], best: dict[str, Any]) -> str:
    """The autoencoder's epochs and best validation error, in its own metric."""
    if meta.get("embedder"):
        return f"none: embeddings of {meta['embedder']}"
    metric = meta.get("reconstruction_metric") or "mse"
    value = best.get(f"val_{metric}", best.get(f"train_{metric}"))
    name = RECONSTRUCTION_LABELS.get(metric, metric)
    error = f"val {name} {value:.4g}" if isinstance(value, int | float) else f"no {name} recorded"
    return f"epochs {summary.epochs} (best {summary.best_epoch}), {error}"


def _bench(directory: Path) -> tuple[Facts, str]:
    results = _read(directory / "results.json")
    suite = load_yaml(directory / "suite.yaml")
    rows = [
        [
            row.get("dataset", "?"),
            row.get("method", "?"),
            str(len(row.get("seeds") or [])),
            format_mean_std(row.get("val_best") or []),
            format_mean_std(row.get("test_best") or []),
            human(row.get("signal_flops") or 0.0),
        ]
        for row in results.get("rows") or []
    ]
    header = ["dataset", "method", "seeds", "val best", "test best", "signal FLOPs"]
    facts: Facts = [("bench", f"{directory} (suite {suite.get('name', '?')})")]
    facts += [("warning", line) for line in warned_runs(results.get("rows") or [])]
    return facts, table(header, rows)


def _footer(directory: Path) -> Facts:
    pairs: Facts = []
    commands = directory / COMMAND_FILE
    if commands.exists():
        last = commands.read_text(encoding="utf-8").strip().splitlines()[-1:]
        pairs.append(("command", last[0] if last else ""))
    report = directory / REPORT_NAME
    where = str(report) if report.exists() else f"none yet: reffakd report {directory}"
    return [*pairs, ("report", where)]


def _unfinished(directory: Path) -> str:
    config = load_yaml(directory / "config.yaml")
    records = []
    metrics = directory / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                break
    epochs = (config.get("optim") or {}).get("epochs", "?")
    last = records[-1] if records else {}
    progress = f"epoch {last.get('epoch', 0)} of {epochs}"
    if "val_top1" in last:
        progress += f", val top-1 {format_percent(last.get('val_top1'))}"
    return "\n".join(
        _facts(
            [
                ("run", f"{directory} (unfinished)"),
                ("student", config.get("student")),
                ("method", config.get("method")),
                ("dataset", (config.get("data") or {}).get("name")),
                ("progress", progress),
                ("continue", f"reffakd train --resume {directory}"),
            ]
        )
    )
