"""report.html of run, soft-label and bench directories: DOM contents, embedding, errors, and
(when a Chromium binary is on PATH) what a real headless browser renders."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from reffakd.aesl.soft_labels import SoftLabels
from reffakd.config import TrainConfig, dump_yaml
from reffakd.errors import UserError
from reffakd.experiments.report import report_kind, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- DOM reading
class Dom(HTMLParser):
    """Tables (header + rows of cell texts), pre texts, url attributes and figure contents."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict[str, list]] = []
        self.pres: list[str] = []
        self.urls: list[tuple[str, str, str]] = []  # tag, attribute, value
        self.figures: list[list[str]] = []  # per figure: the svg/img tags inside
        self.svg_count = 0
        self.section_ids: list[str] = []
        self.ids: list[str] = []
        self.references: list[str] = []  # ids that href="#..." and url(#...) point at
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._pre: list[str] | None = None
        self._in_figure = False
        self._svg_depth = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "xlink:href"):
            if values.get(name) is not None:
                self.urls.append((tag, name, values[name]))
                if values[name].startswith("#"):
                    self.references.append(values[name][1:])
        if values.get("id"):
            self.ids.append(values["id"])
        for value in values.values():
            self.references += re.findall(r"url\(#([^)]+)\)", value or "")
        if tag == "section":
            self.section_ids.append(values.get("id", ""))
        if tag == "table":
            self.tables.append({"header": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "pre":
            self._pre = []
        elif tag == "figure":
            self._in_figure = True
            self.figures.append([])
        elif tag in ("svg", "img"):
            if tag == "svg":
                self.svg_count += 1
                self._svg_depth += 1
            if self._in_figure and (tag == "img" or self._svg_depth == 1):
                self.figures[-1].append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            table = self.tables[-1]
            if not table["header"]:
                table["header"] = self._row
            else:
                table["rows"].append(self._row)
            self._row = None
        elif tag == "pre" and self._pre is not None:
            self.pres.append("".join(self._pre))
            self._pre = None
        elif tag == "figure":
            self._in_figure = False
        elif tag == "svg":
            self._svg_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._pre is not None:
            self._pre.append(data)

    def table_with(self, first_header: str) -> dict[str, list]:
        return next(t for t in self.tables if t["header"] and t["header"][0] == first_header)


def check_self_contained(dom: Dom) -> None:
    """No fetched or linked web address; every image a PNG data URI; every figure one plot;
    every in-page reference (links, the SVGs' own defs) finds its one target."""
    for tag, name, value in dom.urls:
        assert not value.lower().startswith(("http://", "https://", "//")), (tag, name, value)
        if tag == "img":
            assert value.startswith("data:image/png;base64,")
            assert base64.b64decode(value.split(",", 1)[1]).startswith(PNG_SIGNATURE)
        else:
            assert value.startswith("#"), (tag, name, value)
    assert dom.figures and all(len(inside) == 1 for inside in dom.figures), dom.figures
    assert len(dom.ids) == len(set(dom.ids))  # several inline SVGs do not clash
    assert dom.references and set(dom.references) <= set(dom.ids)


def images(dom: Dom) -> list[bytes]:
    return [base64.b64decode(v.split(",", 1)[1]) for tag, _, v in dom.urls if tag == "img"]


# ---------------------------------------------------------------------------- fake directories
def phase(name: str, network: str, trained: bool, params: int, flops: float, **measured):
    return {
        "phase": name,
        "seconds": measured.get("seconds", 1.0),
        "peak_rss_mb": measured.get("peak_rss_mb", 100.0),
        "peak_rss_scope": "phase",
        "rss_increase_mb": 1.0,
        "cuda_peak_mb": measured.get("cuda_peak_mb"),
        "networks": {
            network: {
                "trained": trained,
                "params": params,
                "trainable_params": params,
                "input_shape": [1, 32, 32],
                "forward_flops": 1000,
                "forward_macs": 500,
                "samples_seen": 10,
                "flops": flops,
            }
        },
        "params_trained": params if trained else 0,
        "training_flops": flops if trained else 0.0,
        "inference_flops": 0.0 if trained else flops,
        "total_flops": flops,
    }


EPOCHS = [
    {"epoch": 1, "lr": 0.1, "train_loss": 0.9, "train_ce": 0.7, "train_kd": 0.2,
     "train_top1": 70.0, "val_top1": 80.25, "val_top5": 98.5, "val_loss": 0.61,
     "test_top1": 79.5, "test_top5": 98.0, "test_loss": 0.63, "train_seconds": 2.0,
     "seconds": 2.5},
    {"epoch": 2, "lr": 0.1, "train_loss": 0.6, "train_ce": 0.45, "train_kd": 0.15,
     "train_top1": 80.0, "val_top1": 85.5, "val_top5": 99.125, "val_loss": 0.45,
     "test_top1": 84.25, "test_top5": 99.0, "test_loss": 0.47, "train_seconds": 2.0,
     "seconds": 2.5},
    {"epoch": 3, "lr": 0.02, "train_loss": 0.5, "train_ce": 0.4, "train_kd": 0.1,
     "train_top1": 82.0, "val_top1": 85.0, "val_top5": 99.25, "val_loss": 0.44,
     "test_top1": 84.75, "test_top5": 99.5, "test_loss": 0.46, "train_seconds": 2.0,
     "seconds": 2.5},
]  # fmt: skip


def soft_labels(classes: int = 4) -> SoftLabels:
    table = torch.full((classes, classes), 0.1) + torch.eye(classes) * (1 - 0.1 * classes)
    meta = {
        "dataset": "fashion-mnist",
        "class_names": [f"c{i}" for i in range(classes)],
        "seed": 0,
        "boost": 0.008,
        "temperature": 1.0,
        "samples_per_class": 40,
        "embedding_dim": 768,
        "entropy_bits": 1.234567,
        "reffakd_version": "9.8.7",
    }
    return SoftLabels(table, torch.eye(classes), meta)


def write_run(folder: Path, *, with_labels: bool = True) -> Path:
    """A finished training run in the real on-disk layout, with hand-picked numbers."""
    folder.mkdir(parents=True)
    config = dump_yaml(TrainConfig(student="lenet5", method="reffakd"))
    (folder / "config.yaml").write_text(config + "# <script>alert('x')</script> & co\n")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in EPOCHS))
    phases = [
        phase("autoencoder_training", "cae", True, 46585, 414056448000.0, seconds=23.133,
              peak_rss_mb=465.148),
        phase("student_training", "student", True, 61750, 134952480000.0, seconds=7.5,
              cuda_peak_mb=812.25),
    ]  # fmt: skip
    summary = {
        "selection_metric": "val_top1",
        "epochs": 3,
        "best_epoch": 2,
        "best": {k: v for k, v in EPOCHS[1].items() if k != "epoch"},
        "last": {k: v for k, v in EPOCHS[2].items() if k != "epoch"},
        "seconds_total": 7.5,
        "method": {
            "name": "reffakd",
            "source": "aesl",
            "loss": "kd",
            "source_options": {},
            "loss_options": {"alpha": 0.3, "temperature": 4.0},
        },
        "student": "lenet5",
        "student_parameters": 61750,
        "dataset": "fashion-mnist",
        "split_sizes": {"train": 54000, "val": 6000, "test": 10000},
        "seed": 0,
        "device": "cuda:0",
        "teacher": {"run": "a & b", "val_top1": 91.1},
        "cost": {
            "phases": phases,
            "total": {
                "seconds": 30.633,
                "peak_rss_mb": 465.148,
                "cuda_peak_mb": 812.25,
                "params_trained": 108335,
                "total_flops": 549008928000.0,
            },
            "teacher_signal": {"flops": 414056448000.0, "seconds": 23.133, "peak_mb": 465.148},
        },
        "torch": "2.99.0+test",
        "python": "3.99.1",
        "reffakd_version": "9.8.7",
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    if with_labels:
        soft_labels().save(folder / "soft_labels.pt")
    return folder


def bench_row(method: str, seeds: list[int], val: list[float], test: list[float], flops: float):
    row = {"dataset": "fashion-mnist", "method": method, "seeds": seeds}
    for which in ("best", "last"):
        for split, values in (("val", val), ("test", test)):
            row[f"{split}_{which}"] = values
            row[f"{split}_{which}_mean"] = float(np.mean(values)) if values else float("nan")
            row[f"{split}_{which}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    row.update(signal_flops=flops, signal_seconds=flops / 1e11, signal_peak_mb=flops / 1e8)
    row["student_seconds"] = 30.0
    return row


def write_bench(folder: Path, *, pngs: bool = True) -> Path:
    """A bench directory like a published one: results.json, suite.yaml and its PNG plots."""
    folder.mkdir(parents=True)
    rows = [
        bench_row("ce", [0, 1], [89.0, 90.0], [88.5, 88.75], 0.0),
        bench_row("kd", [0, 1], [88.0, 88.5], [87.0, 87.5], 4.4823e13),
        bench_row("reffakd", [0, 1], [90.0, 91.0], [89.25, 89.5], 1.6567e12),
        bench_row("lwkd", [0], [89.36], [88.8], 6.25e10),
    ]
    for row in rows:
        for key in ("flops", "seconds", "peak_mb"):
            base = rows[1][f"signal_{key}"]
            row[f"signal_{key}_vs_kd"] = row[f"signal_{key}"] / base
    (folder / "results.json").write_text(json.dumps({"suite": "toy", "rows": rows}))
    suite = {
        "name": "toy",
        "datasets": ["fashion-mnist"],
        "methods": ["ce", "kd", "reffakd", "lwkd"],
        "seeds": [0, 1],
        "description": "A toy bench <with> markup & ampersands.",
    }
    (folder / "suite.yaml").write_text(yaml.safe_dump(suite))
    if pngs:
        for name, colour in (("curves.png", (200, 30, 30)), ("aesl_fashion-mnist.png", (0, 90, 0))):
            Image.new("RGB", (40, 30), colour).save(folder / name)
    return folder


# ---------------------------------------------------------------------------- unit tests
def test_training_run_report(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "command.txt").write_text("reffakd train --method reffakd --out run\n")
    path = write_report(run)
    assert path == run / "report.html"
    text = path.read_text()
    dom = Dom(text)

    results = dom.table_with("epoch")
    assert results["header"][:5] == ["epoch", "val top-1", "val top-5", "test top-1", "test top-5"]
    assert results["rows"] == [
        ["best (2)", "85.50", "99.12", "84.25", "99.00", "0.45", "0.47"],
        ["last (3)", "85.00", "99.25", "84.75", "99.50", "0.44", "0.46"],
    ]
    cost = dom.table_with("phase")
    by_phase = {row[0]: row for row in cost["rows"]}
    assert by_phase["autoencoder_training"][2:] == [
        "46,585",
        "414.06 GFLOPs",
        "23.1",
        "465.1 MB RSS",
    ]
    assert by_phase["student_training"][2:] == ["61,750", "134.95 GFLOPs", "7.5", "812.2 MB CUDA"]
    assert by_phase["total"][2:] == ["108,335", "549.01 GFLOPs", "30.6", "812.2 MB CUDA"]
    assert "cae (trained, 46,585 params" in by_phase["autoencoder_training"][1]

    environment = {row[0]: row[1:] for row in dom.table_with("what")["rows"]}
    assert environment["torch"] == ["2.99.0+test", "recorded in summary.json"]
    assert environment["device"][0] == "cuda:0"
    assert environment["reffakd"][0] == "9.8.7"

    assert dom.pres[0] == (run / "config.yaml").read_text().rstrip()
    assert "<script" not in text and "a &amp; b" in text  # escaped, shown as text
    assert dom.pres[-1] == "reffakd train --method reffakd --out run"
    assert dom.svg_count == 1  # the curves
    check_self_contained(dom)
    assert len(images(dom)) == 1  # the AESL heatmap, drawn from soft_labels.pt
    assert {"results", "curves", "aesl", "cost", "config", "environment", "command"} <= set(
        dom.section_ids
    )
    per_epoch = next(t for t in dom.tables if "train_kd" in t["header"])
    column = per_epoch["header"].index("val_top1")
    assert [row[column] for row in per_epoch["rows"]] == ["80.25", "85.50", "85.00"]


def test_run_without_recorded_command_gets_an_equivalent_one(tmp_path):
    run = write_run(tmp_path / "run", with_labels=False)
    summary = json.loads((run / "summary.json").read_text())
    del summary["torch"]
    (run / "summary.json").write_text(json.dumps(summary))
    dom = Dom(write_report(run).read_text())
    assert dom.pres[-1] == f"reffakd train --config {run}/config.yaml --out {run}-rerun"
    environment = {row[0]: row[1:] for row in dom.table_with("what")["rows"]}
    assert environment["torch"] == [
        torch.__version__,
        "not recorded; the version writing this report",
    ]
    assert "aesl" not in dom.section_ids and images(dom) == []

    summary["command"] = ["reffakd", "train", "--out", "my run"]
    (run / "summary.json").write_text(json.dumps(summary))
    assert Dom(write_report(run).read_text()).pres[-1] == "reffakd train --out 'my run'"


def test_soft_label_run_report(tmp_path):
    folder = tmp_path / "aesl"
    folder.mkdir()
    soft_labels().save(folder / "soft_labels.pt")
    (folder / "config.yaml").write_text("samples_per_class: 40\n")
    records = [
        {"epoch": 1, "train_loss": 0.1, "train_mse": 0.1, "val_mse": 0.03, "test_mse": 0.031}
    ]
    (folder / "metrics.jsonl").write_text(json.dumps(records[0]) + "\n")
    record = {k: v for k, v in records[0].items() if k != "epoch"}
    phases = [phase("autoencoder_training", "cae", True, 46585, 4e11)]
    summary = {"epochs": 1, "best_epoch": 1, "best": record, "last": record,
               "soft_labels": {"dataset": "fashion-mnist"}, "cost": {"phases": phases}}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    assert report_kind(folder) == "soft-labels"
    dom = Dom(write_report(folder).read_text())
    assert dom.table_with("epoch")["rows"] == [
        ["best (1)", "0.1", "0.03", "0.031"],
        ["last (1)", "0.1", "0.03", "0.031"],
    ]
    assert dom.table_with("phase")["rows"][0][:4] == [
        "autoencoder_training",
        "cae (trained, 46,585 params, 1.00 kFLOPs/sample)",
        "46,585",
        "400.00 GFLOPs",
    ]
    environment = {row[0]: row[1] for row in dom.table_with("what")["rows"]}
    assert environment["reffakd"] == "9.8.7"  # from the soft-label file's record
    assert dom.pres[-1].startswith("reffakd soft-labels --config ")
    check_self_contained(dom)
    assert dom.svg_count == 1 and len(images(dom)) == 1


def test_bench_report_from_results_and_committed_pngs(tmp_path):
    bench = write_bench(tmp_path / "bench")
    text = write_report(bench).read_text()
    dom = Dom(text)
    table = dom.table_with("method")
    assert table["header"] == [
        "method", "seeds", "val best", "val last", "test best", "test last", "signal GFLOPs",
        "signal s", "signal peak MB", "FLOPs vs KD", "time vs KD", "memory vs KD",
    ]  # fmt: skip
    rows = {row[0]: row for row in table["rows"]}
    # mean ± sample std: 90, 91 -> 90.50 ± 0.71 (sqrt(0.5)); one seed -> the value alone
    assert rows["reffakd"] == [
        "reffakd", "2", "90.50 ± 0.71", "90.50 ± 0.71", "89.38 ± 0.18", "89.38 ± 0.18",
        "1,656.7", "16.6", "16,567", "0.037×", "0.037×", "0.037×",
    ]  # fmt: skip
    assert rows["ce"][2] == "89.50 ± 0.71" and rows["ce"][9:] == ["0", "0", "0"]
    assert rows["kd"][6:] == ["44,823.0", "448.2", "448,230", "1×", "1×", "1×"]
    assert rows["lwkd"][1:3] == ["1", "89.36"]
    assert "A toy bench &lt;with&gt; markup &amp; ampersands." in text
    check_self_contained(dom)
    assert dom.svg_count == 1  # accuracy against cost, drawn from results.json
    committed = [(bench / n).read_bytes() for n in ("curves.png", "aesl_fashion-mnist.png")]
    assert images(dom) == committed
    assert dom.pres[0] == (bench / "suite.yaml").read_text().rstrip()
    assert dom.pres[-1] == f"reffakd bench {bench}/suite.yaml --out {bench}"


def test_bench_report_uses_runs_when_present(tmp_path):
    bench = write_bench(tmp_path / "bench", pngs=False)
    for seed in (0, 1):
        write_run(bench / "runs" / "fashion-mnist" / "reffakd" / f"s{seed}", with_labels=False)
    aesl = bench / "shared" / "fashion-mnist" / "s0" / "aesl"
    aesl.mkdir(parents=True)
    soft_labels().save(aesl / "soft_labels.pt")
    dom = Dom(write_report(bench).read_text())
    cost = dom.table_with("dataset")
    assert [row[1:5] for row in cost["rows"]] == [
        ["reffakd", "autoencoder_training", "46,585", "414.06 GFLOPs"],
        ["reffakd", "student_training", "61,750", "134.95 GFLOPs"],
    ]
    environment = {row[0]: row[1] for row in dom.table_with("what")["rows"]}
    assert environment["torch"] == "2.99.0+test"
    assert dom.svg_count == 2  # accuracy against cost + validation curves from metrics.jsonl
    assert len(images(dom)) == 1  # heatmap drawn from the shared soft labels
    check_self_contained(dom)


def test_published_bench_matches_its_results_md(tmp_path):
    published = REPO / "docs" / "results" / "fmnist"
    bench = tmp_path / "fmnist"
    bench.mkdir()
    for name in ("results.json", "suite.yaml"):
        shutil.copyfile(published / name, bench / name)
    table = Dom(write_report(bench).read_text()).table_with("method")
    markdown = [
        [cell.strip() for cell in line.strip("|").split("|")][1:]  # without the dataset column
        for line in (published / "results.md").read_text().splitlines()
        if line.startswith("| fashion-mnist |")
    ]
    assert len(markdown) == 12 and table["rows"] == markdown


def test_report_is_repeatable_and_leaves_no_temporary_file(tmp_path):
    bench = write_bench(tmp_path / "bench")
    first = write_report(bench).read_text()
    assert write_report(bench).read_text() == first  # repeatable: fixed SVG ids
    assert sorted(p.name for p in bench.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "neither a run directory"),
        ({"results.json": "{}"}, "has no suite.yaml"),
        ({"suite.yaml": "name: x\n"}, "has no results.json"),
        ({"config.yaml": "seed: 0\n"}, "has not finished"),
        ({"summary.json": '{"epochs": 1}'}, "no 'best' and 'last' records"),
        ({"summary.json": '{"best": {}, "last": {}}'}, "has summary.json but no config.yaml"),
        ({"summary.json": '{"soft_labels": {}}'}, "has summary.json but no soft_labels.pt"),
        ({"summary.json": "{not json"}, "not valid JSON"),
    ],
)
def test_incomplete_directories_are_refused(tmp_path, files, message):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=message) as error:
        write_report(tmp_path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "report.html").exists()


def test_damaged_inputs_are_refused(tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        write_report(tmp_path / "missing")
    run = write_run(tmp_path / "run", with_labels=False)
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 4, "val_top1"\n')
    with pytest.raises(UserError, match="metrics.jsonl line 4 is not valid JSON"):
        write_report(run)
    bench = write_bench(tmp_path / "bench")
    (bench / "results.json").write_text(json.dumps({"rows": [{"method": "ce"}]}))
    with pytest.raises(UserError, match="row 1 lacks dataset"):
        write_report(bench)


# ---------------------------------------------------------------------------- real browser
def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [binary, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


@pytest.mark.skipif(
    chromium_binary() is None,
    reason="no chromium, chromium-browser or google-chrome on PATH (e.g. apt-get install chromium)",
)
def test_chromium_renders_the_reports(tmp_path):
    binary = chromium_binary()
    run = write_run(tmp_path / "run")
    bench = write_bench(tmp_path / "bench")
    for folder, table_head, row, expected in (
        (run, "epoch", 0, ["best (2)", "85.50", "99.12", "84.25", "99.00", "0.45", "0.47"]),
        (bench, "method", 2, ["reffakd", "2", "90.50 ± 0.71", "90.50 ± 0.71"]),
    ):
        url = write_report(folder).as_uri()
        shot = tmp_path / f"{folder.name}.png"
        window = ("--window-size=1200,2000", f"--screenshot={shot}")
        dom = Dom(run_chromium(binary, tmp_path / "profile", "--dump-dom", *window, url).stdout)
        if not shot.exists():  # a Chromium that does one of the two per launch
            run_chromium(binary, tmp_path / "profile", *window, url)
        assert dom.table_with(table_head)["rows"][row][: len(expected)] == expected
        check_self_contained(dom)

        pixels = np.asarray(Image.open(shot).convert("RGB"))
        assert pixels.shape == (2000, 1200, 3)
        rgb = pixels.astype(np.int32)
        colours = len(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]))
        not_white = float((pixels.min(axis=2) < 235).mean())
        assert colours > 500, colours  # text, tables, plot lines and the heatmap's colour map
        assert not_white > 0.03, not_white
        assert float(pixels.std()) > 15.0
