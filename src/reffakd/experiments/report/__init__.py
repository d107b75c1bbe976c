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

from pathlib import Path

from reffakd.experiments.report.markup import page_html
from reffakd.experiments.report.pages import (
    RECONSTRUCTION_LABELS,
    bench_page,
    soft_label_page,
    training_page,
)
from reffakd.experiments.report.reading import REPORT_NAME, report_kind
from reffakd.files import atomic_write_text


def write_report(directory: Path) -> Path:
    """Write ``directory/report.html`` (atomically) for a run or bench directory; return its path.

    Raises :class:`UserError` with one line naming what is missing when ``directory`` is not a
    finished training run, soft-label run or bench.
    """
    directory = Path(directory)
    kind = report_kind(directory)
    builders = {"training": training_page, "soft-labels": soft_label_page, "bench": bench_page}
    title, subtitle, sections = builders[kind](directory)
    path = directory / REPORT_NAME
    atomic_write_text(path, page_html(title, subtitle, sections))
    return path


__all__ = ["RECONSTRUCTION_LABELS", "REPORT_NAME", "report_kind", "write_report"]
