"""The distiller: a student trained with a loss on a teacher signal (mdistiller's contract).

``forward_train(...) -> (logits, {name: loss})``; the engine sums the named losses, logs each,
and never needs to know which method produced them. The losses come from a
:class:`~reffakd.kd.modules.DistillationLoss`, the criterion a user's own loop uses too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reffakd.kd.modules import DistillationLoss
from reffakd.kd.objectives import Objective
from reffakd.kd.signal import TeacherSource
from reffakd.training.task import Task, topk_correct


class Distiller(Task):
    """A student trained with ``objective`` on the signal of ``source`` (None: labels only).

    The source's networks (a teacher) are frozen: no gradients, and eval mode even while the
    student is in train mode (:class:`~reffakd.kd.signal.TeacherSource`). An objective that is
    an ``nn.Module`` (e.g. one holding a discriminator) becomes a submodule, so it moves with
    ``.to(device)``; it keeps its own optimizer, updates in ``after_step`` and checkpoints
    through ``extra_state``.
    """

    def __init__(self, student: nn.Module, source: TeacherSource | None, objective: Objective):
        super().__init__()
        self.student = student
        self.criterion = DistillationLoss(source, objective)

    @property
    def source(self) -> TeacherSource | None:
        return self.criterion.source

    @property
    def objective(self) -> Objective:
        return self.criterion.objective

    def learnable_parameters(self) -> Iterable[nn.Parameter]:
        return self.student.parameters()

    def after_step(self, outputs: Tensor, labels: Tensor, epoch: int) -> None:
        hook = getattr(self.objective, "after_step", None)
        if hook is not None:
            hook(outputs, labels, epoch)

    def extra_state(self) -> dict:
        getter = getattr(self.objective, "extra_state", None)
        return {"objective": getter()} if getter is not None else {}

    def load_extra_state(self, state: dict) -> None:
        setter = getattr(self.objective, "load_extra_state", None)
        if setter is not None and "objective" in state:
            setter(state["objective"])

    def forward(self, inputs: Tensor) -> Tensor:
        return self.student(inputs)

    def forward_train(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, epoch: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.student(inputs)
        return logits, self.criterion.terms(logits, labels, inputs, indices, epoch)

    def train_sums(self, outputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return {"top1": topk_correct(outputs, labels, (1,))["top1"]}

    def eval_sums(self, inputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        logits = self.student(inputs)
        sums = topk_correct(logits, labels)
        sums["loss"] = F.cross_entropy(logits, labels, reduction="sum").to(torch.float64)
        return sums

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        """Only the student: the source is rebuilt from its own files on load."""
        return self.student.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.student.load_state_dict(state_dict, strict=strict, assign=assign)
