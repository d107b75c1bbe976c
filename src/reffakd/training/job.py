"""One run job for every trained network: a student, ReffAKD's autoencoder, LW-KD's light teacher.

Each network's own code is a :class:`RunJob`: what it checks and records before any work, what
trains, and what it makes of the trained network. :func:`run_job` does the rest, the same way
for all of them:

1. lock the folder (:func:`~reffakd.training.rundir.open_run`; a new run over an old one is
   refused), then ``job.prepare`` on every process;
2. ``job.record`` on rank 0: check what a resume continues from, write the config, data
   fingerprint and command line;
3. train with the engine, continuing from ``last.pt`` when the run holds one (the only place a
   resume is decided: a folder that got this far either is new or passed ``job.record``'s
   checks), metered as one cost phase;
4. ``job.finish`` makes the :class:`~reffakd.training.summary.RunSummary`; rank 0 draws the
   curves and writes ``summary.json``.

The config-change policy of a resume is :func:`refuse_changes`: a run continues with the config
it was made with, changed only in the keys its job allows (a student's ``optim.epochs``) and
in :data:`~reffakd.training.rundir.FREE_ON_RESUME`. A refusal is a :class:`ResumeConflict`,
which names the changed keys so the command line can say which flags to drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from reffakd.config import ComputeConfig, OptimConfig, from_dict, load_yaml
from reffakd.data.loader import Splits, Transform
from reffakd.errors import UserError
from reffakd.training.cost import PhaseMeter
from reffakd.training.distributed import DistContext
from reffakd.training.engine import Trainer
from reffakd.training.plots import plot_curves
from reffakd.training.rundir import RunDir, config_changes, describe_changes, open_run
from reffakd.training.sinks import EpochSink
from reffakd.training.summary import RunSummary, write_summary
from reffakd.training.task import Task


class ResumeConflict(UserError):
    """A resume asked for another config than the run's; ``changes`` maps each dotted key to
    ``(recorded, requested)``."""

    def __init__(self, message: str, changes: dict[str, tuple[Any, Any]]) -> None:
        super().__init__(message)
        self.changes = changes


def refuse_changes(
    recorded: Any, requested: Any, message: str, *, may_change: tuple[str, ...] = ()
) -> None:
    """Raise :class:`ResumeConflict` when ``requested`` differs from ``recorded`` in a key
    outside ``may_change`` (and FREE_ON_RESUME). ``message`` has ``{changes}`` for the list."""
    changes = config_changes(recorded, requested)
    for key in may_change:
        changes.pop(key, None)
    if changes:
        raise ResumeConflict(message.format(changes=describe_changes(changes)), changes)


def recorded_config(run_dir: RunDir, cls: type, what: str) -> Any:
    """The config ``run_dir`` records as a ``cls``, None when it records none; a config of
    another kind is refused."""
    if not run_dir.config.exists():
        return None
    try:
        return from_dict(cls, load_yaml(run_dir.config))
    except UserError:
        raise UserError(
            f"{run_dir.path} holds a run of another kind, not a {what} run; choose another --out."
        ) from None


def check_recorded_config(run_dir: RunDir, cls: type, config: Any, what: str) -> bool:
    """False when ``run_dir`` records no config; True when it records ``config`` (up to
    FREE_ON_RESUME); else a :class:`ResumeConflict` naming what differs."""
    recorded = recorded_config(run_dir, cls, what)
    if recorded is None:
        return False
    refuse_changes(
        recorded,
        config,
        f"{run_dir.path} holds a {what} run made with other options ({{changes}}); resume it "
        "with its own options (--resume alone) or choose another --out.",
    )
    return True


@dataclass
class FitSpec:
    """What trains, on what, how: the engine's inputs, the cost phase its training is metered
    as, and the metrics ``curves.png`` shows."""

    task: Task
    splits: Splits
    transform: Transform
    optim: OptimConfig
    seed: int
    device: torch.device
    desc: str
    phase: str
    curves: list[str]
    compute: ComputeConfig
    progress: bool = True
    sinks: list[EpochSink] = field(default_factory=list)


@dataclass
class Fitted:
    """A finished fit: the per-epoch history, the training summary, and the phase's meter
    record (its ``seconds`` are the engine's, summed over every resumed part)."""

    history: list[dict[str, Any]]
    training: RunSummary
    meter: dict[str, Any]


class RunJob(Protocol):
    """The parts of a run that belong to the network it trains."""

    kind: str  # what open_run calls the run in its messages: training, soft-label, ...

    def prepare(self, run_dir: RunDir) -> None:
        """Build and check what the run needs, on every process, once the folder is locked."""

    def record(self, run_dir: RunDir) -> None:
        """Rank 0, before any work: check what a resume continues from, then record the run."""

    def fit_spec(self, run_dir: RunDir) -> FitSpec:
        """What trains (set up any teacher signal first)."""

    def finish(self, run_dir: RunDir, fitted: Fitted) -> RunSummary:
        """The run's summary, and any artefact made from the trained network."""


def run_job(job: RunJob, out: Path, *, resume: bool, dist: DistContext | None = None) -> RunSummary:
    """Run ``job`` in ``out`` (see the module docstring); returns its summary."""
    dist = dist or DistContext()
    locked = dist.main_first(lambda: open_run(Path(out), resume, job.kind), others=False)
    run_dir = locked or RunDir(out)
    try:
        job.prepare(run_dir)
        dist.main_first(lambda: job.record(run_dir), others=False)
        spec = job.fit_spec(run_dir)
        fitted = fit(spec, run_dir, dist)
        summary = job.finish(run_dir, fitted)
        if dist.is_main:
            plot_curves(fitted.history, run_dir.path / "curves.png", spec.curves)
            write_summary(run_dir, summary)
        return summary
    finally:
        run_dir.unlock()


def fit(spec: FitSpec, run_dir: RunDir, dist: DistContext) -> Fitted:
    """Train ``spec`` in ``run_dir``, from ``last.pt`` when there is one."""
    trainer = Trainer(
        spec.task,
        spec.splits,
        spec.transform,
        spec.optim,
        run_dir,
        seed=spec.seed,
        device=spec.device,
        progress=spec.progress,
        desc=spec.desc,
        sinks=spec.sinks,
        compute=spec.compute,
        dist=dist,
    )
    if run_dir.last_checkpoint.exists():
        trainer.resume()
    with PhaseMeter(spec.phase, spec.device) as meter:
        result = trainer.fit()
    training = RunSummary.from_json(result.summary)
    return Fitted(result.history, training, {**meter.result, "seconds": training.seconds_total})
