"""What the engine trains: the task contract, and the top-k metric every classifier reports.

A task is an ``nn.Module`` with

* ``forward_train(inputs, labels, indices, epoch) -> (outputs, {name: loss})`` — the losses are
  summed for the backward pass and logged by name (mdistiller's contract);
* ``eval_sums(inputs, labels) -> {metric: sum over the batch}`` — turned into means per split;
* ``learnable_parameters()`` — what the optimizer updates (a frozen teacher is not among them),
  and ``learnable_module()``, the network holding them (what DDP synchronises);
* ``networks()`` — the networks that run on every training batch (what ``--compile`` compiles);
* ``selection_metric`` / ``selection_mode`` — the validation metric that picks the best epoch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class ExtraSamples:
    """Training samples a task added to a batch (``extra_indices``), transformed with it."""

    inputs: Tensor
    labels: Tensor
    indices: Tensor


class Task(nn.Module):
    """Base: defaults for the engine's optional hooks."""

    selection_metric = "top1"
    selection_mode = "max"

    def learnable_parameters(self) -> Iterable[nn.Parameter]:
        return self.parameters()

    def learnable_module(self) -> nn.Module:
        return self

    def networks(self) -> dict[str, nn.Module]:
        """Networks to compile, by name (default: none)."""
        return {}

    def forward_train(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, epoch: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def eval_sums(self, inputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def after_step(self, outputs: Tensor, labels: Tensor, epoch: int) -> None:
        """Extra updates after the main optimizer step (e.g. an adversary's own step)."""

    def extra_indices(self, indices: Tensor, labels: Tensor) -> Tensor | None:
        """Training-set indices to add to this batch (CS-KD's partners); the engine gathers and
        transforms them with the batch and passes them to ``forward_train`` as ``extra``."""
        return None

    def end_epoch(self, epoch: int) -> None:
        """Called after the last training step of ``epoch``, before evaluation and the
        checkpoint (per-epoch state such as PS-KD's store rolls over here)."""

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
