"""The ``lwkd`` teacher-signal source: per-instance soft targets from the light teacher.

For a target sample of class y the signal is the light teacher's softened output on a randomly
drawn synthesized sample of class y:

    j ~ U{0, ..., P-1},   signal = log softmax(t(x̃_{y,j}) / T)

where x̃_{y,j} is the j-th sample of class y in a pool of P synthesized images per class. The pool
is drawn once (from digits the teacher never trained on), and the frozen teacher's logits on it
are computed once, so a batch costs one ``randint`` and one gather: no rendering and no teacher
forward pass in the training loop. The signal is returned as log-probabilities (what every
logit-based loss accepts); the ``lwkd`` presets use the KD loss with ``teacher_temperature`` 1
so that T is applied once, here.

The draw uses the global CPU generator (one ``torch.randint`` per batch), whose state the engine
checkpoints every epoch, so a resumed run draws exactly the same targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reffakd.errors import UserError
from reffakd.kd.source_base import (
    SOURCES,
    SignalRecord,
    SourceContext,
    TeacherSignal,
    TeacherSource,
)
from reffakd.lwkd.teacher import (
    TEACHER_DIR,
    LightTeacher,
    LightTeacherConfig,
    load_light_teacher,
    pool_logits,
    teacher_line,
    train_light_teacher,
)
from reffakd.training.summary import read_summary

POOL_ENTRIES = 2**24  # cap on P·C² stored log-probabilities (64 MiB of float32)
# The synthesized images' shape when the student's inputs are not images (text): the light
# teacher's target for a sample of class y depends only on y (docs/lwkd.md, "Other modalities").
SYNTH_SHAPE = (1, 32, 32)


class LWKDSource(TeacherSource):
    """Holds the light teacher's log-probabilities on the pool, (C, P, C).

    The teacher is trained (or loaded) in :meth:`setup`; it does not run per batch, so the cost
    accounting charges no teacher forward pass per training sample."""

    def __init__(
        self,
        context: SourceContext,
        config: LightTeacherConfig,
        temperature: float,
        pool_per_class: int,
        checkpoint: str = "best",
        given: LightTeacher | None = None,
    ) -> None:
        super().__init__()
        self.context = context
        self.config = config
        self.temperature = temperature
        self.pool_per_class = pool_per_class
        self.checkpoint = checkpoint
        self.teacher = given
        self.info: dict[str, Any] = {}
        self.register_buffer("pool", torch.zeros(0, 0, 0), persistent=False)

    @property
    def pool_size(self) -> int:
        """P: synthesized samples per class."""
        return int(self.pool.shape[1])

    def setup(self) -> None:
        """Train (or reuse) the light teacher, then its log-probabilities on a fresh pool."""
        context = self.context
        if self.teacher is None:
            self.teacher = _train_here(context, self.config, self.checkpoint)
        logits, pool_digits = pool_logits(
            self.teacher,
            self.pool_per_class,
            data_dir=context.data_config.data_dir,
            device=context.device,
        )
        self.set_pool(logits)
        self.info = {
            **self.teacher.info,
            "temperature": self.temperature,
            "pool_per_class": self.pool_per_class,
            "pool_digits": pool_digits,
        }
        print(teacher_line(self.info))

    def set_pool(self, logits: Tensor) -> None:
        """``logits`` (C, P, C): the teacher's outputs on P synthesized samples of each class."""
        scaled = (logits.to(torch.float32) / self.temperature).log_softmax(dim=-1)
        self.pool = scaled.to(self.pool.device)

    def record(self) -> SignalRecord:
        summary = read_summary(self.info["run"]) if self.info.get("run") else None
        phases = summary.cost.get("phases", []) if summary else []
        return SignalRecord(
            "light_teacher",
            self.info,
            [{**phase, "phase": f"light_teacher:{phase['phase']}"} for phase in phases],
        )

    def forward(self, inputs: Tensor, labels: Tensor, indices: Tensor) -> TeacherSignal:
        pick = torch.randint(self.pool_size, labels.shape)  # global CPU RNG (checkpointed)
        rows = self.pool[labels, pick.to(labels.device, non_blocking=True)]
        return TeacherSignal(rows, class_level=False)


def pool_per_class_for(num_classes: int, wanted: int) -> int:
    """P = min(wanted, max(1, 2^24 // C²)): the pool table stays below 64 MiB."""
    return max(1, min(wanted, POOL_ENTRIES // (num_classes * num_classes)))


@SOURCES.register("lwkd")
def lwkd_source(
    context: SourceContext,
    run: str | None = None,
    checkpoint: str = "best",
    temperature: float = 4.0,
    pool_per_class: int = 100,
    teacher_epochs: int = 5,
    per_class: int | None = None,
    digits: str = "auto",
    seed: int | None = None,
) -> LWKDSource:
    """LW-KD: a LeNet-5 light teacher on synthesized digits (``run``: an existing light-teacher
    run, else trained in ``RUN/light_teacher/`` and reused on resume) gives, for a sample of
    class y, its output softened by ``temperature`` on a random synthesized sample of class y.
    The digits are drawn at the student's image shape, or at 1x32x32 for non-image (text) data.

    ``pool_per_class``: P synthesized samples per class to draw from; ``teacher_epochs``,
    ``per_class`` (train images per class), ``digits`` (auto, mnist, procedural) and ``seed``
    define a light teacher trained here (``seed`` defaults to the run's seed)."""
    _check_options(temperature, pool_per_class, teacher_epochs, checkpoint, digits)
    channels, size, _ = context.data.image_shape or SYNTH_SHAPE
    config = LightTeacherConfig(
        num_classes=context.num_classes,
        in_channels=channels,
        image_size=size,
        epochs=teacher_epochs,
        per_class=per_class,
        digits=digits,
        seed=context.seed if seed is None else seed,
    )
    given = _given_teacher(context, run, checkpoint) if run else None
    size = pool_per_class_for(context.num_classes, pool_per_class)
    return LWKDSource(context, config, temperature, size, checkpoint, given)


def _check_options(
    temperature: float, pool_per_class: int, teacher_epochs: int, checkpoint: str, digits: str
) -> None:
    if temperature <= 0:
        raise UserError(f"lwkd temperature must be > 0, got {temperature}")
    if pool_per_class < 1:
        raise UserError(f"lwkd pool_per_class must be >= 1, got {pool_per_class}")
    if teacher_epochs < 1:
        raise UserError(f"lwkd teacher_epochs must be >= 1, got {teacher_epochs}")
    if checkpoint not in ("best", "last"):
        raise UserError(f"lwkd checkpoint must be best or last, got {checkpoint!r}")
    if digits not in ("auto", "mnist", "procedural"):
        raise UserError(f"lwkd digits must be auto, mnist or procedural, got {digits!r}")


def _given_teacher(context: SourceContext, run: str, checkpoint: str) -> LightTeacher:
    """An existing light teacher, checked against this run's classes."""
    teacher = load_light_teacher(run, checkpoint)
    if teacher.config.num_classes != context.num_classes:
        raise UserError(
            f"light teacher {run} has {teacher.config.num_classes} classes, this run has "
            f"{context.num_classes}; pass a light teacher of an lwkd run on {context.dataset}."
        )
    return teacher


def _train_here(
    context: SourceContext, config: LightTeacherConfig, checkpoint: str
) -> LightTeacher:
    """Train (or reuse) the light teacher in ``RUN/light_teacher``."""
    folder = Path(context.run_dir) / TEACHER_DIR
    teacher = train_light_teacher(
        folder,
        config,
        device=context.device,
        progress=context.progress,
        data_dir=context.data_config.data_dir,
        compute=context.compute,
    )
    return teacher if checkpoint == "best" else load_light_teacher(folder, checkpoint)
