"""What the engine trains: a classifier distilled from a teacher signal, or an autoencoder.

The contract (mdistiller-style) is ``forward_train(...) -> (outputs, {name: loss})``; the engine
sums the named losses, logs each, and never needs to know which method produced them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reffakd.objectives import Objective
from reffakd.sources import TeacherSource


class Task(nn.Module):
    """Base: defaults for the engine's optional hooks."""

    selection_metric = "top1"
    selection_mode = "max"

    def learnable_parameters(self) -> Iterable[nn.Parameter]:
        return self.parameters()

    def after_step(self, outputs: Tensor, labels: Tensor, epoch: int) -> None:
        """Extra updates after the main optimizer step (e.g. an adversary's own step)."""

    def train_sums(self, outputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return {}

    def extra_state(self) -> dict:
        """State outside ``state_dict`` that resume needs (e.g. an adversary and its optimizer)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Inverse of :meth:`extra_state`."""


def topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, Tensor]:
    """Number of samples whose label is in the top-k logits, as percentages × batch size."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == labels.unsqueeze(1)
    return {f"top{k}": hits[:, :k].any(dim=1).sum().to(torch.float64) * 100.0 for k in ks}


class Distiller(Task):
    """A student trained with ``objective`` on the signal of ``source`` (None: labels only).

    The source's networks (a teacher) are frozen: no gradients, and eval mode even while the
    student is in train mode. An objective that is an ``nn.Module`` (e.g. one holding a
    discriminator) becomes a submodule, so it moves with ``.to(device)``; it keeps its own
    optimizer, updates in ``after_step`` and checkpoints through ``extra_state``.
    """

    def __init__(self, student: nn.Module, source: TeacherSource | None, objective: Objective):
        super().__init__()
        self.student = student
        self.source = source
        self.objective = objective

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

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.source is not None:
            self.source.freeze()
        return self

    def forward(self, images: Tensor) -> Tensor:
        return self.student(images)

    def forward_train(
        self, images: Tensor, labels: Tensor, indices: Tensor, epoch: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.student(images)
        signal = self.source(images, labels, indices) if self.source is not None else None
        return logits, self.objective(logits, labels, signal, epoch)

    def train_sums(self, outputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return {"top1": topk_correct(outputs, labels, (1,))["top1"]}

    def eval_sums(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        logits = self.student(images)
        sums = topk_correct(logits, labels)
        sums["loss"] = F.cross_entropy(logits, labels, reduction="sum").to(torch.float64)
        return sums

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        """Only the student: the source is rebuilt from its own files on load."""
        return self.student.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.student.load_state_dict(state_dict, strict=strict, assign=assign)


class Reconstruction(Task):
    """Autoencoder training on reconstruction MSE of the [0, 1] image (docs/methods.md §2.2)."""

    selection_metric = "mse"
    selection_mode = "min"

    def __init__(self, autoencoder: nn.Module) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward_train(
        self, images: Tensor, labels: Tensor, indices: Tensor, epoch: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        recon = self.autoencoder(images)
        return recon, {"mse": F.mse_loss(recon, images)}

    def eval_sums(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        recon = self.autoencoder(images)
        per_sample = F.mse_loss(recon, images, reduction="none").flatten(1).mean(dim=1)
        return {"mse": per_sample.sum().to(torch.float64)}

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return self.autoencoder.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.autoencoder.load_state_dict(state_dict, strict=strict, assign=assign)
