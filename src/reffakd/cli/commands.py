"""One function per sub-command: parsed flags in, a run or a printout out, exit code 0."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.cli.flags import (
    SOFT_LABEL_FLAGS,
    TRAIN_FLAGS,
    flags_named,
    resolve,
    resumed,
)
from reffakd.config import SoftLabelConfig, TrainConfig, from_dict, load_yaml
from reffakd.data.user import USER_DATA
from reffakd.distill.train import train_student
from reffakd.errors import UserError, first_line
from reffakd.experiments.bench import load_suite, run_suite
from reffakd.experiments.cost import CostOptions, cost_input, format_model_cost, model_cost
from reffakd.experiments.demo import BASELINE_DIR, run_demo
from reffakd.experiments.listing import LISTINGS
from reffakd.experiments.report import write_report
from reffakd.experiments.show import show
from reffakd.experiments.tune import parse_grid, run_tune
from reffakd.models import is_user_module_name
from reffakd.training.checks import print_warnings, uniform_soft_labels
from reffakd.training.distributed import world_from_env
from reffakd.training.recipe import describe_schedule
from reffakd.training.runs import load_run_config, run_kind
from reffakd.training.summary import summary_line

# What `soft-labels --resume` says about a run directory of another kind.
NOT_SOFT_LABELS = {
    "train": "{out} is a training run, not a soft-labels run; continue it with "
    "`reffakd train --resume {out}`.",
    "light-teacher": "{out} is an LW-KD light-teacher run, not a soft-labels run.",
}


def cmd_soft_labels(args: argparse.Namespace) -> int:
    out = args.run_dir = Path(args.out)
    kind = run_kind(out) if args.resume else None
    if kind in NOT_SOFT_LABELS:
        raise UserError(NOT_SOFT_LABELS[kind].format(out=out))
    if kind == "soft-labels":
        recorded = from_dict(SoftLabelConfig, load_yaml(out / "config.yaml"))
        config = resumed(recorded, args, SOFT_LABEL_FLAGS)
    else:
        config = resolve(SoftLabelConfig, args, SOFT_LABEL_FLAGS)
    started = time.perf_counter()
    with flags_named(out, SOFT_LABEL_FLAGS, may=""):
        labels = make_soft_labels(config, out, resume=args.resume, command=args.command_line)
    meta = labels.meta
    metric = meta.get("reconstruction_metric", "mse")
    error = meta.get(f"reconstruction_{metric}_val")
    made = f"embedder {meta['embedder']}" if meta.get("embedder") else f"AE val {metric} {error}"
    print(
        f"soft labels: {Path(args.out) / 'soft_labels.pt'} ({labels.num_classes}x"
        f"{labels.num_classes}, boost {meta['boost']}, mean row entropy "
        f"{meta['entropy_bits']:.4f} bits, {made})"
    )
    print(f"heatmap: {Path(args.out) / 'soft_labels.png'} | {time.perf_counter() - started:.1f}s")
    warning = uniform_soft_labels(meta["entropy_bits"], labels.num_classes)
    print_warnings([warning] if warning else [])
    _write_report_after(Path(args.out))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        out = args.run_dir = Path(args.resume)
        if args.out and Path(args.out).resolve() != out.resolve():
            raise UserError(
                f"--resume {out} continues the run in its own folder; drop --out {args.out}."
            )
        recorded = load_run_config(out)
        _refuse_api_run(out, recorded)
        config = resumed(recorded, args, TRAIN_FLAGS)
        resume = True
    else:
        config = resolve(TrainConfig, args, TRAIN_FLAGS)
        default = f"runs/{config.data.name}-{config.method}-{config.student}-s{config.seed}"
        out = args.run_dir = Path(args.out or default)
        resume = False
        if world_from_env().is_main:
            print(describe_schedule(config.optim, config.data.name, args.given_keys))
    with flags_named(out, TRAIN_FLAGS, may="optim.epochs"):
        summary = train_student(config, out, resume=resume, command=args.command_line)
    if world_from_env().is_main:  # under torchrun, one report for the job, written once
        print(summary_line(summary))
        print(f"run directory: {out}")
        _write_report_after(out)
    return 0


def _refuse_api_run(out: Path, config: TrainConfig) -> None:
    """A run of a module or data passed in Python cannot be rebuilt from the command line."""
    passed = [
        what
        for what, was_passed in (
            (f"the module {config.student}", is_user_module_name(config.student)),
            ("its data", config.data.name == USER_DATA),
        )
        if was_passed
    ]
    if passed:
        raise UserError(
            f"{out} was trained on {' and '.join(passed)} passed to train_student in Python, "
            "which the command line cannot rebuild; resume it in Python: train_student(config, "
            "out, resume=True, student=..., data=...)."
        )


def _write_report_after(directory: Path) -> None:
    """Write the report of a finished run; a failure is a warning, the run stays finished."""
    try:
        path = write_report(directory)
    except Exception as exc:  # the run's results are safe on disk whatever went wrong here
        print(
            f"reffakd: warning: report not written ({type(exc).__name__}: {first_line(exc)}); "
            f"retry with `reffakd report {directory}`.",
            file=sys.stderr,
        )
        return
    print(f"report: {path}")


def cmd_demo(args: argparse.Namespace) -> int:
    args.out = args.run_dir = Path(args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S"))
    code = run_demo(args)
    _write_report_after(Path(args.out))
    _write_report_after(Path(args.out) / BASELINE_DIR)
    return code


def cmd_tune(args: argparse.Namespace) -> int:
    grid = parse_grid(args.grid)
    base = resolve(TrainConfig, args, {**TRAIN_FLAGS, "teacher": "source.run"})
    record = run_tune(base, grid, Path(args.out), samples=args.samples)
    print(
        f"best: {record['best']['params']} val {record['best']['val_best']:.2f}% "
        f"-> {Path(args.out) / 'best.yaml'} (use with `reffakd train --config`)"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    if args.seeds:
        suite.seeds = list(args.seeds)
    out = Path(args.out or f"runs/bench/{suite.name}")
    run_suite(suite, out, data_dir=args.data_dir, command=args.command_line)
    print((out / "results.md").read_text())
    print(f"bench directory: {out}")
    _write_report_after(out)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print(LISTINGS[args.what]())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(f"report: {write_report(Path(args.directory))}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(show(Path(args.directory)))
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    for flag in ("batch_size", "epochs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    if not 0.0 <= args.val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    options = CostOptions(
        args.image_size,
        args.in_channels,
        args.num_classes,
        args.vocab_size,
        args.tokens,
        args.val_fraction,
        args.data_dir,
    )
    cost = model_cost(
        args.model, cost_input(args.dataset, options, args.model), args.batch_size, args.epochs
    )
    if args.json:
        print(json.dumps({"dataset": args.dataset, **cost}, indent=2))
    else:
        print(format_model_cost(cost, args.dataset))
    return 0


COMMANDS = {
    "soft-labels": cmd_soft_labels,
    "train": cmd_train,
    "demo": cmd_demo,
    "bench": cmd_bench,
    "tune": cmd_tune,
    "list": cmd_list,
    "cost": cmd_cost,
    "report": cmd_report,
    "show": cmd_show,
}
