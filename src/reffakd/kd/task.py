"""High level, the distiller: a student trained with a loss on a teacher signal (mdistiller's
contract).

``forward_train(...) -> (logits, {name: loss})``; the engine sums the named losses, logs each,
and never needs to know which method produced them. The losses come from a
:class:`~reffakd.kd.loss_criteria.DistillationLoss`, the criterion a user's own loop uses too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reffakd.kd.loss_criteria import DistillationLoss
from reffakd.kd.loss_objectives import Objective
from reffakd.kd.source_base import TeacherSource, attach_student
from reffakd.training.task import ExtraSamples, Task, topk_correct


class Distiller(Task):
    """A student trained with ``objective`` on the signal of ``source`` (None: labels only).

    The source's networks (a teacher) are frozen: no gradients, and eval mode even while the
    student is in train mode (:class:`~reffakd.kd.source_base.TeacherSource`). An objective that is
    an ``nn.Module`` (e.g. one holding a discriminator) becomes a submodule, so it moves with
    ``.to(device)``; it keeps its own optimizer, updates in ``after_step`` and checkpoints
    through ``extra_state``.
    """

    def __init__(self, student: nn.Module, source: TeacherSource | None, objective: Objective):
        super().__init__()
        self.student = student
        attach_student(source, student)
        self.criterion = DistillationLoss(source, objective)

    @property
    def source(self) -> TeacherSource | None:
        return self.criterion.source

    @property
    def objective(self) -> Objective:
        return self.criterion.objective

    def trained_with_student(self) -> dict[str, nn.Module]:
        """Modules of the source trained with the student (USKD's weak head), by name."""
        getter = getattr(self.source, "trained_modules", None)
        return getter() if getter is not None else {}

    def learnable_parameters(self) -> Iterable[nn.Parameter]:
        extra = (m.parameters() for m in self.trained_with_student().values())
        return itertools.chain(self.student.parameters(), *extra)

    def learnable_module(self) -> nn.Module:
        extra = self.trained_with_student()
        return nn.ModuleDict({"student": self.student, **extra}) if extra else self.student

    def networks(self) -> dict[str, nn.Module]:
        """The student and the frozen networks the source runs on every batch."""
        frozen = self.source.networks_per_batch() if self.source is not None else {}
        return {"student": self.student, **frozen}

    def after_step(self, outputs: Tensor, labels: Tensor, epoch: int) -> None:
        hook = getattr(self.objective, "after_step", None)
        if hook is not None:
            hook(outputs, labels, epoch)

    def extra_indices(self, indices: Tensor, labels: Tensor) -> Tensor | None:
        return self.source.extra_indices(indices, labels) if self.source is not None else None

    def end_epoch(self, epoch: int) -> None:
        if self.source is not None:
            self.source.end_epoch(epoch)

    def extra_state(self) -> dict:
        state = {}
        getter = getattr(self.objective, "extra_state", None)
        if getter is not None:
            state["objective"] = getter()
        if self.source is not None and (source_state := self.source.extra_state()):
            state["source"] = source_state
        return state

    def load_extra_state(self, state: dict) -> None:
        setter = getattr(self.objective, "load_extra_state", None)
        if setter is not None and "objective" in state:
            setter(state["objective"])
        if self.source is not None and "source" in state:
            self.source.load_extra_state(state["source"])

    def forward(self, inputs: Tensor) -> Tensor:
        return self.student(inputs)

    def forward_train(
        self,
        inputs: Tensor,
        labels: Tensor,
        indices: Tensor,
        epoch: int,
        extra: ExtraSamples | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Under autocast the networks run in reduced precision; the loss maths does not (the
        criterion casts both sides' logits to fp32 and runs the objective with autocast off).

        ``extra``: samples the source added to the batch. "joined" ones train with the batch
        (the outputs returned are the batch's own rows); "separate" ones run once more through
        the student, in train mode and without gradient, for the source to read."""
        if extra is not None and self.source is not None and self.source.extra_mode == "joined":
            return self._joined(inputs, labels, indices, epoch, extra)
        logits = self.student(inputs).float()
        extra_logits = None
        if extra is not None:
            with torch.no_grad():
                extra_logits = self.student(extra.inputs).float()
        terms = self.criterion.terms(logits, labels, inputs, indices, epoch, extra_logits)
        return logits, terms

    def _joined(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, epoch: int, extra: ExtraSamples
    ) -> tuple[Tensor, dict[str, Tensor]]:
        inputs = torch.cat([inputs, extra.inputs])
        all_labels = torch.cat([labels, extra.labels])
        all_indices = torch.cat([indices, extra.indices])
        logits = self.student(inputs).float()
        terms = self.criterion.terms(logits, all_labels, inputs, all_indices, epoch)
        return logits[: len(labels)], terms

    def train_sums(self, outputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return {"top1": topk_correct(outputs, labels, (1,))["top1"]}

    def eval_sums(self, inputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        logits = self.student(inputs).float()
        sums = topk_correct(logits, labels)
        sums["loss"] = F.cross_entropy(logits, labels, reduction="sum").to(torch.float64)
        return sums

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        """Only the student: the source is rebuilt from its own files on load."""
        return self.student.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.student.load_state_dict(state_dict, strict=strict, assign=assign)
