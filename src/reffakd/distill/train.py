"""``train_student``: a student trained with any method, in a self-contained run directory.

The run is built and checked first (:func:`reffakd.distill.build.build_run`); only then is the
folder locked and ``config.yaml`` written, the teacher signal set up (which may train an
autoencoder or a light teacher inside the run) and the student trained. An interrupted run
continues with ``resume=True``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from reffakd import __version__
from reffakd.config import TrainConfig, dump_yaml
from reffakd.distill.build import StudentRun, build_run
from reffakd.files import atomic_write_text
from reffakd.kd.signal import SignalRecord
from reffakd.kd.task import Distiller
from reffakd.runtime import seed_everything
from reffakd.training.cost import PhaseMeter, cost_summary, phase_cost
from reffakd.training.engine import Trainer
from reffakd.training.plots import plot_curves
from reffakd.training.rundir import RunDir, open_run
from reffakd.training.summary import write_summary


def train_student(config: TrainConfig, out: Path, *, resume: bool = False) -> dict[str, Any]:
    """Train ``config.student`` with ``config.method``; returns the run summary."""
    out = Path(out)
    run_dir = RunDir(out)
    if resume and run_dir.is_complete():
        return json.loads(run_dir.summary.read_text())
    run_dir = open_run(out, resume, "training")
    try:
        return _train_locked(build_run(config, out), run_dir, resume)
    finally:
        run_dir.unlock()


def _train_locked(run: StudentRun, run_dir: RunDir, resume: bool) -> dict[str, Any]:
    config, data = run.config, run.data
    atomic_write_text(run_dir.config, dump_yaml(config))
    data.save_inputs(run_dir.path)
    record = SignalRecord()
    signal_seconds = 0.0
    if run.source is not None:
        started = time.perf_counter()
        run.source.setup()
        signal_seconds = round(time.perf_counter() - started, 3)
        record = run.source.record()
    task = Distiller(run.student, run.source, run.objective)
    seed_everything(config.seed)
    trainer = Trainer(
        task,
        data.splits,
        run.transform,
        config.optim,
        run_dir,
        seed=config.seed,
        device=run.device,
        progress=config.progress,
        desc=f"{config.method} {config.student}",
    )
    if resume and run_dir.last_checkpoint.exists():
        trainer.resume()
    with PhaseMeter("student_training", run.device) as meter:
        result = trainer.fit()
    student_phase = _student_phase(run, meter.result, result.summary)
    plot_curves(
        result.history, run_dir.path / "curves.png", ["train_top1", "val_top1", "test_top1"]
    )
    summary = {
        **result.summary,
        "method": run.method.__dict__,
        "student": config.student,
        "student_parameters": sum(p.numel() for p in run.student.parameters()),
        "dataset": data.spec.name,
        "data_source": data.splits.source,
        "split_sizes": data.splits.sizes(),
        "inputs": data.describe(),
        "seed": config.seed,
        "device": str(run.device),
        "phases": {"teacher_signal_seconds": signal_seconds},
        "cost": cost_summary(record.phases, [student_phase]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "reffakd_version": __version__,
    }
    if record.key is not None:
        summary[record.key] = record.info
    write_summary(run_dir, summary)
    return summary


def _student_phase(
    run: StudentRun, meter: dict[str, Any], summary: dict[str, Any]
) -> dict[str, Any]:
    """Student training, with the frozen networks the source runs on every batch."""
    networks = {"student": run.student}
    if run.source is not None:
        networks.update(run.source.networks_per_batch())
    return phase_cost(
        "student_training",
        networks,
        run.data.example_input(),
        run.config.optim.epochs * len(run.data.splits.train),
        {**meter, "seconds": summary["seconds_total"]},
        trained=["student"],
    )
