"""LW-KD's lightweight teacher: a LeNet-5 trained on the synthesized digits.

It is trained with the standard engine (:class:`reffakd.training.engine.Trainer`: SGD + MultiStepLR,
checkpoints, metrics, progress bar) in a run directory of its own, by default ``RUN/light_teacher/``
inside the student's run, and reused from there on ``--resume``. The directory holds
``config.yaml`` (``kind: lwkd-light-teacher``: classes, input shape, digit source actually used,
seed, normalisation, schedule), the engine's checkpoints and metrics, and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from reffakd.config import ComputeConfig, OptimConfig
from reffakd.data.augment import BatchTransform, channel_stats
from reffakd.data.dataset import DataSplits
from reffakd.errors import UserError
from reffakd.kd.loss_objectives import CrossEntropy
from reffakd.kd.task import Distiller
from reffakd.lwkd.synth import (
    SplitSizes,
    digit_banks,
    resolve_digits,
    split_generator,
    synthesize,
    synthesize_split,
)
from reffakd.models import build_model
from reffakd.runtime import capture_rng_state, restore_rng_state, seed_everything
from reffakd.training.cost import PhaseMeter, phase_cost
from reffakd.training.job import FitSpec, Fitted, run_job
from reffakd.training.rundir import RunDir, write_record
from reffakd.training.runs import load_weights, open_trained_run
from reffakd.training.summary import RunSummary, format_percent

KIND = "lwkd-light-teacher"
TEACHER_DIR = "light_teacher"
MODEL = "lenet5"


@dataclass
class LightTeacherConfig:
    """What defines a light teacher. ``digits`` is the request (auto, mnist, procedural);
    ``digits_used`` what the synthesized set was actually drawn from."""

    num_classes: int
    in_channels: int
    image_size: int
    epochs: int = 5
    per_class: int | None = None
    digits: str = "auto"
    seed: int = 0
    model: str = MODEL
    lr: float = 0.05
    batch_size: int = 128
    digits_used: str = ""
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    kind: str = KIND

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)

    def optim(self) -> OptimConfig:
        """SGD (momentum 0.9, weight decay 5e-4), lr × 0.2 after 50% and 75% of the epochs."""
        milestones = sorted({max(1, round(self.epochs * 0.5)), max(1, round(self.epochs * 0.75))})
        return OptimConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            milestones=milestones,
            gamma=0.2,
            eval_batch_size=1000,
        )

    def transform(self) -> BatchTransform:
        """Resize check and normalisation by the synthesized train set's statistics; no
        augmentation (the synthesis already varies every image)."""
        return BatchTransform(self.image_size, self.mean, self.std)


@dataclass
class LightTeacher:
    model: nn.Module
    config: LightTeacherConfig
    info: dict[str, Any]


# ----------------------------------------------------------------------------- training
def train_light_teacher(
    out: Path,
    config: LightTeacherConfig,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    data_dir: str | Path | None = None,
    compute: ComputeConfig | None = None,
) -> LightTeacher:
    """Train (or finish, or reuse) the light teacher in ``out``; returns it with its record.

    The caller's RNG states are restored afterwards, so building the teacher does not shift the
    random streams of whatever runs next."""
    run_dir = RunDir(out)
    if not (run_dir.is_complete() and run_dir.best_checkpoint.exists()):
        device = device or torch.device("cpu")
        rng = capture_rng_state(device)
        try:
            compute = compute or ComputeConfig(precision="fp32")
            job = LightTeacherJob(config, device, progress, data_dir, compute)
            run_job(job, out, resume=True)  # an interrupted training continues exactly
        finally:
            restore_rng_state(rng, device)
    teacher = load_light_teacher(out)
    _check_same(out, teacher.config, config)
    return teacher


@dataclass
class LightTeacherJob:
    """The LeNet-5 trained on freshly synthesized digits (the
    :class:`~reffakd.training.job.RunJob` parts). Synthesis is a cost phase of its own."""

    config: LightTeacherConfig
    device: torch.device
    progress: bool
    data_dir: str | Path | None
    compute: ComputeConfig
    kind: str = KIND
    splits: DataSplits = field(init=False)
    synthesis: dict[str, Any] = field(init=False, default_factory=dict)
    model: nn.Module = field(init=False)

    def prepare(self, run_dir: RunDir) -> None:
        if run_dir.config.exists():  # an interrupted training: continue it exactly
            recorded = read_config(run_dir.path)
            _check_same(run_dir.path, recorded, self.config)
            self.config = recorded
        config = self.config
        with PhaseMeter("synthesis", self.device) as synthesis:
            kind, mnist = resolve_digits(config.digits_used or config.digits, self.data_dir)
            self.splits = synthesize(
                config.num_classes,
                config.shape,
                sizes=SplitSizes.default(config.num_classes, config.per_class),
                seed=config.seed,
                digits=kind,
                mnist=mnist,
            )
        self.synthesis = synthesis.result
        if not run_dir.config.exists():
            config.digits_used = kind
            config.mean, config.std = channel_stats(self.splits.train.images)

    def record(self, run_dir: RunDir) -> None:
        if not run_dir.config.exists():
            write_record(run_dir, self.config, None, None)

    def fit_spec(self, run_dir: RunDir) -> FitSpec:
        config = self.config
        seed_everything(config.seed)
        self.model = build_model(
            config.model, config.num_classes, config.in_channels, config.image_size
        )
        return FitSpec(
            Distiller(self.model, None, CrossEntropy()),
            self.splits,
            config.transform(),
            config.optim(),
            seed=config.seed,
            device=self.device,
            desc="light teacher",
            phase="teacher_training",
            curves=["train_top1", "val_top1", "test_top1"],
            compute=dataclasses.replace(self.compute, compile=False, sync_bn=False),
            progress=self.progress,
        )

    def finish(self, run_dir: RunDir, fitted: Fitted) -> RunSummary:
        config = self.config
        phases = [
            phase_cost("synthesis", {}, config.shape, 0, self.synthesis),
            phase_cost(
                "teacher_training",
                {"light_teacher": self.model},
                config.shape,
                config.epochs * len(self.splits.train),
                fitted.meter,
                trained=["light_teacher"],
            ),
        ]
        return dataclasses.replace(
            fitted.training,
            data_source=self.splits.source,
            split_sizes=self.splits.sizes(),
            cost={"phases": phases},
        )


# ----------------------------------------------------------------------------- loading
def read_config(path: Path) -> LightTeacherConfig:
    """The ``config.yaml`` of a light-teacher run directory."""
    file = Path(path) / "config.yaml"
    try:
        values = yaml.safe_load(file.read_text()) or {}
        if values.get("kind") != KIND:
            raise ValueError("not a light teacher")
        return LightTeacherConfig(**values)
    except UserError:  # a light-teacher config with a bad value: its own message
        raise
    except (OSError, ValueError, TypeError, yaml.YAMLError):
        raise UserError(
            f"{path} is not an LW-KD light-teacher run (no valid config.yaml of kind {KIND}); "
            f"pass the run directory of an lwkd run or its {TEACHER_DIR}/ folder."
        ) from None


def locate_light_teacher(run: str | Path) -> Path:
    """The light-teacher folder for a light-teacher run or an lwkd student run holding one."""
    path = Path(run)
    if (path / TEACHER_DIR / "config.yaml").exists():
        return path / TEACHER_DIR
    if not path.is_dir():
        raise UserError(f"light-teacher run {run} not found; check the path.")
    return path


def load_light_teacher(run: str | Path, checkpoint: str = "best") -> LightTeacher:
    """The frozen teacher of a finished light-teacher run, with its accuracy record."""
    path = locate_light_teacher(run)
    config = read_config(path)
    if not RunDir(path).is_complete():
        raise UserError(
            f"light-teacher run {path} is unfinished; finish it with the lwkd run that "
            "started it (reffakd train --resume RUN)."
        )
    trained = open_trained_run(path, checkpoint, "light-teacher")
    model = build_model(config.model, config.num_classes, config.in_channels, config.image_size)
    load_weights(model, trained, f"a {config.model} light teacher", "retrain the light teacher.")
    model.eval().requires_grad_(False)
    summary = trained.summary or RunSummary()
    return LightTeacher(model, config, _info(path, config, summary, checkpoint, model))


def _info(
    path: Path,
    config: LightTeacherConfig,
    summary: RunSummary,
    checkpoint: str,
    model: nn.Module,
) -> dict[str, Any]:
    record = summary.best if checkpoint == "best" else summary.last
    return {
        "kind": "lwkd light teacher",
        "run": str(path),
        "checkpoint": checkpoint,
        "student": config.model,
        "dataset": f"synthesized digits ({config.digits_used})",
        "num_classes": config.num_classes,
        "input_shape": list(config.shape),
        "epoch": summary.best_epoch if checkpoint == "best" else summary.epochs,
        "epochs": summary.epochs,
        "val_top1": record.get("val_top1"),
        "test_top1": record.get("test_top1"),
        "train_seconds": summary.train_seconds_total,
        "seconds": summary.seconds_total,
        "synthesis_seconds": summary.phase_seconds("synthesis"),
        "split_sizes": summary.split_sizes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "finished": True,
    }


def _check_same(path: Path, recorded: LightTeacherConfig, wanted: LightTeacherConfig) -> None:
    """A cached light teacher must be for the same classes and input shape."""
    mine = (recorded.num_classes, recorded.shape)
    theirs = (wanted.num_classes, wanted.shape)
    if mine != theirs:
        raise UserError(
            f"{path} holds a light teacher for {mine[0]} classes at {mine[1]}, this run needs "
            f"{theirs[0]} classes at {theirs[1]}; use a new --out."
        )


def teacher_line(info: dict[str, Any]) -> str:
    """One line: the light teacher's accuracy on its own synthesized test split."""
    percent = format_percent
    return (
        f"light teacher {info['student']} on {info['dataset']}, {info['num_classes']} classes: "
        f"synthesized test {percent(info['test_top1'])} (val {percent(info['val_top1'])}, "
        f"{info['checkpoint']} epoch {info['epoch']}/{info['epochs']}, trained in "
        f"{info['train_seconds']}s) from {info['run']}"
    )


# ----------------------------------------------------------------------------- the pool
@torch.no_grad()
def pool_logits(
    teacher: LightTeacher,
    per_class: int,
    *,
    data_dir: str | Path | None = None,
    device: torch.device | None = None,
    batch_size: int = 1000,
) -> tuple[Tensor, str]:
    """(C, P, C) teacher logits on P freshly synthesized samples of every class, and the digit
    source used. Drawn from the test-side digits (MNIST test or the renderer's ``pool`` stream):
    samples the teacher never trained on."""
    config = teacher.config
    wanted = "auto" if config.digits_used == "mnist" else "procedural"
    kind, mnist = resolve_digits(wanted, data_dir)
    if kind != config.digits_used:
        print(f"note: MNIST not found, the LW-KD pool uses {kind} digits (the teacher saw MNIST)")
    banks = digit_banks(kind, mnist, config.seed)
    split = synthesize_split(
        config.num_classes,
        config.shape,
        per_class,
        banks["pool"],
        split_generator(config.seed, "pool"),
    )
    device = device or torch.device("cpu")
    model = teacher.model.to(device).eval()
    transform = config.transform()
    parts = []
    for start in range(0, len(split), batch_size):
        images = split.images[start : start + batch_size].to(device)
        parts.append(model(transform(images, train=False)).to(torch.float32))
    logits = torch.cat(parts).view(config.num_classes, per_class, config.num_classes)
    return logits, kind
