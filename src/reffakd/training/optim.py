"""Optimizers, parameter groups and learning-rate schedules, built from an ``OptimConfig``.

Two kinds of schedule:

* ``multistep`` without warm-up (the reference recipe): torch's ``MultiStepLR`` stepped once per
  epoch, exactly as before these options existed, so its runs stay bit-identical;
* everything else is a pure function of the optimizer step s = (e − 1)·S + k (epoch e counted
  from 1, step k within it, S steps per epoch), set on every parameter group before each step:

      lr(s) = lr · w(s) · g(s)
      w(s)  = min(1, (s + 1) / W),   W = round(warmup_epochs · S) (w = 1 when W = 0)
      g(s)  = gamma ** |{m ∈ milestones : m ≤ e − 1}|                     (multistep)
      g(s)  = ½ (1 + cos(π · clamp((s − W) / (E·S − W), 0, 1)))          (cosine, to 0)

  It holds no state, so a resumed run sets exactly the learning rates of an uninterrupted one.

The warm-up is per step (the learning rate rises within the first epochs, where large batches
need it); the multistep decay stays per epoch, as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from reffakd.config import OptimConfig

ParamGroups = list[nn.Parameter] | list[dict[str, Any]]


def parameter_groups(params: Iterable[nn.Parameter], config: OptimConfig) -> ParamGroups:
    """All parameters in one group, or with ``no_decay_norm_bias`` two: weight decay on weights
    with 2 or more dimensions (conv and linear weights), none on the rest (biases, BatchNorm
    and LayerNorm scales and shifts)."""
    params = list(params)
    if not config.no_decay_norm_bias:
        return params
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups: list[dict[str, Any]] = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _sgd(groups: ParamGroups, config: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        groups,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )


def _adamw(groups: ParamGroups, config: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        groups,
        lr=config.lr,
        betas=(config.betas[0], config.betas[1]),
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


OPTIMIZERS: dict[str, Callable[[ParamGroups, OptimConfig], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adamw": _adamw,
}


def build_optimizer(params: Iterable[nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[config.name](parameter_groups(params, config), config)


class Schedule:
    """The learning rate over training: ``at_step`` before each optimizer step, ``end_epoch``
    after each epoch; ``state_dict`` goes into the checkpoint."""

    def at_step(self, epoch: int, step: int) -> None:
        """Set the learning rate of step ``step`` (from 0) of epoch ``epoch`` (from 1)."""

    def end_epoch(self) -> None:
        """Called once after every epoch."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""


class EpochMultiStep(Schedule):
    """The reference recipe: ``MultiStepLR``, stepped once per epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: OptimConfig) -> None:
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(config.milestones), gamma=config.gamma
        )

    def end_epoch(self) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class StepSchedule(Schedule):
    """Warm-up, then multistep or cosine: lr(s) of the module docstring, set every step."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, config: OptimConfig, steps_per_epoch: int
    ) -> None:
        self.optimizer = optimizer
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = config.epochs * steps_per_epoch
        self.warmup_steps = round(config.warmup_epochs * steps_per_epoch)

    def factor(self, step: int) -> float:
        """lr(s) / lr for the global step ``step`` (from 0)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return warm * DECAYS[self.config.schedule](self, step)

    def _multistep(self, step: int) -> float:
        epochs_done = step // self.steps_per_epoch
        passed = sum(1 for m in self.config.milestones if m <= epochs_done)
        return self.config.gamma**passed

    def _cosine(self, step: int) -> float:
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def at_step(self, epoch: int, step: int) -> None:
        lr = self.config.lr * self.factor((epoch - 1) * self.steps_per_epoch + step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr


DECAYS: dict[str, Callable[[StepSchedule, int], float]] = {
    "multistep": StepSchedule._multistep,
    "cosine": StepSchedule._cosine,
}


def build_schedule(
    optimizer: torch.optim.Optimizer, config: OptimConfig, steps_per_epoch: int
) -> Schedule:
    if config.schedule == "multistep" and config.warmup_epochs == 0:
        return EpochMultiStep(optimizer, config)
    return StepSchedule(optimizer, config, steps_per_epoch)


def clip_gradients(params: Iterable[nn.Parameter], max_norm: float | None) -> None:
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    The norm stays on the device (no host sync)."""
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(list(params), max_norm)
