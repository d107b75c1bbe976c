"""HTML pieces of the report: the page and its style sheet, tables, facts, figures, and the
text formats of their cells. Every piece of text is escaped here."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reffakd.experiments.cost import human


@dataclass
class Section:
    anchor: str
    title: str
    body: str


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt_pct(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f}"


def fmt_count(value: Any) -> str:
    return "–" if value is None else f"{int(value):,}"


def fmt_flops(value: Any) -> str:
    return "–" if value is None else human(float(value), "FLOPs")


def fmt_seconds(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.1f}"


def fmt_mb(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.1f} MB"


def compact(value: Any) -> str:
    """A short one-line text for a config-like value."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={compact(v)}" for k, v in value.items()) or "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def html_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], row_classes: Sequence[str] = ()
) -> str:
    """An HTML table; every cell is escaped text. Cells that look numeric are right-aligned;
    ``row_classes[i]`` is a CSS class for row ``i`` (``"hl"`` highlights it)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    lines = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{esc(c)}</td>' if _looks_numeric(c) else f"<td>{esc(c)}</td>"
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


def facts_list(pairs: Iterable[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="facts">{items}</dl>'


def pre_block(text: str) -> str:
    return f"<pre>{esc(text.rstrip())}</pre>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def warnings_html(warnings: list[str]) -> str:
    """The run's recorded warnings (see reffakd.training.checks), above its results."""
    return "".join(f'<p class="warning">Warning: {esc(text)}</p>' for text in warnings)


def figure_html(content: str, caption: str, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<figure{attr}>{content}<figcaption>{esc(caption)}</figcaption></figure>"


def png_figure(data: bytes, caption: str, css: str = "") -> str:
    encoded = base64.b64encode(data).decode("ascii")
    image = f'<img src="data:image/png;base64,{encoded}" alt="{esc(caption)}">'
    return figure_html(image, caption, css)


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


def page_html(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f'<body><main><header><h1>{esc(title)}</h1><p class="sub">{esc(subtitle)}</p>'
        f"<nav>{nav}</nav></header>{body}</main></body></html>\n"
    )


def epoch_value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)
