"""The CIFAR ResNets of the KD literature (RepDistiller / mdistiller ``resnet.py``).

Depth ``6n + 2`` with ``n`` BasicBlocks in each of three stages. The plain models use widths
``[16, 16, 32, 64]`` (stem, stage 1, 2, 3); the ``x4`` models use ``[32, 64, 128, 256]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from reffakd.models import register_model
from reffakd.models._init import init_kd_weights

NARROW = (16, 16, 32, 64)
WIDE = (32, 64, 128, 256)


class CifarBasicBlock(nn.Module):
    """Two 3x3 convolutions; a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x))


class CifarResNet(nn.Module):
    """RepDistiller's CIFAR ResNet of depth ``6n + 2`` with the given four widths."""

    # its stages, in order: USKD hooks the last-but-one (docs/methods.md §7.3)
    feature_stages = ("layer1", "layer2", "layer3")

    def __init__(
        self,
        depth: int,
        widths: Sequence[int] = NARROW,
        num_classes: int = 100,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        self.in_planes = widths[0]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = self._make_layer(widths[1], n, 1)
        self.layer2 = self._make_layer(widths[2], n, 2)
        self.layer3 = self._make_layer(widths[3], n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        init_kd_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(CifarBasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(self.avgpool(out).flatten(1))


def _register(name: str, depth: int, widths: Sequence[int]) -> None:
    def factory(num_classes: int, in_channels: int = 3, image_size: int = 32) -> CifarResNet:
        return CifarResNet(depth, widths, num_classes, in_channels)

    factory.__name__ = name
    factory.__doc__ = f"CIFAR ResNet-{depth} with widths {list(widths)}."
    register_model(name)(factory)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, NARROW)
_register("resnet8x4", 8, WIDE)
_register("resnet32x4", 32, WIDE)
