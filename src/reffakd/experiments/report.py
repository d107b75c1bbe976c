"""``report.html``: one self-contained page that shows a run or a bench at a glance.

:func:`write_report` recognises three kinds of directory and writes ``DIR/report.html``:

* a training run: ``config.yaml`` and a ``summary.json`` with a ``best`` record;
* a soft-label run: ``soft_labels.pt`` and a ``summary.json`` with a ``soft_labels`` record;
* a bench: ``results.json`` and ``suite.yaml`` (per-run directories under ``runs/`` are used
  when present; without them the bench's own PNG plots are shown instead).

The page holds the results table (numbers as text), the training curves, the AESL heatmap, the
cost per phase, the resolved config, the environment and the command that made the directory.
Plots are inline SVG, or PNG as ``data:`` URIs; the page loads nothing else (no scripts, no
external style sheets, fonts or images). The command is read from ``summary.json``'s
``command`` key or from ``command.txt``; where neither exists an equivalent command is given.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import platform
import re
import shlex
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reffakd.aesl.heatmap import heatmap_figure
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.config import load_yaml
from reffakd.errors import UserError
from reffakd.experiments.cost import human
from reffakd.experiments.tables import (
    diverged_runs,
    format_difference,
    format_mean_std,
    format_ratio,
    warned_runs,
)
from reffakd.files import atomic_write_text, figure_png, pyplot

REPORT_NAME = "report.html"
COMMAND_FILE = "command.txt"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Keys of a metrics record that are neither an accuracy nor a loss.
NOT_LOSSES = {"epoch", "lr", "seconds", "train_seconds"}


@dataclass
class Section:
    anchor: str
    title: str
    body: str


# ---------------------------------------------------------------------------- entry point
def write_report(directory: Path) -> Path:
    """Write ``directory/report.html`` (atomically) for a run or bench directory; return its path.

    Raises :class:`UserError` with one line naming what is missing when ``directory`` is not a
    finished training run, soft-label run or bench.
    """
    directory = Path(directory)
    kind = report_kind(directory)
    builders = {"training": _training_page, "soft-labels": _soft_label_page, "bench": _bench_page}
    title, subtitle, sections = builders[kind](directory)
    path = directory / REPORT_NAME
    atomic_write_text(path, _page(title, subtitle, sections))
    return path


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
    summary = _read_json(directory / "summary.json")
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


# ---------------------------------------------------------------------------- readers
def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"cannot read {path} ({type(exc).__name__}); it is not valid JSON."
        ) from None
    if not isinstance(value, dict):
        raise UserError(f"{path} must hold a JSON object.")
    return value


def _read_metrics(path: Path) -> list[dict[str, Any]]:
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


def _read_png(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise UserError(f"{path} is not a PNG image; remove it or regenerate it.")
    return data


# ---------------------------------------------------------------------------- formatting
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f}"


def _count(value: Any) -> str:
    return "–" if value is None else f"{int(value):,}"


def _flops(value: Any) -> str:
    return "–" if value is None else human(float(value), "FLOPs")


def _seconds(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.1f}"


def _mb(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.1f} MB"


def _compact(value: Any) -> str:
    """A short one-line text for a config-like value."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items()) or "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ---------------------------------------------------------------------------- HTML pieces
def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], row_classes: Sequence[str] = ()
) -> str:
    """An HTML table; every cell is escaped text. Cells that look numeric are right-aligned;
    ``row_classes[i]`` is a CSS class for row ``i`` (``"hl"`` highlights it)."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    lines = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{_esc(c)}</td>' if _looks_numeric(c) else f"<td>{_esc(c)}</td>"
            for c in row
        )
        css = row_classes[i] if i < len(row_classes) else ""
        lines.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table></div>"
    )


def _looks_numeric(text: str) -> bool:
    """``1,656.7``, ``90.07 ± 0.09``, ``0.037×``, ``465.1 MB``, or the dash of a missing value."""
    return re.match(r"^[-–+]?[\d,.]+([ ±×%]|$)|^–$", text) is not None


def _facts(pairs: Iterable[tuple[str, Any]]) -> str:
    items = "".join(
        f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in pairs if v not in (None, "")
    )
    return f'<dl class="facts">{items}</dl>'


def _pre(text: str) -> str:
    return f"<pre>{_esc(text.rstrip())}</pre>"


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _warnings(summary: dict[str, Any]) -> str:
    """The run's recorded warnings (see reffakd.training.checks), above its results."""
    return "".join(
        f'<p class="warning">Warning: {_esc(text)}</p>' for text in summary.get("warnings") or []
    )


def _figure(content: str, caption: str, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<figure{attr}>{content}<figcaption>{_esc(caption)}</figcaption></figure>"


def _png_figure(data: bytes, caption: str, css: str = "") -> str:
    encoded = base64.b64encode(data).decode("ascii")
    image = f'<img src="data:image/png;base64,{encoded}" alt="{_esc(caption)}">'
    return _figure(image, caption, css)


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
    return text.replace("<svg ", f'<svg role="img" aria-label="{_esc(name)}" ', 1)


CSS = """
body{margin:0;background:#f4f5f7;color:#1d2430;line-height:1.45;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"DejaVu Sans",
sans-serif}
main{max-width:1140px;margin:0 auto;padding:22px 28px 48px;background:#fff;
box-shadow:0 0 0 1px #e2e5ea}
h1{font-size:1.55rem;margin:0 0 2px}
.sub{color:#5b6675;margin:0 0 10px;font-size:.92rem}
nav{font-size:.85rem;margin:6px 0 4px}
nav a{color:#2456a6;text-decoration:none;margin-right:14px}
h2{font-size:1.12rem;border-bottom:2px solid #e2e5ea;padding-bottom:3px;margin:28px 0 10px}
h3{font-size:.98rem;margin:16px 0 6px}
table{border-collapse:collapse;font-size:.84rem;margin:6px 0}
th,td{padding:4px 7px;border-bottom:1px solid #e6e8eb;text-align:left;white-space:nowrap}
th{background:#edf0f4;font-weight:600;white-space:normal;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
tbody tr.hl{background:#fff4d6}
.scroll{overflow-x:auto}
figure{margin:10px 0 18px}
figure svg,figure img{max-width:100%;height:auto;display:block}
figcaption{color:#5b6675;font-size:.84rem;margin-top:2px}
pre{background:#f3f4f6;padding:10px 12px;border-radius:6px;overflow:auto;font-size:.8rem;
line-height:1.35;max-height:36em}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 18px;margin:6px 0;
font-size:.9rem}
dl.facts dt{color:#5b6675}
dl.facts dd{margin:0}
.note{color:#5b6675;font-size:.88rem;margin:4px 0}
.warning{background:#fff4e5;border-left:4px solid #e8a33d;padding:6px 10px;margin:6px 0}
figure.heatmap img{max-width:640px}
.side{display:flex;flex-wrap:wrap;gap:8px 28px;align-items:flex-start}
.side figure{flex:1 1 520px;max-width:640px}
.side dl{flex:1 1 300px;margin-top:24px}
dl.facts dd{overflow-wrap:anywhere}
details summary{cursor:pointer;color:#2456a6;font-size:.88rem}
"""


def _page(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{_esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{_esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head>"
        f'<body><main><header><h1>{_esc(title)}</h1><p class="sub">{_esc(subtitle)}</p>'
        f"<nav>{nav}</nav></header>{body}</main></body></html>\n"
    )


# ---------------------------------------------------------------------------- plots
def _curves_svg(records: list[dict[str, Any]], name: str) -> str | None:
    """Top-1 (train/val/test) and every loss term against epoch, side by side."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    accuracy = [k for k in keys if k.endswith("_top1")]
    losses = [k for k in keys if k not in NOT_LOSSES and not k.endswith(("_top1", "_top5"))]
    panels = [(k, label) for k, label in ((accuracy, "top-1 %"), (losses, "loss")) if k]
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.5), squeeze=False)
    epochs = _epochs(records)
    for ax, (panel_keys, label) in zip(axes[0], panels, strict=True):
        for key in panel_keys:
            values = [r.get(key) for r in records]
            values = [math.nan if v is None else v for v in values]
            ax.plot(epochs, values, marker="o", markersize=3, linewidth=1.5, label=key)
        _epoch_axis(ax, epochs)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _svg(fig, name)


def _epochs(records: list[dict[str, Any]]) -> list[int]:
    return [r["epoch"] for r in records]


def _epoch_axis(ax: Any, epochs: list[int]) -> None:
    """Whole-number epoch ticks; a single epoch sits in the middle of the axis."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(set(epochs)) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)


def _accuracy_vs_cost_svg(rows: list[dict[str, Any]], name: str) -> str | None:
    """Test top-1 (best-on-val epoch, mean ± std) against teacher-signal FLOPs, log x."""
    rows = [r for r in rows if r.get("seeds")]
    if not rows:
        return None
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
    ax.set_xlim(floor / 2, max(p[0] for p in points) * 6)  # room for the labels on the right
    _label_points(ax, points)
    ax.set_xlabel(f"teacher-signal FLOPs (log scale; methods without a signal at {floor:.0e})")
    ax.set_ylabel("test top-1 % (best-on-val epoch)")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _svg(fig, name)


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


def _method_curves_svg(curves: dict[str, list[list[dict[str, Any]]]], name: str) -> str | None:
    """Validation top-1 against epoch, one line per method: the mean over its seeds."""
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    colors = plt.get_cmap("tab20").colors
    for i, (method, runs) in enumerate(curves.items()):
        by_epoch: dict[int, list[float]] = {}
        for records in runs:
            for r in records:
                if r.get("val_top1") is not None:
                    by_epoch.setdefault(r["epoch"], []).append(r["val_top1"])
        epochs = sorted(by_epoch)
        means = [statistics.fmean(by_epoch[e]) for e in epochs]
        style = "-" if method.startswith("reffakd") else "--" if method.startswith("kd") else ":"
        ax.plot(epochs, means, style, marker="o", markersize=3, label=method, color=colors[i % 20])
    _epoch_axis(ax, [e for runs in curves.values() for records in runs for e in _epochs(records)])
    ax.set_ylabel("validation top-1 % (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _svg(fig, name)


def _heatmap_png(labels: SoftLabels, title: str) -> bytes:
    return figure_png(heatmap_figure(labels, title), dpi=110)


# ---------------------------------------------------------------------------- shared sections
def _curves_section(directory: Path, records: list[dict[str, Any]]) -> Section:
    svg = _curves_svg(records, "curves") if records else None
    if svg:
        body = _figure(svg, "Per epoch, from metrics.jsonl.") + _epoch_table(records)
    elif (directory / "curves.png").exists():
        body = _png_figure(_read_png(directory / "curves.png"), "curves.png of the run.")
    else:
        body = _note("No metrics.jsonl or curves.png in this directory.")
    return Section("curves", "Training curves", body)


def _epoch_table(records: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in records for k in r))
    rows = [[_epoch_value(r.get(k)) for k in keys] for r in records]
    return f"<details><summary>every epoch as numbers</summary>{_table(keys, rows)}</details>"


def _epoch_value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def _aesl_section(labels: SoftLabels | None, fallback_png: Path | None, title: str) -> Section:
    if labels is not None:
        meta = labels.meta
        facts = _facts(
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
        figure = _png_figure(_heatmap_png(labels, title), f"{title}: row = true class.", "heatmap")
        body = f'<div class="side">{figure}{facts}</div>'
    elif fallback_png is not None and fallback_png.exists():
        caption = f"{title} ({fallback_png.name} of this directory)."
        body = _png_figure(_read_png(fallback_png), caption, "heatmap")
    else:
        return Section("aesl", "AESL soft labels", _note("No AESL soft labels in this directory."))
    return Section("aesl", "AESL soft labels", body)


def _ae_epochs(meta: dict[str, Any]) -> str | None:
    if meta.get("ae_epochs") is None:
        return None
    return f"{meta['ae_epochs']} ({meta.get('ae_best_epoch', '–')})"


def _cost_section(cost: dict[str, Any] | None) -> Section:
    phases = (cost or {}).get("phases") or []
    if not phases:
        return Section("cost", "Cost per phase", _note("summary.json records no cost phases."))
    header = ["phase", "networks", "params trained", "FLOPs", "seconds", "peak memory"]
    rows = [
        [
            p["phase"],
            _networks_text(p.get("networks") or {}),
            _count(p.get("params_trained")),
            _flops(p.get("total_flops")),
            _seconds(p.get("seconds")),
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
                _count(total.get("params_trained")),
                _flops(total.get("total_flops")),
                _seconds(total.get("seconds")),
                _memory_text(total),
            ]
        )
    body = _table(header, rows, ["hl" if r[0] == "total" else "" for r in rows])
    signal = (cost or {}).get("teacher_signal")
    if signal:
        body += _note(
            f"Teacher signal: {_flops(signal.get('flops'))} (of which "
            f"{_flops(signal.get('inference_flops_during_distillation'))} frozen-teacher "
            f"inference during distillation), {_seconds(signal.get('seconds'))} s, peak "
            f"{_mb(signal.get('peak_mb'))}, {_count(signal.get('params'))} parameters trained."
        )
    body += _note(
        "FLOPs count matmul and convolution ops only; training = 3 × forward × samples, a frozen "
        "network 1 × forward × samples. Peak memory is the phase's own peak RSS on CPU, the "
        "allocator peak on CUDA."
    )
    return Section("cost", "Cost per phase", body)


def _networks_text(networks: dict[str, Any]) -> str:
    parts = []
    for name, net in networks.items():
        role = "trained" if net.get("trained") else "frozen"
        forward = _flops(net.get("forward_flops"))
        parts.append(f"{name} ({role}, {_count(net.get('params'))} params, {forward}/sample)")
    return "; ".join(parts)


def _memory_text(record: dict[str, Any]) -> str:
    if record.get("cuda_peak_mb") is not None:
        return f"{_mb(record['cuda_peak_mb'])} CUDA"
    if record.get("peak_rss_mb") is not None:
        return f"{_mb(record['peak_rss_mb'])} RSS"
    return "–"


def _config_section(directory: Path, name: str) -> Section:
    path = directory / name
    body = _pre(path.read_text(encoding="utf-8")) if path.exists() else _note(f"No {name}.")
    return Section("config", "Resolved config", f"<h3>{_esc(name)}</h3>{body}")


def _environment_section(recorded: dict[str, Any], where: str) -> Section:
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
    return Section("environment", "Environment", _table(["what", "value", "source"], rows))


def _command_section(directory: Path, summary: dict[str, Any], equivalent: str) -> Section:
    recorded = _recorded_command(directory, summary)
    if recorded is not None:
        text, where = recorded
        body = _pre(text) + _note(f"As recorded in {where}.")
    else:
        body = _note(
            "The command line was not recorded (no command.txt, no 'command' in "
            "summary.json). An equivalent command, from the files here:"
        ) + _pre(equivalent)
    return Section("command", "Command", body)


def _recorded_command(directory: Path, summary: dict[str, Any]) -> tuple[str, str] | None:
    command = summary.get("command")
    if isinstance(command, str) and command.strip():
        return command, "summary.json"
    if isinstance(command, list) and command and all(isinstance(c, str) for c in command):
        return shlex.join(command), "summary.json"
    path = directory / COMMAND_FILE
    if path.exists():
        return path.read_text(encoding="utf-8"), COMMAND_FILE
    return None


# ---------------------------------------------------------------------------- training run
def _training_page(directory: Path) -> tuple[str, str, list[Section]]:
    summary = _read_json(directory / "summary.json")
    records = _read_metrics(directory / "metrics.jsonl")
    method = summary.get("method") or {}
    name = method.get("name") or load_yaml(directory / "config.yaml").get("method", "?")
    title = f"Training run: {name} · {summary.get('student', '?')} · {summary.get('dataset', '?')}"
    subtitle = f"{directory} · seed {summary.get('seed', '–')}"
    labels_path = directory / "soft_labels.pt"
    sections = [
        Section(
            "results", "Results", _warnings(summary) + _run_results(summary) + _run_facts(summary)
        ),
        _curves_section(directory, records),
    ]
    if labels_path.exists():
        labels = SoftLabels.load(labels_path)
        sections.append(_aesl_section(labels, None, f"AESL, {summary.get('dataset', '')}"))
    quoted = shlex.quote(str(directory))
    equivalent = f"reffakd train --config {quoted}/config.yaml --out {quoted}-rerun"
    sections += [
        _cost_section(summary.get("cost")),
        _config_section(directory, "config.yaml"),
        _environment_section(summary, "summary.json"),
        _command_section(directory, summary, equivalent),
    ]
    return title, subtitle, sections


def _run_results(summary: dict[str, Any]) -> str:
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
    for which, epoch_key in (("best", "best_epoch"), ("last", "epochs")):
        record = summary[which]
        rows.append(
            [
                f"{which} ({summary.get(epoch_key, '–')})",
                _pct(record.get("val_top1")),
                _pct(record.get("val_top5")),
                _pct(record.get("test_top1")),
                _pct(record.get("test_top5")),
                _epoch_value(record.get("val_loss")),
                _epoch_value(record.get("test_loss")),
            ]
        )
    return _table(header, rows) + _note(
        "Accuracy in %. best = the epoch with the best validation top-1 (the checkpoint kept); "
        "last = the final epoch. The test split is never used for a choice."
    )


def _run_facts(summary: dict[str, Any]) -> str:
    method = summary.get("method") or {}
    sizes = summary.get("split_sizes") or {}
    params = _count(summary.get("student_parameters"))
    return _facts(
        [
            ("student", f"{summary.get('student', '–')} ({params} params)"),
            ("method", method.get("name")),
            (
                "teacher-signal source",
                _with_options(method.get("source"), method.get("source_options")),
            ),
            ("loss", _with_options(method.get("loss"), method.get("loss_options"))),
            ("teacher", _compact(summary["teacher"]) if summary.get("teacher") else None),
            (
                "light teacher",
                _compact(summary["light_teacher"]) if summary.get("light_teacher") else None,
            ),
            ("splits", ", ".join(f"{k} {_count(v)}" for k, v in sizes.items()) or None),
            ("epochs", summary.get("epochs")),
            ("wall time", f"{_seconds(summary.get('seconds_total'))} s"),
        ]
    )


def _with_options(name: Any, options: Any) -> str | None:
    if name is None:
        return "none"
    return f"{name} ({_compact(options)})" if options else str(name)


# ---------------------------------------------------------------------------- soft-label run
# The autoencoders' reconstruction losses (aesl.autoencoder.AUTOENCODERS), as table headers.
RECONSTRUCTION_LABELS = {"mse": "MSE", "token_ce": "token CE"}


def _soft_label_page(directory: Path) -> tuple[str, str, list[Section]]:
    summary = _read_json(directory / "summary.json")
    labels = SoftLabels.load(directory / "soft_labels.pt")
    meta = {**(summary.get("soft_labels") or {}), **labels.meta}
    dataset = meta.get("dataset", "?")
    title = f"Soft-label run: AESL · {dataset}"
    subtitle = f"{directory} · seed {meta.get('seed', '–')}"
    metric = meta.get("reconstruction_metric", "mse")
    label = RECONSTRUCTION_LABELS.get(metric, metric)
    header = ["epoch", *(f"{split} {label}" for split in ("train", "val", "test"))]
    rows = [
        [
            f"{which} ({summary.get(epoch_key, '–')})",
            *(_epoch_value(summary[which].get(f"{s}_{metric}")) for s in ("train", "val", "test")),
        ]
        for which, epoch_key in (("best", "best_epoch"), ("last", "epochs"))
        if which in summary
    ]
    results = _table(header, rows) + _note(
        f"Autoencoder reconstruction error; best = the epoch with the lowest validation {label}, "
        "whose weights make the soft labels."
    )
    if meta.get("embedder"):  # a pretrained encoder, nothing trained
        results = _note(f"Embeddings of the pretrained encoder {meta['embedder']} (no training).")
    quoted = shlex.quote(str(directory))
    equivalent = f"reffakd soft-labels --config {quoted}/config.yaml --out {quoted}-rerun"
    recorded = {"reffakd_version": meta.get("reffakd_version"), **summary}
    sections = [
        Section("results", "Results", _warnings(summary) + results),
        _aesl_section(labels, None, f"AESL, {dataset}"),
        _curves_section(directory, _read_metrics(directory / "metrics.jsonl")),
        _cost_section(summary.get("cost")),
        _config_section(directory, "config.yaml"),
        _environment_section(recorded, "summary.json / soft_labels.pt"),
        _command_section(directory, summary, equivalent),
    ]
    return title, subtitle, sections


# ---------------------------------------------------------------------------- bench
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


def _bench_rows(directory: Path) -> list[dict[str, Any]]:
    results = _read_json(directory / "results.json")
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


def _bench_significance_sections(directory: Path, rows: list[dict[str, Any]]) -> list[Section]:
    """Differences against ce and ls with their intervals, and accuracy for the compute."""
    results = _read_json(directory / "results.json")
    sections = []
    comparisons = results.get("comparisons") or []
    if comparisons:
        table: dict[tuple[str, str], dict[str, str]] = {}
        for c in comparisons:
            table.setdefault((c["dataset"], c["method"]), {})[c["reference"]] = format_difference(c)
        body = _note(
            "Test top-1 (best-on-val epoch), method − reference in points: mean, 95% interval "
            "(paired by seed) and Welch's p; better/worse only when the interval excludes 0."
        ) + _table(
            ["dataset", "method", "vs ce", "vs ls"],
            [[d, m, r.get("ce", "–"), r.get("ls", "–")] for (d, m), r in table.items()],
        )
        sections.append(Section("differences", "Differences against ce and ls", body))
    done = sorted((r for r in rows if r["seeds"] and r.get("total_flops")),
                  key=lambda r: (r["dataset"], r["total_flops"]))  # fmt: skip
    if done:
        body = _table(
            ["dataset", "method", "total FLOPs", "total s", "test best", "test last"],
            [[r["dataset"], r["method"], _flops(r["total_flops"]), _seconds(r["total_seconds"]),
              format_mean_std(r["test_best"]), format_mean_std(r["test_last"])]
             for r in done],
        )  # fmt: skip
        if (directory / "budget.png").exists():
            plot = _png_figure(_read_png(directory / "budget.png"), "accuracy vs total FLOPs")
            body = plot + body
        sections.append(Section("budget", "Accuracy for the compute spent", body))
    return sections


def _bench_page(directory: Path) -> tuple[str, str, list[Section]]:
    suite = load_yaml(directory / "suite.yaml")
    rows = _bench_rows(directory)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    runs = _bench_runs(directory, rows)
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
    sections.append(_config_section(directory, "suite.yaml"))
    first = next((s for per in runs.values() for _, s, _ in per), None)
    where = "the bench's first run summary.json" if first else "this directory"
    sections.append(_environment_section(first or {}, where))
    quoted = shlex.quote(str(directory))
    equivalent = f"reffakd bench {quoted}/suite.yaml --out {quoted}"
    sections.append(_command_section(directory, {}, equivalent))
    return title, subtitle, sections


def _bench_results(suite: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    header = [
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
    ]
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
    intro = f"<p>{_esc(description)}</p>" if description else ""
    diverged = diverged_runs(rows)
    return (
        intro
        + _table(header, table_rows, highlight)
        + (
            _note("Diverged (non-finite loss; not in the means): " + "; ".join(diverged))
            if diverged
            else ""
        )
        + _warnings({"warnings": warned_runs(rows)})
        + _note(
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
        svg = _accuracy_vs_cost_svg([r for r in rows if r["dataset"] == dataset], f"cost{i}")
        if svg:
            parts.append(_figure(svg, f"{dataset}: test top-1 against teacher-signal FLOPs."))
    if not parts and (directory / "accuracy_vs_cost.png").exists():
        parts.append(
            _png_figure(_read_png(directory / "accuracy_vs_cost.png"), "accuracy_vs_cost.png")
        )
    body = "".join(parts) or _note("No finished rows to plot.")
    return Section("accuracy-cost", "Accuracy against teacher-signal cost", body)


RunList = list[tuple[int, dict[str, Any], list[dict[str, Any]]]]


def _bench_runs(directory: Path, rows: list[dict[str, Any]]) -> dict[tuple[str, str], RunList]:
    """(dataset, method) -> [(seed, summary, metrics records)] for runs present on disk."""
    runs: dict[tuple[str, str], RunList] = {}
    for row in rows:
        for seed in row["seeds"]:
            run = directory / "runs" / row["dataset"] / row["method"] / f"s{seed}"
            if (run / "summary.json").exists():
                found = (
                    seed,
                    _read_json(run / "summary.json"),
                    _read_metrics(run / "metrics.jsonl"),
                )
                runs.setdefault((row["dataset"], row["method"]), []).append(found)
    return runs


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
        svg = _method_curves_svg(curves, f"curves{i}")
        if svg:
            parts.append(_figure(svg, f"{dataset}: validation top-1 per epoch, mean over seeds."))
    if not parts and (directory / "curves.png").exists():
        caption = "curves.png of the bench (per-run metrics are not in this directory)."
        parts.append(_png_figure(_read_png(directory / "curves.png"), caption))
    body = "".join(parts) or _note("No per-run metrics and no curves.png in this directory.")
    return Section("curves", "Training curves", body)


def _bench_aesl_sections(directory: Path, datasets: list[str], seeds: list[Any]) -> list[Section]:
    sections = []
    for dataset in datasets:
        seed = seeds[0] if seeds else 0
        labels_path = directory / "shared" / dataset / f"s{seed}" / "aesl" / "soft_labels.pt"
        labels = SoftLabels.load(labels_path) if labels_path.exists() else None
        fallback = directory / f"aesl_{dataset}.png"
        if labels is None and not fallback.exists():
            continue
        section = _aesl_section(labels, fallback, f"AESL, {dataset}, seed {seed}")
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
            for phase in (summary.get("cost") or {}).get("phases") or []:
                by_phase.setdefault(phase["phase"], []).append(phase)
        for phase, records in by_phase.items():
            rows.append(
                [
                    dataset,
                    method,
                    phase,
                    _count(_mean_of(records, "params_trained")),
                    _flops(_mean_of(records, "total_flops")),
                    _seconds(_mean_of(records, "seconds")),
                    _mb(_mean_of(records, "cuda_peak_mb") or _mean_of(records, "peak_rss_mb")),
                ]
            )
    if not rows:
        body = _note(
            "The per-run summaries (runs/DATASET/METHOD/sSEED/summary.json) are not in this "
            "directory; the results table above holds the teacher-signal totals."
        )
    else:
        rows.sort(key=lambda r: datasets.index(r[0]) if r[0] in datasets else len(datasets))
        body = _table(header, rows) + _note("Mean over the seeds of each method.")
    return Section("cost", "Cost per phase", body)


def _mean_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.fmean(values) if values else None


__all__ = ["REPORT_NAME", "report_kind", "write_report"]
