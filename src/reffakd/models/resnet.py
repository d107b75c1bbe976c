"""CIFAR-style ResNet-18 and ResNet-50 (the kuangliu/pytorch-cifar layout used by ReffAKD).

A 3x3 stride-1 stem with 64 channels and no max-pool, four stages of widths 64/128/256/512,
average pooling and a linear classifier.

Two heads (``pool``):

* ``"global"`` (``resnet18``, ``resnet50``): global average pooling, ``Linear(512·e, C)``.
* ``"avg4"`` (``resnet18_tin``, ``resnet50_tin``): the ReffAKD notebooks' head,
  ``avg_pool2d(out, 4)`` then flatten. At 64×64 (Tiny ImageNet) the final map is 8×8, so 2×2
  cells remain and the classifier is ``Linear(4·512·e, C)``: 11,578,632 and 25,138,952
  parameters at 200 classes, against 11,271,432 and 23,910,152 with global pooling. At 32×32
  the notebooks' head equals global pooling, so only the 64×64 variants are registered.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from reffakd.errors import UserError
from reffakd.models import register_model

Pool = Literal["global", "avg4"]
NOTEBOOK_IMAGE_SIZE = 64  # the avg4 variants' input size: 8x8 final map -> 2x2 cells


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _final_side(image_size: int) -> int:
    """Side of the last stage's map: three stride-2 3x3 convolutions (padding 1) halve it,
    rounding up."""
    side = image_size
    for _ in range(3):
        side = (side + 1) // 2
    return side


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem, four stages (strides 1, 2, 2, 2), average pool, linear.

    ``pool="global"`` averages the whole final map; ``pool="avg4"`` averages 4x4 windows
    (``F.avg_pool2d(out, 4)``) and flattens the cells left, so the classifier fits
    ``image_size`` inputs only.
    """

    # its stages, in order: USKD hooks the last-but-one (docs/methods.md §7.3)
    feature_stages = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, int, int, int],
        num_classes: int = 10,
        in_channels: int = 3,
        pool: Pool = "global",
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if pool not in ("global", "avg4"):
            raise ValueError(f"pool must be 'global' or 'avg4', got {pool!r}")
        cells = 1 if pool == "global" else (_final_side(image_size) // 4) ** 2
        if cells == 0:
            raise ValueError(f"the avg4 head needs inputs of at least 25x25, got {image_size}")
        self.pool, self.image_size = pool, image_size
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1) if pool == "global" else nn.AvgPool2d(4)
        self.fc = nn.Linear(512 * block.expansion * cells, num_classes)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        if self.pool == "avg4" and tuple(x.shape[-2:]) != (size, size):
            raise ValueError(
                f"this ResNet's notebook head (pool='avg4') was built for {size}x{size} inputs, "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.avgpool(out).flatten(1))


def _check_notebook_size(name: str, image_size: int) -> None:
    if image_size != NOTEBOOK_IMAGE_SIZE:
        raise UserError(
            f"{name} has the ReffAKD notebooks' Tiny ImageNet head (4x4 average pool leaving "
            f"2x2 cells) and needs 64x64 inputs, got {image_size}x{image_size}; use "
            f"{name.removesuffix('_tin')} for other sizes."
        )


@register_model("resnet18")
def resnet18(num_classes: int, in_channels: int = 3, image_size: int = 32) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels)


@register_model("resnet50")
def resnet50(num_classes: int, in_channels: int = 3, image_size: int = 32) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels)


@register_model("resnet18_tin")
def resnet18_tin(num_classes: int, in_channels: int = 3, image_size: int = 64) -> ResNet:
    """ResNet-18 with the notebooks' 64x64 head (``Linear(2048, C)``)."""
    _check_notebook_size("resnet18_tin", image_size)
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, "avg4", image_size)


@register_model("resnet50_tin")
def resnet50_tin(num_classes: int, in_channels: int = 3, image_size: int = 64) -> ResNet:
    """ResNet-50 with the notebooks' 64x64 head (``Linear(8192, C)``)."""
    _check_notebook_size("resnet50_tin", image_size)
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, "avg4", image_size)
