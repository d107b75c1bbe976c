"""Weight initialisation shared by the CIFAR KD zoo (RepDistiller conventions)."""

from __future__ import annotations

from torch import nn


def init_kd_weights(model: nn.Module, linear_std: float | None = None) -> None:
    """He-normal (fan-out) convolutions with zero bias, unit BatchNorm, zero linear bias.

    With ``linear_std`` the linear weights are drawn from ``N(0, linear_std)``; otherwise they
    keep PyTorch's default initialisation.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
