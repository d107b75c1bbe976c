"""Teacher-signal sources: per batch, the teacher's logits for the batch's samples.

Class-level sources (``aesl``, ``smooth``, ``virtual``) hold a fixed distribution per class and
return its log-probabilities, so every logit-based loss accepts them (METHODS §3). Network
sources (``teacher``, ``self``) run a frozen network on the same augmented batch as the student.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reffakd.aesl import SoftLabels
from reffakd.errors import UserError
from reffakd.losses import probs_to_logits
from reffakd.registry import Registry


@dataclass
class TeacherSignal:
    """``logits``: (B, C). For class-level sources they are log-probabilities."""

    logits: Tensor
    class_level: bool


@dataclass
class SourceContext:
    """What a source may need to set itself up."""

    dataset: str
    num_classes: int
    class_names: list[str]
    in_channels: int
    image_size: int
    run_dir: Path
    device: torch.device
    make_soft_labels: Callable[[], SoftLabels] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TeacherSource(nn.Module):
    """Base class. ``class_level`` sources give one fixed distribution per class."""

    class_level = False

    def freeze(self) -> None:
        """Keep every network of the source in eval mode without gradients."""
        for module in self.modules():
            if module is not self:
                module.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def describe(self) -> dict[str, Any]:
        return {}


class ClassTableSource(TeacherSource):
    """A fixed (C, C) table of class distributions; row y is the target for label y."""

    class_level = True

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("log_table", probs_to_logits(table.to(torch.float32)))

    def forward(self, images: Tensor, labels: Tensor, indices: Tensor) -> TeacherSignal:
        return TeacherSignal(self.log_table[labels], class_level=True)


SOURCES: Registry[Callable[..., TeacherSource]] = Registry("teacher-signal source")


def build_source(name: str, options: dict[str, Any], context: SourceContext) -> TeacherSource:
    factory = SOURCES.get(name)
    try:
        return factory(context, **options)
    except TypeError as exc:
        raise UserError(f"bad options for source {name!r}: {exc}") from None


@SOURCES.register("aesl")
def aesl_source(context: SourceContext, soft_labels: str | None = None) -> ClassTableSource:
    """ReffAKD: rows of an AESL file (``soft_labels``), or labels made in this run's ``ae/``."""
    if soft_labels:
        labels = SoftLabels.load(soft_labels)
        labels.validate(context.num_classes, context.class_names, str(soft_labels))
    elif context.make_soft_labels is not None:
        labels = context.make_soft_labels()
    else:
        raise UserError("the aesl source needs --soft-labels FILE (from `reffakd soft-labels`).")
    context.extra["soft_labels"] = labels
    return ClassTableSource(labels.table)


@SOURCES.register("smooth")
def smooth_source(context: SourceContext, eps: float = 0.1) -> ClassTableSource:
    """Label smoothing: 1 - eps on the true class, eps / (C - 1) elsewhere."""
    if not 0.0 <= eps < 1.0:
        raise UserError(f"label smoothing eps must be in [0, 1), got {eps}")
    c = context.num_classes
    table = torch.full((c, c), eps / (c - 1))
    table.fill_diagonal_(1.0 - eps)
    return ClassTableSource(table)


@SOURCES.register("virtual")
def virtual_source(
    context: SourceContext, a: float = 0.99, temperature: float = 20.0
) -> ClassTableSource:
    """Tf-KD virtual teacher: p_d = a on the true class, (1 - a)/(C - 1) elsewhere, then
    softened as in the reference code: softmax(p_d / temperature)."""
    c = context.num_classes
    virtual = torch.full((c, c), (1.0 - a) / (c - 1))
    virtual.fill_diagonal_(a)
    return ClassTableSource(torch.softmax(virtual / temperature, dim=1))
