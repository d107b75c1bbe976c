"""``reffakd demo``: AESL soft labels, a ReffAKD LeNet-5 student, and the same student trained
with plain cross-entropy beside it, on Fashion-MNIST."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from reffakd.config import DataConfig, OptimConfig, SoftLabelConfig, TrainConfig
from reffakd.data.prepare import prepare_data
from reffakd.distill.train import train_student
from reffakd.errors import DataError, UserError
from reffakd.training.summary import RunSummary, summary_line

HOW_TO_PROVIDE = (
    "provide Fashion-MNIST with --data-dir DIR or REFFAKD_DATA=DIR (a folder holding "
    "fashion-mnist/ or the four IDX files), or `apt-get install dataset-fashion-mnist`"
)


def demo_configs(args: argparse.Namespace) -> TrainConfig:
    """The short schedule: a few AE epochs, a few student epochs with one LR drop."""
    data = DataConfig(name="fashion-mnist", data_dir=args.data_dir)
    ae_epochs = max(args.ae_epochs, 1)
    ae = SoftLabelConfig(
        data=data,
        optim=OptimConfig(epochs=ae_epochs, milestones=[max(ae_epochs - 1, 1)]),
        seed=args.seed,
    )
    epochs = max(args.epochs, 1)
    return TrainConfig(
        data=data,
        optim=OptimConfig(epochs=epochs, lr=0.05, milestones=[max(epochs - 1, 1)]),
        student="lenet5",
        method="reffakd",
        ae=ae,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )


BASELINE_DIR = "ce-baseline"  # inside the demo's run directory


def run_demo(args: argparse.Namespace) -> int:
    """ReffAKD, then the same student with plain cross-entropy (same data, schedule and seed),
    so the difference says what the soft labels bring."""
    out = Path(args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S"))
    config = demo_configs(args)
    started = time.perf_counter()
    try:
        data = prepare_data(config.data)
    except DataError as exc:
        raise UserError(f"{exc} To run the demo, {HOW_TO_PROVIDE}.") from None
    print(
        f"data: {data.spec.name} from {data.splits.source} "
        f"({len(data.splits.train)} train / {len(data.splits.val)} val / "
        f"{len(data.splits.test)} test), {time.perf_counter() - started:.1f}s"
    )
    command = getattr(args, "command_line", None)
    summary = train_student(config, out, command=command)
    phases = summary.phases or {}
    print(
        f"phase 1, autoencoder + soft labels: {phases.get('teacher_signal_seconds', 0):.1f}s "
        f"({out / 'ae'})"
    )
    print(f"phase 2, ReffAKD LeNet-5 student: {summary.seconds_total:.1f}s")
    print(summary_line(summary))
    baseline_config = dataclasses.replace(config, method="ce")
    baseline = train_student(baseline_config, out / BASELINE_DIR, command=command)
    print(f"phase 3, cross-entropy LeNet-5 baseline: {baseline.seconds_total:.1f}s")
    print(summary_line(baseline))
    print(compare_line(summary, baseline))
    print(f"total {time.perf_counter() - started:.1f}s | run directory: {out}")
    return 0


def compare_line(reffakd: RunSummary, baseline: RunSummary) -> str:
    """ReffAKD minus the ce baseline, in points, at each run's best-on-validation epoch."""
    parts = []
    for split in ("val", "test"):
        ours, theirs = reffakd.best.get(f"{split}_top1"), baseline.best.get(f"{split}_top1")
        if isinstance(ours, int | float) and isinstance(theirs, int | float):
            parts.append(f"{split} {ours:.2f}% vs {theirs:.2f}% ({ours - theirs:+.2f} points)")
    return "ReffAKD vs ce baseline (best epochs): " + ", ".join(parts)
