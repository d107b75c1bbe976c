"""Report sections shared by the pages: curves, AESL soft labels, cost, config, environment and
command."""

from __future__ import annotations

import platform
import shlex
from pathlib import Path
from typing import Any

from reffakd.aesl.soft_labels import SoftLabels
from reffakd.experiments.report.charts import curves_svg, heatmap_png
from reffakd.experiments.report.markup import (
    Section,
    epoch_value,
    esc,
    facts_list,
    figure_html,
    fmt_count,
    fmt_flops,
    fmt_mb,
    fmt_seconds,
    html_table,
    note,
    png_figure,
    pre_block,
)
from reffakd.experiments.report.reading import COMMAND_FILE, read_png


def curves_section(directory: Path, records: list[dict[str, Any]]) -> Section:
    svg = curves_svg(records, "curves") if records else None
    if svg:
        body = figure_html(svg, "Per epoch, from metrics.jsonl.") + _epoch_table(records)
    elif (directory / "curves.png").exists():
        body = png_figure(read_png(directory / "curves.png"), "curves.png of the run.")
    else:
        body = note("No metrics.jsonl or curves.png in this directory.")
    return Section("curves", "Training curves", body)


def _epoch_table(records: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in records for k in r))
    rows = [[epoch_value(r.get(k)) for k in keys] for r in records]
    return f"<details><summary>every epoch as numbers</summary>{html_table(keys, rows)}</details>"


def aesl_section(labels: SoftLabels | None, fallback_png: Path | None, title: str) -> Section:
    if labels is not None:
        meta = labels.meta
        facts = facts_list(
            [
                ("classes", labels.num_classes),
                ("diagonal boost", meta.get("boost")),
                ("temperature", meta.get("temperature")),
                ("samples per class", meta.get("samples_per_class")),
                ("embedding dim", meta.get("embedding_dim")),
                ("mean row entropy (bits)", meta.get("entropy_bits")),
                ("AE epochs (best)", _ae_epochs(meta)),
                ("AE weights sha256", meta.get("ae_weights_sha256")),
            ]
        )
        figure = png_figure(heatmap_png(labels, title), f"{title}: row = true class.", "heatmap")
        body = f'<div class="side">{figure}{facts}</div>'
    elif fallback_png is not None and fallback_png.exists():
        caption = f"{title} ({fallback_png.name} of this directory)."
        body = png_figure(read_png(fallback_png), caption, "heatmap")
    else:
        return Section("aesl", "AESL soft labels", note("No AESL soft labels in this directory."))
    return Section("aesl", "AESL soft labels", body)


def _ae_epochs(meta: dict[str, Any]) -> str | None:
    if meta.get("ae_epochs") is None:
        return None
    return f"{meta['ae_epochs']} ({meta.get('ae_best_epoch', '–')})"


def cost_section(cost: dict[str, Any] | None) -> Section:
    phases = (cost or {}).get("phases") or []
    if not phases:
        return Section("cost", "Cost per phase", note("summary.json records no cost phases."))
    header = ["phase", "networks", "params trained", "FLOPs", "seconds", "peak memory"]
    rows = [
        [
            p["phase"],
            _networks_text(p.get("networks") or {}),
            fmt_count(p.get("params_trained")),
            fmt_flops(p.get("total_flops")),
            fmt_seconds(p.get("seconds")),
            _memory_text(p),
        ]
        for p in phases
    ]
    total = cost.get("total") if cost else None
    if total:
        rows.append(
            [
                "total",
                "",
                fmt_count(total.get("params_trained")),
                fmt_flops(total.get("total_flops")),
                fmt_seconds(total.get("seconds")),
                _memory_text(total),
            ]
        )
    body = html_table(header, rows, ["hl" if r[0] == "total" else "" for r in rows])
    signal = (cost or {}).get("teacher_signal")
    if signal:
        body += note(
            f"Teacher signal: {fmt_flops(signal.get('flops'))} (of which "
            f"{fmt_flops(signal.get('inference_flops_during_distillation'))} frozen-teacher "
            f"inference during distillation), {fmt_seconds(signal.get('seconds'))} s, peak "
            f"{fmt_mb(signal.get('peak_mb'))}, {fmt_count(signal.get('params'))} parameters "
            "trained."
        )
    body += note(
        "FLOPs count matmul and convolution ops only; training = 3 × forward × samples, a frozen "
        "network 1 × forward × samples. Peak memory is the phase's own peak RSS on CPU, the "
        "allocator peak on CUDA."
    )
    return Section("cost", "Cost per phase", body)


def _networks_text(networks: dict[str, Any]) -> str:
    parts = []
    for name, net in networks.items():
        role = "trained" if net.get("trained") else "frozen"
        forward = fmt_flops(net.get("forward_flops"))
        parts.append(f"{name} ({role}, {fmt_count(net.get('params'))} params, {forward}/sample)")
    return "; ".join(parts)


def _memory_text(record: dict[str, Any]) -> str:
    if record.get("cuda_peak_mb") is not None:
        return f"{fmt_mb(record['cuda_peak_mb'])} CUDA"
    if record.get("peak_rss_mb") is not None:
        return f"{fmt_mb(record['peak_rss_mb'])} RSS"
    return "–"


def config_section(directory: Path, name: str) -> Section:
    path = directory / name
    body = pre_block(path.read_text(encoding="utf-8")) if path.exists() else note(f"No {name}.")
    return Section("config", "Resolved config", f"<h3>{esc(name)}</h3>{body}")


def environment_section(recorded: dict[str, Any], where: str) -> Section:
    """Versions from a summary where recorded, else of the process writing the report."""
    import torch

    from reffakd import __version__

    current = {"torch": torch.__version__, "python": platform.python_version()}
    current["reffakd_version"] = __version__
    rows = []
    for key, label in (
        ("torch", "torch"),
        ("python", "python"),
        ("device", "device"),
        ("precision", "precision"),
        ("cpu_bf16_units", "CPU bf16 units"),
        ("reffakd_version", "reffakd"),
    ):
        if recorded.get(key) is not None:
            rows.append([label, str(recorded[key]), f"recorded in {where}"])
        elif key in current:
            rows.append([label, current[key], "not recorded; the version writing this report"])
        else:
            rows.append([label, "–", "not recorded"])
    return Section("environment", "Environment", html_table(["what", "value", "source"], rows))


def command_section(directory: Path, command: Any, equivalent: str) -> Section:
    """The recorded command line (``command``: the summary's, a string or an older file's
    list), else command.txt, else ``equivalent``."""
    recorded = _recorded_command(directory, command)
    if recorded is not None:
        text, where = recorded
        body = pre_block(text) + note(f"As recorded in {where}.")
    else:
        body = note(
            "The command line was not recorded (no command.txt, no 'command' in "
            "summary.json). An equivalent command, from the files here:"
        ) + pre_block(equivalent)
    return Section("command", "Command", body)


def _recorded_command(directory: Path, command: Any) -> tuple[str, str] | None:
    if isinstance(command, str) and command.strip():
        return command, "summary.json"
    if isinstance(command, list) and command and all(isinstance(c, str) for c in command):
        return shlex.join(command), "summary.json"
    path = directory / COMMAND_FILE
    if path.exists():
        return path.read_text(encoding="utf-8"), COMMAND_FILE
    return None
