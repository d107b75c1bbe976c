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

import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reffakd.errors import UserError
from reffakd.lwkd.teacher import (
    TEACHER_DIR,
    LightTeacher,
    LightTeacherConfig,
    load_light_teacher,
    pool_logits,
    teacher_line,
    train_light_teacher,
)
from reffakd.sources import SOURCES, SourceContext, TeacherSignal, TeacherSource

POOL_ENTRIES = 2**24  # cap on P·C² stored log-probabilities (64 MiB of float32)


class LWKDSource(TeacherSource):
    """Holds the frozen light teacher and its log-probabilities on the pool, (C, P, C).

    The network is kept as ``light_teacher`` (not ``teacher``): it does not run per batch, so
    the cost accounting must not charge a teacher forward pass per training sample."""

    def __init__(self, teacher: nn.Module, logits: Tensor, temperature: float) -> None:
        super().__init__()
        self.light_teacher = teacher
        self.temperature = temperature
        self.info: dict[str, Any] = {}
        scaled = (logits.to(torch.float32) / temperature).log_softmax(dim=-1)
        self.register_buffer("pool", scaled, persistent=False)
        self.freeze()

    @property
    def pool_size(self) -> int:
        """P: synthesized samples per class."""
        return int(self.pool.shape[1])

    def train(self, mode: bool = True) -> LWKDSource:
        """Whatever the mode asked for, the teacher stays in eval mode."""
        super().train(mode)
        self.light_teacher.eval()
        return self

    def forward(self, images: Tensor, labels: Tensor, indices: Tensor) -> TeacherSignal:
        pick = torch.randint(self.pool_size, labels.shape)  # global CPU RNG (checkpointed)
        rows = self.pool[labels, pick.to(labels.device)]
        return TeacherSignal(rows, class_level=False)

    def describe(self) -> dict[str, Any]:
        return dict(self.info)


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
    run, else trained now in ``RUN/light_teacher/`` and reused on resume) gives, for a sample of
    class y, its output softened by ``temperature`` on a random synthesized sample of class y.

    ``pool_per_class``: P synthesized samples per class to draw from; ``teacher_epochs``,
    ``per_class`` (train images per class), ``digits`` (auto, mnist, procedural) and ``seed``
    define a light teacher trained here (``seed`` defaults to the run's seed when the pipeline
    passes it, else 0)."""
    _check_options(temperature, pool_per_class, teacher_epochs)
    teacher = _light_teacher(context, run, checkpoint, teacher_epochs, per_class, digits, seed)
    size = pool_per_class_for(context.num_classes, pool_per_class)
    logits, pool_digits = pool_logits(
        teacher, size, data_dir=context.extra.get("data_dir"), device=context.device
    )
    source = LWKDSource(teacher.model, logits, temperature)
    source.info = {
        **teacher.info,
        "temperature": temperature,
        "pool_per_class": size,
        "pool_digits": pool_digits,
    }
    # Only under "light_teacher": the pipeline reads the cost phases of both keys' runs.
    context.extra["light_teacher"] = source.info
    print(teacher_line(source.info))
    return source.to(context.device)


def _check_options(temperature: float, pool_per_class: int, teacher_epochs: int) -> None:
    if temperature <= 0:
        raise UserError(f"lwkd temperature must be > 0, got {temperature}")
    if pool_per_class < 1:
        raise UserError(f"lwkd pool_per_class must be >= 1, got {pool_per_class}")
    if teacher_epochs < 1:
        raise UserError(f"lwkd teacher_epochs must be >= 1, got {teacher_epochs}")


def _light_teacher(
    context: SourceContext,
    run: str | None,
    checkpoint: str,
    epochs: int,
    per_class: int | None,
    digits: str,
    seed: int | None,
) -> LightTeacher:
    """An existing light teacher (``run``) or one trained (or reused) in the run directory."""
    if run:
        teacher = load_light_teacher(run, checkpoint)
        if teacher.config.num_classes != context.num_classes:
            raise UserError(
                f"light teacher {run} has {teacher.config.num_classes} classes, this run has "
                f"{context.num_classes}; pass a light teacher of an lwkd run on {context.dataset}."
            )
        return teacher
    config = LightTeacherConfig(
        num_classes=context.num_classes,
        in_channels=context.in_channels,
        image_size=context.image_size,
        epochs=epochs,
        per_class=per_class,
        digits=digits,
        seed=int(context.extra.get("seed", 0)) if seed is None else seed,
    )
    teacher = train_light_teacher(
        Path(context.run_dir) / TEACHER_DIR,
        config,
        device=context.device,
        progress=bool(context.extra.get("progress", sys.stderr.isatty())),
        data_dir=context.extra.get("data_dir"),
    )
    if checkpoint != "best":
        teacher = load_light_teacher(Path(context.run_dir) / TEACHER_DIR, checkpoint)
    return teacher
