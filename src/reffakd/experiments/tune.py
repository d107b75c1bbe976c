"""``reffakd tune``: grid or random search over config keys, scored on the validation split.

Each trial is an ordinary training run in ``OUT/trials/NNN``. The score is the best validation
top-1 of the trial (the test split is recorded but never used to choose). The best trial's
resolved config is written to ``OUT/best.yaml``, which ``reffakd train --config`` accepts.

Soft-label knobs are tuned without retraining the autoencoder: ``aesl.boost`` and
``aesl.temperature`` re-derive the table from the similarity matrix stored in one shared
soft-label run (``OUT/aesl``).
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from pathlib import Path
from typing import Any

import yaml

from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.aesl.similarity import soft_labels_from_similarity
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.config import (
    TrainConfig,
    ae_config_for,
    apply_overrides,
    from_dict,
    to_dict,
    yaml_value,
)
from reffakd.distill.build import validate_names
from reffakd.distill.train import train_student
from reffakd.errors import UserError
from reffakd.files import atomic_write_text, write_json
from reffakd.training.rundir import RunDir
from reffakd.training.summary import RunSummary, read_summary

AESL_KEYS = ("aesl.boost", "aesl.temperature")


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["loss.alpha=0.1,0.5", "loss.temperature=1,4"]`` -> {key: [values]}."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        if "=" not in spec:
            raise UserError(f"--grid expects KEY=V1,V2,... (e.g. loss.alpha=0.1,0.5), got {spec!r}")
        key, raw = spec.split("=", 1)
        values = [yaml_value(v) for v in raw.split(",") if v.strip()]
        if not values:
            raise UserError(f"--grid {key} has no values.")
        grid[key.strip()] = values
    return grid


def trials(grid: dict[str, list[Any]], samples: int | None, seed: int) -> list[dict[str, Any]]:
    """Every combination, or ``samples`` of them drawn without replacement."""
    keys = list(grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]
    if samples is not None and samples < len(combos):
        combos = random.Random(seed).sample(combos, samples)
    return combos


def trial_config(base: TrainConfig, trial: dict[str, Any]) -> TrainConfig:
    overrides = [f"{k}={json.dumps(v)}" for k, v in trial.items() if k not in AESL_KEYS]
    return from_dict(TrainConfig, apply_overrides(to_dict(copy.deepcopy(base)), overrides))


def run_tune(
    base: TrainConfig, grid: dict[str, list[Any]], out: Path, samples: int | None = None
) -> dict[str, Any]:
    out = Path(out)
    if samples is not None and samples < 1:
        raise UserError(f"--samples must be >= 1, got {samples}.")
    if base.data.val_fraction <= 0:
        raise UserError("tune scores trials on the validation split: set data.val_fraction > 0.")
    chosen = trials(grid, samples, base.seed)
    for trial in chosen:  # every trial's config checked before the first file is written
        validate_names(trial_config(base, trial))
    shared = None
    if any(key in grid for key in AESL_KEYS):
        shared = make_soft_labels(ae_config_for(base), out / "aesl", resume=True)
    results = []
    for number, trial in enumerate(chosen):
        config = trial_config(base, trial)
        run = out / "trials" / f"{number:03d}"
        if shared is not None:
            config.source["soft_labels"] = str(_derived_soft_labels(shared, trial, run))
        summary = _summary_or_train(config, run)
        results.append(
            {
                "trial": number,
                "params": trial,
                "run": str(run),
                "val_best": summary.best.get("val_top1"),
                "best_epoch": summary.best_epoch,
                "test_at_val_best": summary.best.get("test_top1"),
                "val_last": summary.last.get("val_top1"),
                "test_max": _best_test_epoch(run),
            }
        )
        print(f"trial {number}: {trial} -> val {results[-1]['val_best']:.2f}%")
    best = max(results, key=lambda r: r["val_best"])
    best_config = trial_config(base, best["params"])
    if shared is not None:
        best_config.source["soft_labels"] = str(Path(best["run"]) / "aesl_soft_labels.pt")
    atomic_write_text(out / "best.yaml", yaml.safe_dump(to_dict(best_config), sort_keys=False))
    record = {
        "selection": "best validation top-1 (test never used)",
        "grid": grid,
        "trials": results,
        "best": best,
        "selection_effect": selection_effect(results),
    }
    write_json(out / "tune.json", record)
    atomic_write_text(out / "tune.md", tune_markdown(record))
    return record


def _best_test_epoch(run: Path) -> float | None:
    """The highest test top-1 of any epoch: what choosing the epoch on the test set reports."""
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return None
    values = [json.loads(x).get("test_top1") for x in metrics.read_text().splitlines() if x]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def selection_effect(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How optimistic choosing on the test set is: the best test top-1 over every trial and
    epoch (the reference notebooks' protocol) against the test top-1 of the trial and epoch
    chosen on validation (this tool's). Their difference is the optimism, in points."""
    scored = [r for r in results if r.get("test_max") is not None]
    if not scored:
        return None
    on_val = max(results, key=lambda r: r["val_best"])
    on_test = max(scored, key=lambda r: r["test_max"])
    return {
        "chosen_on_validation": {"trial": on_val["trial"], "test": on_val["test_at_val_best"]},
        "chosen_on_test": {"trial": on_test["trial"], "test": on_test["test_max"]},
        "optimism_points": round(on_test["test_max"] - on_val["test_at_val_best"], 4),
    }


def _derived_soft_labels(shared: SoftLabels, trial: dict[str, Any], run: Path) -> Path:
    if shared.similarity is None:
        raise UserError("the shared soft-label file has no similarity matrix; regenerate it.")
    boost = trial.get("aesl.boost", shared.meta["boost"])
    temperature = trial.get("aesl.temperature", shared.meta["temperature"])
    table = soft_labels_from_similarity(shared.similarity.double(), boost, temperature)
    meta = {**shared.meta, "boost": boost, "temperature": temperature}
    path = run / "aesl_soft_labels.pt"
    SoftLabels(table, shared.similarity, meta).save(path)
    return path


def _summary_or_train(config: TrainConfig, run: Path) -> RunSummary:
    return read_summary(run) or train_student(config, run, resume=RunDir(run).holds_run())


def tune_markdown(record: dict[str, Any]) -> str:
    keys = list(record["grid"])
    lines = [
        "| trial | " + " | ".join(keys) + " | val best | epoch | val last | test at val-best |",
        "|---" * (len(keys) + 5) + "|",
    ]
    for r in sorted(record["trials"], key=lambda r: -r["val_best"]):
        cells = " | ".join(str(r["params"][k]) for k in keys)
        lines.append(
            f"| {r['trial']} | {cells} | {r['val_best']:.2f} | {r['best_epoch']} | "
            f"{r['val_last']:.2f} | {r['test_at_val_best']:.2f} |"
        )
    effect = record.get("selection_effect")
    if effect:
        val, test = effect["chosen_on_validation"], effect["chosen_on_test"]
        lines += [
            "",
            "Selection effect: choosing trial and epoch on validation (this table) gives "
            f"test {val['test']:.2f} (trial {val['trial']}); choosing them on the test set, as "
            f"the reference notebooks do, reports {test['test']:.2f} (trial {test['trial']}): "
            f"{effect['optimism_points']:+.2f} points of optimism.",
        ]
    return "\n".join(lines) + "\n"
