"""The three kinds of page: a training run, a soft-label run and a bench. Each builder returns
the page's title, subtitle and sections."""

from __future__ import annotations

import shlex
import statistics
from pathlib import Path
from typing import Any

from reffakd.aesl.soft_labels import SoftLabels
from reffakd.config import load_yaml
from reffakd.experiments.report.charts import accuracy_vs_cost_svg, method_curves_svg
from reffakd.experiments.report.markup import (
    Section,
    compact,
    epoch_value,
    esc,
    facts_list,
    figure_html,
    fmt_count,
    fmt_flops,
    fmt_mb,
    fmt_pct,
    fmt_seconds,
    html_table,
    note,
    png_figure,
    warnings_html,
)
from reffakd.experiments.report.reading import (
    RunList,
    bench_rows,
    bench_runs,
    read_json,
    read_metrics,
    read_png,
    read_run_summary,
)
from reffakd.experiments.report.sections import (
    aesl_section,
    command_section,
    config_section,
    cost_section,
    curves_section,
    environment_section,
)
from reffakd.experiments.tables import (
    diverged_runs,
    format_difference,
    format_mean_std,
    format_ratio,
    warned_runs,
)
from reffakd.training.summary import RunSummary


def training_page(directory: Path) -> tuple[str, str, list[Section]]:
    summary = read_run_summary(directory)
    records = read_metrics(directory / "metrics.jsonl")
    method = summary.method or {}
    name = method.get("name") or load_yaml(directory / "config.yaml").get("method", "?")
    title = f"Training run: {name} · {summary.student or '?'} · {summary.dataset or '?'}"
    subtitle = f"{directory} · seed {_or_dash(summary.seed)}"
    labels_path = directory / "soft_labels.pt"
    sections = [
        Section(
            "results",
            "Results",
            warnings_html(summary.warnings) + _run_results(summary) + _run_facts(summary),
        ),
        curves_section(directory, records),
    ]
    if labels_path.exists():
        labels = SoftLabels.load(labels_path)
        sections.append(aesl_section(labels, None, f"AESL, {summary.dataset or ''}"))
    quoted = shlex.quote(str(directory))
    equivalent = f"reffakd train --config {quoted}/config.yaml --out {quoted}-rerun"
    sections += [
        cost_section(summary.cost),
        config_section(directory, "config.yaml"),
        environment_section(summary.to_json(), "summary.json"),
        command_section(directory, summary.command, equivalent),
    ]
    return title, subtitle, sections


def _or_dash(value: Any) -> str:
    return "–" if value is None else str(value)


def _run_results(summary: RunSummary) -> str:
    header = [
        "epoch",
        "val top-1",
        "val top-5",
        "test top-1",
        "test top-5",
        "val loss",
        "test loss",
    ]
    rows = []
    for which, record, epoch in (
        ("best", summary.best, summary.best_epoch),
        ("last", summary.last, summary.epochs),
    ):
        rows.append(
            [
                f"{which} ({_or_dash(epoch)})",
                fmt_pct(record.get("val_top1")),
                fmt_pct(record.get("val_top5")),
                fmt_pct(record.get("test_top1")),
                fmt_pct(record.get("test_top5")),
                epoch_value(record.get("val_loss")),
                epoch_value(record.get("test_loss")),
            ]
        )
    return html_table(header, rows) + note(
        "Accuracy in %. best = the epoch with the best validation top-1 (the checkpoint kept); "
        "last = the final epoch. The test split is never used for a choice."
    )


def _run_facts(summary: RunSummary) -> str:
    method = summary.method or {}
    sizes = summary.split_sizes or {}
    params = fmt_count(summary.student_parameters)
    teacher, light_teacher = summary.record("teacher"), summary.record("light_teacher")
    return facts_list(
        [
            ("student", f"{summary.student or '–'} ({params} params)"),
            ("method", method.get("name")),
            (
                "teacher-signal source",
                _with_options(method.get("source"), method.get("source_options")),
            ),
            ("loss", _with_options(method.get("loss"), method.get("loss_options"))),
            ("teacher", compact(teacher) if teacher else None),
            ("light teacher", compact(light_teacher) if light_teacher else None),
            ("splits", ", ".join(f"{k} {fmt_count(v)}" for k, v in sizes.items()) or None),
            ("epochs", summary.epochs),
            ("wall time", f"{fmt_seconds(summary.seconds_total)} s"),
        ]
    )


def _with_options(name: Any, options: Any) -> str | None:
    if name is None:
        return "none"
    return f"{name} ({compact(options)})" if options else str(name)


# The autoencoders' reconstruction losses (aesl.autoencoder.AUTOENCODERS), as table headers.
RECONSTRUCTION_LABELS = {"mse": "MSE", "token_ce": "token CE"}


def soft_label_page(directory: Path) -> tuple[str, str, list[Section]]:
    summary = read_run_summary(directory)
    labels = SoftLabels.load(directory / "soft_labels.pt")
    meta = {**(summary.soft_labels or {}), **labels.meta}
    dataset = meta.get("dataset", "?")
    title = f"Soft-label run: AESL · {dataset}"
    subtitle = f"{directory} · seed {meta.get('seed', '–')}"
    metric = meta.get("reconstruction_metric", "mse")
    label = RECONSTRUCTION_LABELS.get(metric, metric)
    header = ["epoch", *(f"{split} {label}" for split in ("train", "val", "test"))]
    rows = [
        [
            f"{which} ({_or_dash(epoch)})",
            *(epoch_value(record.get(f"{s}_{metric}")) for s in ("train", "val", "test")),
        ]
        for which, record, epoch in (
            ("best", summary.best, summary.best_epoch),
            ("last", summary.last, summary.epochs),
        )
        if summary.epochs is not None
    ]
    results = html_table(header, rows) + note(
        f"Autoencoder reconstruction error; best = the epoch with the lowest validation {label}, "
        "whose weights make the soft labels."
    )
    if meta.get("embedder"):  # a pretrained encoder, nothing trained
        results = note(f"Embeddings of the pretrained encoder {meta['embedder']} (no training).")
    quoted = shlex.quote(str(directory))
    equivalent = f"reffakd soft-labels --config {quoted}/config.yaml --out {quoted}-rerun"
    recorded = {"reffakd_version": meta.get("reffakd_version"), **summary.to_json()}
    sections = [
        Section("results", "Results", warnings_html(summary.warnings) + results),
        aesl_section(labels, None, f"AESL, {dataset}"),
        curves_section(directory, read_metrics(directory / "metrics.jsonl")),
        cost_section(summary.cost),
        config_section(directory, "config.yaml"),
        environment_section(recorded, "summary.json / soft_labels.pt"),
        command_section(directory, summary.command, equivalent),
    ]
    return title, subtitle, sections


def bench_page(directory: Path) -> tuple[str, str, list[Section]]:
    suite = load_yaml(directory / "suite.yaml")
    rows = bench_rows(directory)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    runs = bench_runs(directory, rows)
    name = suite.get("name") or directory.name
    title = f"Bench: {name}"
    seeds = suite.get("seeds") or []
    subtitle = (
        f"{directory} · {', '.join(datasets)} · {len(rows)} rows · "
        f"seeds {', '.join(map(str, seeds)) or '–'}"
    )
    sections = [
        Section("results", "Results", _bench_results(suite, rows)),
        _bench_cost_plot_section(directory, rows, datasets),
        _bench_curves_section(directory, runs, datasets),
    ]
    sections += _bench_significance_sections(directory, rows)
    sections += _bench_aesl_sections(directory, datasets, seeds)
    sections.append(_bench_cost_section(runs, datasets))
    sections.append(config_section(directory, "suite.yaml"))
    first = next((s for per in runs.values() for _, s, _ in per), None)
    where = "the bench's first run summary.json" if first else "this directory"
    sections.append(environment_section(first.to_json() if first else {}, where))
    quoted = shlex.quote(str(directory))
    equivalent = f"reffakd bench {quoted}/suite.yaml --out {quoted}"
    sections.append(command_section(directory, None, equivalent))
    return title, subtitle, sections


BENCH_HEADER = (
    "dataset",
    "method",
    "seeds",
    "val best",
    "val last",
    "test best",
    "test last",
    "signal GFLOPs",
    "signal s",
    "signal peak MB",
    "FLOPs vs KD",
    "time vs KD",
    "memory vs KD",
)


def _bench_results(suite: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    header = list(BENCH_HEADER)
    table_rows = [
        [
            row["dataset"],
            row["method"],
            str(len(row["seeds"])),
            format_mean_std(row["val_best"]),
            format_mean_std(row["val_last"]),
            format_mean_std(row["test_best"]),
            format_mean_std(row["test_last"]),
            f"{row['signal_flops'] / 1e9:,.1f}",
            f"{row['signal_seconds']:,.1f}",
            f"{row['signal_peak_mb']:,.0f}",
            format_ratio(row.get("signal_flops_vs_kd")),
            format_ratio(row.get("signal_seconds_vs_kd")),
            format_ratio(row.get("signal_peak_mb_vs_kd")),
        ]
        for row in rows
    ]
    if len({r["dataset"] for r in rows}) == 1:  # one dataset: it is named in the subtitle
        header, table_rows = header[1:], [cells[1:] for cells in table_rows]
    highlight = ["hl" if r["method"].split("+")[0] == "reffakd" else "" for r in rows]
    description = str(suite.get("description") or "").strip()
    intro = f"<p>{esc(description)}</p>" if description else ""
    diverged = diverged_runs(rows)
    return (
        intro
        + html_table(header, table_rows, highlight)
        + (
            note("Diverged (non-finite loss; not in the means): " + "; ".join(diverged))
            if diverged
            else ""
        )
        + warnings_html(warned_runs(rows))
        + note(
            "Top-1 accuracy (%), mean ± sample std over seeds; best = the epoch with the best "
            "validation accuracy, last = the final epoch. Teacher-signal cost is what it takes to "
            "make the soft targets (training the teacher or autoencoder, computing soft labels, "
            "running a frozen teacher during distillation); ratios are against vanilla KD's. "
            "ReffAKD rows are highlighted."
        )
    )


def _bench_cost_plot_section(
    directory: Path, rows: list[dict[str, Any]], datasets: list[str]
) -> Section:
    parts = []
    for i, dataset in enumerate(datasets):
        svg = accuracy_vs_cost_svg([r for r in rows if r["dataset"] == dataset], f"cost{i}")
        if svg:
            parts.append(figure_html(svg, f"{dataset}: test top-1 against teacher-signal FLOPs."))
    if not parts and (directory / "accuracy_vs_cost.png").exists():
        parts.append(
            png_figure(read_png(directory / "accuracy_vs_cost.png"), "accuracy_vs_cost.png")
        )
    body = "".join(parts) or note("No finished rows to plot.")
    return Section("accuracy-cost", "Accuracy against teacher-signal cost", body)


def _bench_curves_section(
    directory: Path, runs: dict[tuple[str, str], RunList], datasets: list[str]
) -> Section:
    parts = []
    for i, dataset in enumerate(datasets):
        curves = {
            method: [records for _, _, records in per if records]
            for (d, method), per in runs.items()
            if d == dataset and any(records for _, _, records in per)
        }
        svg = method_curves_svg(curves, f"curves{i}")
        if svg:
            parts.append(
                figure_html(svg, f"{dataset}: validation top-1 per epoch, mean over seeds.")
            )
    if not parts and (directory / "curves.png").exists():
        caption = "curves.png of the bench (per-run metrics are not in this directory)."
        parts.append(png_figure(read_png(directory / "curves.png"), caption))
    body = "".join(parts) or note("No per-run metrics and no curves.png in this directory.")
    return Section("curves", "Training curves", body)


def _bench_significance_sections(directory: Path, rows: list[dict[str, Any]]) -> list[Section]:
    """Differences against ce and ls with their intervals, and accuracy for the compute."""
    comparisons = read_json(directory / "results.json").get("comparisons") or []
    sections = [_differences_section(comparisons)] if comparisons else []
    done = sorted(
        (r for r in rows if r["seeds"] and r.get("total_flops")),
        key=lambda r: (r["dataset"], r["total_flops"]),
    )
    if done:
        sections.append(_budget_section(directory, done))
    return sections


def _differences_section(comparisons: list[dict[str, Any]]) -> Section:
    table: dict[tuple[str, str], dict[str, str]] = {}
    for c in comparisons:
        table.setdefault((c["dataset"], c["method"]), {})[c["reference"]] = format_difference(c)
    body = note(
        "Test top-1 (best-on-val epoch), method − reference in points: mean, 95% interval "
        "(paired by seed) and Welch's p; better/worse only when the interval excludes 0."
    ) + html_table(
        ["dataset", "method", "vs ce", "vs ls"],
        [[d, m, r.get("ce", "–"), r.get("ls", "–")] for (d, m), r in table.items()],
    )
    return Section("differences", "Differences against ce and ls", body)


def _budget_section(directory: Path, done: list[dict[str, Any]]) -> Section:
    body = html_table(
        ["dataset", "method", "total FLOPs", "total s", "test best", "test last"],
        [
            [
                r["dataset"],
                r["method"],
                fmt_flops(r["total_flops"]),
                fmt_seconds(r["total_seconds"]),
                format_mean_std(r["test_best"]),
                format_mean_std(r["test_last"]),
            ]
            for r in done
        ],
    )
    if (directory / "budget.png").exists():
        plot = png_figure(read_png(directory / "budget.png"), "accuracy vs total FLOPs")
        body = plot + body
    return Section("budget", "Accuracy for the compute spent", body)


def _bench_aesl_sections(directory: Path, datasets: list[str], seeds: list[Any]) -> list[Section]:
    sections = []
    for dataset in datasets:
        seed = seeds[0] if seeds else 0
        labels_path = directory / "shared" / dataset / f"s{seed}" / "aesl" / "soft_labels.pt"
        labels = SoftLabels.load(labels_path) if labels_path.exists() else None
        fallback = directory / f"aesl_{dataset}.png"
        if labels is None and not fallback.exists():
            continue
        section = aesl_section(labels, fallback, f"AESL, {dataset}, seed {seed}")
        if len(datasets) > 1:
            section = Section(f"aesl-{dataset}", f"AESL soft labels: {dataset}", section.body)
        sections.append(section)
    return sections


def _bench_cost_section(runs: dict[tuple[str, str], RunList], datasets: list[str]) -> Section:
    """Each method's phases, mean over its seeds (FLOPs are the same for every seed)."""
    header = ["dataset", "method", "phase", "params trained", "FLOPs", "seconds", "peak memory"]
    rows = []
    for (dataset, method), per in runs.items():
        by_phase: dict[str, list[dict[str, Any]]] = {}
        for _, summary, _ in per:
            for phase in summary.cost.get("phases") or []:
                by_phase.setdefault(phase["phase"], []).append(phase)
        for phase, records in by_phase.items():
            rows.append(
                [
                    dataset,
                    method,
                    phase,
                    fmt_count(_mean_of(records, "params_trained")),
                    fmt_flops(_mean_of(records, "total_flops")),
                    fmt_seconds(_mean_of(records, "seconds")),
                    fmt_mb(_mean_of(records, "cuda_peak_mb") or _mean_of(records, "peak_rss_mb")),
                ]
            )
    if not rows:
        body = note(
            "The per-run summaries (runs/DATASET/METHOD/sSEED/summary.json) are not in this "
            "directory; the results table above holds the teacher-signal totals."
        )
    else:
        rows.sort(key=lambda r: datasets.index(r[0]) if r[0] in datasets else len(datasets))
        body = html_table(header, rows) + note("Mean over the seeds of each method.")
    return Section("cost", "Cost per phase", body)


def _mean_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.fmean(values) if values else None
