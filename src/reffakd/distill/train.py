"""``train_student``: a student trained with any method, in a self-contained run directory.

The folder is locked and the run built and checked (:func:`reffakd.distill.build.build_run`);
only then is ``config.yaml`` written, the teacher signal set up (which may train an autoencoder
or a light teacher inside the run) and the student trained. A refused run leaves the folder as
it found it. An interrupted run continues with ``resume=True``, and a run continued with more
``optim.epochs`` is bit-identical to one asked for that many epochs from the start (on CPU, the
schedule's milestones being the same). Under ``torchrun`` (:mod:`reffakd.training.distributed`)
the same function runs in every process: rank 0 takes the lock and writes, the others follow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reffakd import __version__
from reffakd.config import TrainConfig, load_yaml
from reffakd.data.prepared import PreparedData
from reffakd.data.user import USER_DATA, prepare_user_data, user_splits
from reffakd.distill.build import StudentRun, absolute_paths, build_run
from reffakd.errors import UserError, UserTypeError
from reffakd.kd.source_base import SignalRecord
from reffakd.kd.task import Distiller
from reffakd.models import is_user_module_name, user_module_name
from reffakd.runtime import seed_everything
from reffakd.training.checkpoint import load_checkpoint
from reffakd.training.checks import constant_guess, print_warnings, uniform_soft_labels
from reffakd.training.cost import cost_summary, input_flops, phase_cost
from reffakd.training.distributed import DistContext, process_group, rank_seed
from reffakd.training.job import FitSpec, Fitted, refuse_changes, run_job
from reffakd.training.precision import AUTO, cpu_bf16_units
from reffakd.training.rundir import RunDir, check_resumable, write_record
from reffakd.training.runs import load_run_config
from reffakd.training.sinks import epoch_sinks
from reffakd.training.summary import RunSummary, read_summary

EPOCHS = "optim.epochs"


def train_student(
    config: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    student: nn.Module | None = None,
    data: Any = None,
    command: str | None = None,
) -> RunSummary:
    """Train ``config.student`` with ``config.method`` on ``config.data``; returns the summary.

    ``student``: your own ``nn.Module`` instead of a named model; it trains in place and the run
    records it as ``<user module ClassName>``. ``data``: your own data instead of a named
    dataset (:func:`reffakd.data.user.user_splits`: ``DataSplits``, a dataset, tensors, or a
    mapping of ``train``/``val``/``test``), recorded as ``user data``; without ``val`` a
    ``config.data.val_fraction`` of train is held out. Neither can be rebuilt from the run's
    files, so such a run resumes only through this function, given the same module and data
    again. ``command``: the command line, kept in ``command.txt`` and the summary.

    With ``resume`` the run in ``out`` continues with the config it was made with; ``config``
    may differ from it only in ``optim.epochs`` (to extend or shorten the run, never below the
    epochs already trained) and in :data:`~reffakd.training.rundir.FREE_ON_RESUME`.
    """
    out = Path(out)
    config = _recorded(config, student, data)
    absolute_paths(config.source)
    with process_group(config.device) as dist, _quiet_unless(dist.is_main):
        if resume:
            _check_resumable(RunDir(out), config, data is not None)
            summary = check_resume(config, out)
            if summary is not None:
                return summary
        prepared = _user_data(config, data) if data is not None else None
        job = StudentJob(config, out, prepared, student, dist, resume, command)
        return run_job(job, out, resume=resume, dist=dist)


@contextlib.contextmanager
def _quiet_unless(speaking: bool) -> Iterator[None]:
    """Standard output only from rank 0 (one teacher line, not one per process)."""
    if speaking:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def check_resume(config: TrainConfig, out: Path) -> RunSummary | None:
    """Refuse to resume ``out`` with another config; the summary when it is already done."""
    recorded = load_run_config(out)
    if config.compute.precision == AUTO:  # the run keeps the precision it was resolved to
        config.compute = dataclasses.replace(
            config.compute,
            precision=recorded.compute.precision,
            channels_last=recorded.compute.channels_last,
        )
    refuse_changes(
        recorded,
        config,
        f"{out} holds a training run made with other options ({{changes}}); resume it with its"
        " own options, or start a new run with another --out.",
        may_change=(EPOCHS,),
    )
    summary = read_summary(out)
    wanted = config.optim.epochs
    if summary is not None and summary.epochs == wanted:
        return summary
    if wanted != recorded.optim.epochs:
        trained = trained_epochs(RunDir(out))
        if wanted < trained:
            raise UserError(
                f"{out} has already trained {trained} epochs, more than --epochs {wanted}; "
                f"pass --epochs {trained} or more, or leave --epochs out."
            )
    return None


def trained_epochs(run_dir: RunDir) -> int:
    """The epochs saved in ``last.pt`` (0 before the first one)."""
    if not run_dir.last_checkpoint.exists():
        return 0
    return int(load_checkpoint(run_dir.last_checkpoint).get("epoch", 0))


def _recorded(config: TrainConfig, student: nn.Module | None, data: Any) -> TrainConfig:
    """A copy of ``config`` naming the module and data passed as objects."""
    if student is not None:
        if not isinstance(student, nn.Module):
            raise UserTypeError(f"student must be a torch nn.Module, got {type(student).__name__}.")
        config = dataclasses.replace(config, student=user_module_name(student))
    if data is not None and not isinstance(data, PreparedData):
        data_config = dataclasses.replace(config.data, name=USER_DATA, data_dir=None)
        config = dataclasses.replace(config, data=data_config)
    return config


def _user_data(config: TrainConfig, data: Any) -> PreparedData:
    if isinstance(data, PreparedData):
        return data
    splits = user_splits(
        data, val_fraction=config.data.val_fraction, split_seed=config.data.split_seed
    )
    return prepare_user_data(splits, config.data.image_size)


def _check_resumable(run_dir: RunDir, config: TrainConfig, data_given: bool) -> None:
    """A run of a user module or user data resumes only when given them again."""
    if not run_dir.config.exists():
        return
    values = load_yaml(run_dir.config)
    if (values.get("data") or {}).get("name") == USER_DATA and not data_given:
        raise UserError(
            f"{run_dir.path} trained on data passed to train_student, which cannot be read "
            "again from its config: pass the same data again (train_student(..., data=...))."
        )
    recorded = str(values.get("student"))
    if recorded == config.student or not is_user_module_name(recorded):
        return
    if is_user_module_name(config.student):
        raise UserError(
            f"{run_dir.path} trained a {recorded}, not a {config.student}; resume it with a "
            "module of the same class."
        )
    raise UserError(
        f"{run_dir.path} trained a {recorded} passed to train_student, which cannot be rebuilt "
        "from its name: pass a module of that class again (train_student(..., student=module))."
    )


@dataclass
class StudentJob:
    """A student trained with its method (the :class:`~reffakd.training.job.RunJob` parts)."""

    config: TrainConfig
    out: Path
    data: PreparedData | None
    student: nn.Module | None
    dist: DistContext
    resume: bool
    command: str | None
    kind: str = "training"
    run: StudentRun = field(init=False)
    signal: SignalRecord = field(init=False, default_factory=SignalRecord)
    signal_seconds: float = field(init=False, default=0.0)
    forwards: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)

    def prepare(self, run_dir: RunDir) -> None:
        self.run = build_run(self.config, self.out, self.data, self.student, self.dist)

    def record(self, run_dir: RunDir) -> None:
        run = self.run
        fingerprint = run.data.fingerprint()
        if self.resume:
            check_resumable(run_dir, fingerprint, run.student)
        run.data.save_inputs(run_dir.path)  # a resumed run whose inputs changed is refused here
        if self.resume:  # a finished run extended to more epochs is unfinished again
            run_dir.summary.unlink(missing_ok=True)
        write_record(run_dir, run.config, fingerprint, self.command)

    def fit_spec(self, run_dir: RunDir) -> FitSpec:
        run, config, dist = self.run, self.run.config, self.dist
        if run.source is not None:
            started = time.perf_counter()
            dist.main_first(run.source.setup)
            self.signal_seconds = round(time.perf_counter() - started, 3)
            self.signal = run.source.record()
        task = Distiller(run.student, run.source, run.objective)
        self.forwards = _eager_flops(run)  # before the Trainer compiles the networks
        seed_everything(rank_seed(config.seed, dist.rank))
        return FitSpec(
            task,
            run.data.splits,
            run.transform,
            config.optim,
            seed=config.seed,
            device=run.device,
            desc=f"{config.method} {config.student}",
            phase="student_training",
            curves=["train_top1", "val_top1", "test_top1"],
            compute=config.compute,
            progress=config.progress,
            sinks=epoch_sinks(run_dir.path, config.tensorboard) if dist.is_main else [],
        )

    def finish(self, run_dir: RunDir, fitted: Fitted) -> RunSummary:
        run, dist = self.run, self.dist
        summary = dataclasses.replace(
            fitted.training,
            **_described(run, dist),
            phases={"teacher_signal_seconds": self.signal_seconds},
            cost=cost_summary(self.signal.phases, [_student_phase(run, fitted, self.forwards)]),
            command=self.command or None,
        )
        if self.signal.key == "soft_labels":
            summary.soft_labels = self.signal.info
        elif self.signal.key is not None:
            summary.records[self.signal.key] = self.signal.info
        summary.warnings = _warnings(summary, run.data)
        if dist.is_main:
            print_warnings(summary.warnings)
        return summary


def _described(run: StudentRun, dist: DistContext) -> dict[str, Any]:
    """What trained on what, how and where: the student run's fields of the summary."""
    config, data = run.config, run.data
    return {
        "method": run.method.__dict__,
        "student": config.student,
        "student_parameters": sum(p.numel() for p in run.student.parameters()),
        "dataset": data.spec.name,
        "data_source": data.splits.source,
        "split_sizes": data.splits.sizes(),
        "inputs": data.describe(),
        "seed": config.seed,
        "device": str(run.device),
        "precision": config.compute.precision,
        "channels_last": config.compute.channels_last,
        "cpu_bf16_units": ", ".join(cpu_bf16_units()) or "none",
        "distributed": {
            "world_size": dist.world_size,
            "batch_size": config.optim.batch_size,
            "batch_size_per_process": config.optim.batch_size // dist.world_size,
        },
        "torch": torch.__version__,
        "python": platform.python_version(),
        "reffakd_version": __version__,
    }


def _warnings(summary: RunSummary, data: PreparedData) -> list[str]:
    """What the finished run's numbers do not say by themselves (see training.checks)."""
    names = data.splits.class_names
    found = [
        uniform_soft_labels(summary.record("soft_labels").get("entropy_bits"), len(names)),
        constant_guess(summary.best, data.splits, names),
    ]
    return [warning for warning in found if warning]


def _phase_networks(run: StudentRun) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The student and the frozen networks the source runs on every batch, with their inputs;
    ``student_no_grad`` is the student's extra forward without gradient (CS-KD's partners)."""
    networks: dict[str, nn.Module] = {"student": run.student}
    inputs = dict.fromkeys(networks, run.data.example_input())
    if run.source is not None:
        frozen = run.source.networks_per_batch()
        networks.update(frozen)
        inputs.update({name: run.data.example_input() for name in frozen})
        inputs.update(run.source.network_inputs())
        if _extra_student_samples(run).get("no_grad"):
            networks["student_no_grad"] = run.student
            inputs["student_no_grad"] = run.data.example_input()
    return networks, inputs


def _extra_student_samples(run: StudentRun) -> dict[str, int]:
    assert run.source is not None
    epochs, train_size = run.config.optim.epochs, len(run.data.splits.train)
    return run.source.extra_student_samples(epochs, train_size)


def _eager_flops(run: StudentRun) -> dict[str, dict[str, Any]]:
    """Each network's forward FLOPs, counted once on the eager network."""
    networks, inputs = _phase_networks(run)
    return {name: input_flops(network, inputs[name]) for name, network in networks.items()}


def _student_phase(
    run: StudentRun, fitted: Fitted, forwards: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Student training, with the frozen networks the source runs on every batch and the
    student's passes that self-distillation adds (DLB's repeated half is more trained samples;
    CS-KD's partners run as ``student_no_grad``)."""
    networks, inputs = _phase_networks(run)
    epochs, train_size = run.config.optim.epochs, len(run.data.splits.train)
    samples = {"student": epochs * train_size}
    if run.source is not None:
        samples.update(run.source.network_samples(epochs, train_size))
        extra = _extra_student_samples(run)
        samples["student"] += extra.get("trained", 0)
        if extra.get("no_grad"):
            samples["student_no_grad"] = extra["no_grad"]
    phase = phase_cost(
        "student_training",
        networks,
        inputs,
        samples,
        fitted.meter,
        trained=["student"],
        forwards=forwards,
    )
    if run.source is not None and run.source.state_bytes():
        phase["source_state_mb"] = round(run.source.state_bytes() / 2**20, 3)
    return phase
