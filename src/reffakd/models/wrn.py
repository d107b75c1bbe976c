"""Wide residual networks WRN-depth-k (RepDistiller / mdistiller ``wrn.py``, no dropout)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from reffakd.models import register_model
from reffakd.models._init import init_kd_weights


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, 1x1 conv shortcut on change."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.shortcut: nn.Module | None = None
        if not self.equal_in_out:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # As in the reference: the shortcut conv sees the activated input, identity the raw one.
        residual = x if self.shortcut is None else self.shortcut(act)
        return residual + out


class WideResNet(nn.Module):
    """WRN-depth-k for CIFAR: widths 16, 16k, 32k, 64k and ``(depth - 4) / 6`` blocks a stage."""

    # its stages, in order: USKD hooks the last-but-one (docs/methods.md §7.3)
    feature_stages = ("block1", "block2", "block3")

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int = 100,
        in_channels: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.block1 = self._stage(widths[0], widths[1], n, 1, drop_rate)
        self.block2 = self._stage(widths[1], widths[2], n, 2, drop_rate)
        self.block3 = self._stage(widths[2], widths[3], n, 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        init_kd_weights(self)

    @staticmethod
    def _stage(in_planes: int, out_planes: int, n: int, stride: int, drop: float) -> nn.Sequential:
        blocks = [WideBasicBlock(in_planes, out_planes, stride, drop)]
        blocks += [WideBasicBlock(out_planes, out_planes, 1, drop) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return self.fc(self.avgpool(out).flatten(1))


def _register(depth: int, widen_factor: int) -> None:
    name = f"wrn_{depth}_{widen_factor}"

    def factory(num_classes: int, in_channels: int = 3, image_size: int = 32) -> WideResNet:
        return WideResNet(depth, widen_factor, num_classes, in_channels)

    factory.__name__ = name
    factory.__doc__ = f"WRN-{depth}-{widen_factor} without dropout."
    register_model(name)(factory)


for _depth, _k in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _k)
