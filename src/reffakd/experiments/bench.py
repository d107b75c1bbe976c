"""``reffakd bench SUITE``: run a suite of methods × seeds and write comparable results.

A suite is a YAML file (packaged ones live in ``reffakd/suites/``) naming the dataset(s), the
student, the teacher, the methods, the seeds and the schedules. Shared artefacts are made once
per dataset and seed and reused by every method that needs them: the AESL soft labels (one
autoencoder), the trained teacher, the self-teacher (the ``ce`` run of the student itself) and
the LW-KD light teacher (trained by the first ``lwkd`` run, reused by the others that ask for
the same one).
Finished runs are skipped and interrupted ones resumed, so rerunning the same command continues.
A method run whose loss turns non-finite is a result, not a crash: the bench records it in the
run's ``diverged.json``, lists it under the table, and goes on with the next run (rerunning skips
it; delete its folder to try again). A shared artefact (the teacher) that diverges stops the bench.

Outputs in the bench directory: ``results.md``, ``results.csv``, ``results.json`` and PNG plots
(accuracy against teacher-signal cost, the AESL heatmap, validation curves).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.config import (
    SoftLabelConfig,
    TrainConfig,
    from_dict,
    load_yaml,
    merge,
    to_dict,
)
from reffakd.data.spec import get_spec
from reffakd.distill.build import validate_names
from reffakd.distill.train import train_student
from reffakd.errors import NonFiniteLossError, UserError, first_line
from reffakd.experiments.plots import plot_accuracy_vs_cost, plot_budget, plot_method_curves
from reffakd.experiments.stats import difference
from reffakd.experiments.tables import mean_std, results_csv, results_markdown
from reffakd.files import atomic_write_text, refused_writes, write_json
from reffakd.kd.methods import PRESETS, resolve_method
from reffakd.lwkd.teacher import TEACHER_DIR
from reffakd.training.rundir import RunDir, record_command
from reffakd.training.summary import RunSummary, read_summary


@dataclass
class Suite:
    """What a suite file holds. ``student``/``teacher``/``ae`` hold config overrides."""

    name: str
    datasets: list[str]
    methods: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    student: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] = field(default_factory=dict)
    ae: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Extra ce runs trained for these multiples of the student's epochs (milestones scaled
    # alike): the equal-compute comparison's "spend it on more student epochs" points.
    ce_budget: list[float] = field(default_factory=list)
    description: str = ""

    def budget_methods(self) -> list[str]:
        return [budget_name(m) for m in self.ce_budget]

    def all_methods(self) -> list[str]:
        return [*self.methods, *self.budget_methods()]


def budget_name(multiple: float) -> str:
    """The row name of ce trained for ``multiple`` × the suite's epochs, e.g. ``ce@2x``."""
    return f"ce@{multiple:g}x"


def packaged_suites() -> list[str]:
    folder = resources.files("reffakd") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_suite(name_or_path: str) -> Suite:
    """A packaged suite by name, or a YAML file by path."""
    path = Path(name_or_path)
    if not path.is_file():
        packaged = resources.files("reffakd") / "suites" / f"{name_or_path}.yaml"
        if not packaged.is_file():
            raise UserError(
                f"unknown suite {name_or_path!r}: not a file, and not one of the packaged "
                f"suites ({', '.join(packaged_suites())})."
            )
        path = Path(str(packaged))
    values = load_yaml(path)
    _check_suite_types(values, path)
    suite = from_dict(Suite, values)
    for method in suite.methods:
        PRESETS.get(method)
    if not suite.methods or not suite.datasets or not suite.seeds:
        raise UserError(f"suite {path} needs at least one dataset, method and seed.")
    if any(
        not isinstance(m, int | float) or isinstance(m, bool) or m <= 1 for m in suite.ce_budget
    ):
        raise UserError(
            f"suite {path}: 'ce_budget' must list multiples > 1, got {suite.ce_budget}."
        )
    return suite


def _check_suite_types(values: dict[str, Any], path: Path) -> None:
    """One-line errors for suite files whose fields have the wrong shape."""
    expected = {
        "datasets": (list, str),
        "methods": (list, str),
        "seeds": (list, int),
        "student": (dict, None),
        "teacher": (dict, None),
        "ae": (dict, None),
        "method_options": (dict, None),
        "ce_budget": (list, None),
        "name": (str, None),
    }
    for key, (container, item) in expected.items():
        if key not in values:
            continue
        value = values[key]
        ok = isinstance(value, container) and (
            item is None or all(isinstance(v, item) and not isinstance(v, bool) for v in value)
        )
        if not ok:
            what = f"a list of {item.__name__}" if item else container.__name__
            raise UserError(f"suite {path}: '{key}' must be {what}, got {value!r}.")


# ---------------------------------------------------------------------------- running
@dataclass
class BenchPaths:
    root: Path

    def aesl(self, dataset: str, seed: int) -> Path:
        return self.root / "shared" / dataset / f"s{seed}" / "aesl"

    def teacher(self, dataset: str, seed: int) -> Path:
        return self.root / "shared" / dataset / f"s{seed}" / "teacher"

    def run(self, dataset: str, method: str, seed: int) -> Path:
        return self.root / "runs" / dataset / method / f"s{seed}"


def train_config(suite: Suite, dataset: str, seed: int, overrides: dict[str, Any]) -> TrainConfig:
    values = merge(to_dict(TrainConfig()), suite.student)
    values = merge(values, overrides)
    values["data"] = {**values.get("data", {}), "name": dataset}
    values["seed"] = seed
    values["progress"] = False
    return from_dict(TrainConfig, values)


@dataclass
class Step:
    """One run of a bench: the soft labels, the teacher, or a method run, with its config."""

    kind: str  # "aesl", "teacher" or "method"
    config: Any  # SoftLabelConfig or TrainConfig
    out: Path


def plan_suite(suite: Suite, paths: BenchPaths, data_dir: str | None = None) -> list[Step]:
    """Every run of ``suite`` in order, its config built and its names checked; writes nothing
    (a refused suite leaves ``--out`` as it was)."""
    data_override = {"data": {"data_dir": data_dir}} if data_dir else {}
    steps = []
    for dataset in suite.datasets:
        for seed in suite.seeds:
            needs = {resolve_method(m).signal for m in suite.methods}
            if "aesl" in needs:
                values = merge(to_dict(SoftLabelConfig()), merge(suite.ae, data_override))
                values["data"] = {**values.get("data", {}), "name": dataset}
                values.update(seed=seed, progress=False)
                config = from_dict(SoftLabelConfig, values)
                steps.append(Step("aesl", config, paths.aesl(dataset, seed)))
            if "teacher" in needs:
                config = train_config(suite, dataset, seed, merge(suite.teacher, data_override))
                config.method = "ce"
                steps.append(Step("teacher", config, paths.teacher(dataset, seed)))
            ordered = sorted(suite.methods, key=lambda m: m != "ce")  # ce is the self-teacher
            light_teachers: dict[str, Path] = {}
            for method in ordered:
                options = merge(suite.method_options.get(method, {}), data_override)
                config = train_config(suite, dataset, seed, options)
                config.method = method
                _attach_artefacts(config, paths, dataset, seed)
                run = paths.run(dataset, method, seed)
                _share_light_teacher(config, light_teachers, run)
                steps.append(Step("method", config, run))
            for multiple in suite.ce_budget:
                config = train_config(suite, dataset, seed, data_override)
                config.method = "ce"
                scale_schedule(config, multiple)
                steps.append(
                    Step("method", config, paths.run(dataset, budget_name(multiple), seed))
                )
    for step in steps:
        if isinstance(step.config, TrainConfig):
            validate_names(step.config)
        else:
            get_spec(step.config.data.name)
    return steps


def run_suite(
    suite: Suite, out: Path, data_dir: str | None = None, command: str | None = None
) -> dict[str, Any]:
    """Run (or continue) every run of ``suite`` in ``out`` and write the results files.
    ``command``: the command line, appended to ``command.txt``. The whole suite is checked
    before the first file is written."""
    paths = BenchPaths(Path(out))
    if paths.root.exists() and not paths.root.is_dir():
        raise UserError(f"bench directory {out} is a file, not a folder; choose another --out.")
    steps = plan_suite(suite, paths, data_dir)
    with refused_writes(paths.root, "create the bench directory"):
        paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.root / "suite.yaml", _suite_yaml(suite))
    record_command(paths.root, command)
    for step in steps:
        if step.kind == "aesl":
            make_soft_labels(step.config, step.out, resume=True)
        elif step.kind == "teacher":
            _train_once(step.config, step.out)
        else:
            _train_method_run(step.config, step.out)
    results = collect_results(suite, paths)
    write_results(results, paths.root, suite)
    return results


DIVERGED = "diverged.json"


def _train_method_run(config: TrainConfig, out: Path) -> None:
    """Train one method run; a non-finite loss is recorded in ``diverged.json``, not raised."""
    if (out / DIVERGED).exists():
        print(f"skip (diverged; delete the folder to try again): {out}")
        return
    try:
        _train_once(config, out)
    except NonFiniteLossError as error:
        write_json(out / DIVERGED, {"method": config.method, "error": first_line(error)})
        print(f"diverged: {out}: {first_line(error)}")


def _train_once(config: TrainConfig, out: Path) -> None:
    if (out / "summary.json").exists():
        print(f"skip (finished): {out}")
        return
    resume = RunDir(out).holds_run()
    print(f"{'resume' if resume else 'run'}: {out}")
    train_student(config, out, resume=resume)


# The shared artefact each source reads: (source option, its path in the bench directory).
_SHARED = {
    "aesl": ("soft_labels", lambda p, d, s: p.aesl(d, s) / "soft_labels.pt"),
    "teacher": ("run", lambda p, d, s: p.teacher(d, s)),
    "self": ("run", lambda p, d, s: p.run(d, "ce", s)),  # Tf-KD's self-teacher: the ce run
}


def _attach_artefacts(config: TrainConfig, paths: BenchPaths, dataset: str, seed: int) -> None:
    source = resolve_method(config.method, config.source, config.loss).signal
    if source in _SHARED:
        option, where = _SHARED[source]
        config.source.setdefault(option, str(where(paths, dataset, seed)))


# lwkd source options that do not change the light teacher itself, only how it is used.
_LIGHT_TEACHER_USE_OPTIONS = ("temperature", "pool_per_class", "checkpoint")


def _share_light_teacher(config: TrainConfig, trained: dict[str, Path], run: Path) -> None:
    """Point an ``lwkd`` run at the light teacher an earlier run of this seed trained with the
    same options, or note that this run will train it (in ``RUN/light_teacher``)."""
    resolved = resolve_method(config.method, config.source, config.loss)
    if resolved.source != "lwkd" or resolved.source_options.get("run"):
        return
    defining = {
        k: v for k, v in resolved.source_options.items() if k not in _LIGHT_TEACHER_USE_OPTIONS
    }
    key = json.dumps(defining, sort_keys=True, default=str)
    if key in trained:
        config.source["run"] = str(trained[key])
    else:
        trained[key] = run / TEACHER_DIR


def scale_schedule(config: TrainConfig, multiple: float) -> None:
    """``multiple`` × the epochs, with the learning-rate milestones stretched alike."""
    epochs = config.optim.epochs
    config.optim.epochs = max(1, round(epochs * multiple))
    config.optim.milestones = [round(m * multiple) for m in config.optim.milestones]


def _suite_yaml(suite: Suite) -> str:
    return yaml.safe_dump(dataclasses.asdict(suite), sort_keys=False)


# ---------------------------------------------------------------------------- results


def collect_results(suite: Suite, paths: BenchPaths) -> dict[str, Any]:
    rows = []
    for dataset in suite.datasets:
        for method in suite.all_methods():
            runs, diverged, warned = [], [], []
            for seed in suite.seeds:
                run = paths.run(dataset, method, seed)
                summary = read_summary(run)
                if summary is not None:
                    runs.append((seed, summary))
                    warned += [{"seed": seed, "warning": w} for w in summary.warnings]
                elif (run / DIVERGED).exists():
                    error = json.loads((run / DIVERGED).read_text())["error"]
                    diverged.append({"seed": seed, "error": error})
            row = {**_row(dataset, method, runs), "diverged": diverged, "warnings": warned}
            row["preset"] = "ce" if method in suite.budget_methods() else method
            rows.append(row)
    _add_ratios(rows)
    return {
        "suite": suite.name,
        "rows": rows,
        "comparisons": comparisons(rows),
        "convergence": convergence(suite, paths),
    }


REFERENCES = ("ce", "ls")


def _by_seed(row: dict[str, Any], key: str = "test_best") -> dict[int, float]:
    return dict(zip(row["seeds"], row[key], strict=False)) if row["seeds"] else {}


def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every method against ce and ls on the same dataset: test accuracy (best-on-val epoch)
    difference, 95% interval (paired by seed) and Welch's p (:mod:`.stats`)."""
    found = {(r["dataset"], r["method"]): r for r in rows if r["seeds"]}
    out = []
    for row in rows:
        for reference in REFERENCES:
            base = found.get((row["dataset"], reference))
            if base is None or row["method"] == reference or not row["seeds"]:
                continue
            diff = difference(_by_seed(row), _by_seed(base))
            out.append(
                {"dataset": row["dataset"], "method": row["method"], "reference": reference}
                | diff.as_dict()
            )
    return out


def convergence(suite: Suite, paths: BenchPaths) -> dict[str, Any]:
    """Per dataset, how much ce's validation accuracy rose in the last 20% of its epochs
    (best of those epochs − best before them, first seed): under 0.3 points reads as converged."""
    out: dict[str, Any] = {}
    for dataset in suite.datasets:
        file = paths.run(dataset, "ce", suite.seeds[0]) / "metrics.jsonl"
        if not file.exists():
            continue
        curve = [json.loads(x).get("val_top1") for x in file.read_text().splitlines() if x]
        curve = [v for v in curve if v is not None]
        cut = max(1, math.floor(0.8 * len(curve)))
        if len(curve) < 2 or cut >= len(curve):
            continue
        gain = max(curve[cut:]) - max(curve[:cut])
        out[dataset] = {"epochs": len(curve), "last_20pct_gain": round(gain, 3)}
    return out


def _row(dataset: str, method: str, runs: list[tuple[int, RunSummary]]) -> dict[str, Any]:
    def values(which: str, split: str) -> list[float]:
        records = [getattr(summary, which) for _, summary in runs]
        return [record[f"{split}_top1"] for record in records if f"{split}_top1" in record]

    row: dict[str, Any] = {"dataset": dataset, "method": method, "seeds": [r[0] for r in runs]}
    for which in ("best", "last"):
        for split in ("val", "test"):
            vals = values(which, split)
            mean, std = mean_std(vals)
            row[f"{split}_{which}"] = vals
            row[f"{split}_{which}_mean"], row[f"{split}_{which}_std"] = mean, std
    for key in ("flops", "seconds", "peak_mb"):
        costs = [summary.signal_cost.get(key, 0.0) for _, summary in runs]
        row[f"signal_{key}"] = statistics.fmean(costs) if runs else 0
    row["student_seconds"] = (
        statistics.fmean([s.seconds_total or 0.0 for _, s in runs]) if runs else 0.0
    )
    for key, field_name in (("total_flops", "total_flops"), ("total_seconds", "seconds")):
        totals = [s.cost.get("total", {}).get(field_name) or 0.0 for _, s in runs]
        row[key] = statistics.fmean(totals) if runs else 0.0
    return row


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each method's teacher-signal cost divided by vanilla KD's (the trained teacher).

    Every method on the trained teacher pays the same signal (training it, then one frozen
    forward per batch), so when no ``kd`` run finished (it diverged, or the suite lacks it) the
    first teacher-based method that did stands in.
    """
    finished_on_teacher = [
        r
        for r in rows
        if r["seeds"] and resolve_method(r.get("preset", r["method"])).source == "teacher"
    ]
    finished_on_teacher.sort(key=lambda r: r["method"] != "kd")
    references: dict[str, dict[str, Any]] = {}
    for r in finished_on_teacher:
        references.setdefault(r["dataset"], r)
    for row in rows:
        reference = references.get(row["dataset"])
        for key in ("flops", "seconds", "peak_mb"):
            base = reference[f"signal_{key}"] if reference else 0.0
            row[f"signal_{key}_vs_kd"] = row[f"signal_{key}"] / base if base else None


def write_results(results: dict[str, Any], root: Path, suite: Suite) -> None:
    atomic_write_text(root / "results.md", results_markdown(results, suite))
    atomic_write_text(root / "results.csv", results_csv(results))
    write_json(root / "results.json", results)
    plot_accuracy_vs_cost(results["rows"], root / "accuracy_vs_cost.png")
    plot_budget(results["rows"], root / "budget.png")
    paths = BenchPaths(root)
    curves = {
        f"{row['dataset']} {row['method']}": [
            paths.run(row["dataset"], row["method"], seed) / "metrics.jsonl"
            for seed in row["seeds"]
        ]
        for row in results["rows"]
        if row["seeds"]
    }
    plot_method_curves(curves, root / "curves.png")
    for dataset in suite.datasets:
        heatmap = paths.aesl(dataset, suite.seeds[0]) / "soft_labels.png"
        if heatmap.exists():
            shutil.copyfile(heatmap, root / f"aesl_{dataset}.png")
