"""ShuffleNetV2 for CIFAR as used in the KD literature (RepDistiller ``ShuffleV2``).

A 1x1 stem with 24 channels and no max-pool, three stages of a stride-2 down block followed by
basic blocks, a 1x1 conv to 1024 channels, global average pooling and a linear classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from reffakd.models import register_model

CONFIGS: dict[float, dict[str, tuple[int, ...]]] = {
    0.5: {"out_channels": (48, 96, 192, 1024), "num_blocks": (3, 7, 3)},
    1: {"out_channels": (116, 232, 464, 1024), "num_blocks": (3, 7, 3)},
    1.5: {"out_channels": (176, 352, 704, 1024), "num_blocks": (3, 7, 3)},
    2: {"out_channels": (224, 488, 976, 2048), "num_blocks": (3, 7, 3)},
}


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """``[N, C, H, W] -> [N, g, C/g, H, W] -> [N, C/g, g, H, W] -> [N, C, H, W]``."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _conv_bn(inp: int, oup: int, kernel: int = 1, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(oup),
    )


class ShuffleBasicBlock(nn.Module):
    """Split channels in half, transform one half (1x1, depthwise 3x3, 1x1), concat, shuffle."""

    def __init__(self, in_channels: int, split_ratio: float = 0.5) -> None:
        super().__init__()
        self.split = int(in_channels * split_ratio)
        branch = in_channels - self.split
        self.branch = nn.Sequential(
            _conv_bn(branch, branch),
            nn.ReLU(inplace=True),
            _conv_bn(branch, branch, 3, 1, groups=branch),
            _conv_bn(branch, branch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, : self.split], x[:, self.split :]
        return channel_shuffle(torch.cat([x1, self.branch(x2)], 1))


class ShuffleDownBlock(nn.Module):
    """Two stride-2 branches on the full input, each giving half the output channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.left = nn.Sequential(
            _conv_bn(in_channels, in_channels, 3, 2, groups=in_channels),
            _conv_bn(in_channels, mid),
            nn.ReLU(inplace=True),
        )
        self.right = nn.Sequential(
            _conv_bn(in_channels, mid),
            nn.ReLU(inplace=True),
            _conv_bn(mid, mid, 3, 2, groups=mid),
            _conv_bn(mid, mid),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1))


class ShuffleNetV2(nn.Module):
    """CIFAR ShuffleNetV2 of the given ``net_size`` (a key of :data:`CONFIGS`)."""

    # its stages, in order: USKD hooks the last-but-one (docs/methods.md §7.3)
    feature_stages = ("layer1", "layer2", "layer3")

    def __init__(self, net_size: float = 1, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        out_channels = CONFIGS[net_size]["out_channels"]
        num_blocks = CONFIGS[net_size]["num_blocks"]
        self.conv1 = _conv_bn(in_channels, 24)
        self.in_channels = 24
        self.layer1 = self._make_layer(out_channels[0], num_blocks[0])
        self.layer2 = self._make_layer(out_channels[1], num_blocks[1])
        self.layer3 = self._make_layer(out_channels[2], num_blocks[2])
        self.conv2 = _conv_bn(out_channels[2], out_channels[3])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(out_channels[3], num_classes)

    def _make_layer(self, out_channels: int, num_blocks: int) -> nn.Sequential:
        layers: list[nn.Module] = [ShuffleDownBlock(self.in_channels, out_channels)]
        layers += [ShuffleBasicBlock(out_channels) for _ in range(num_blocks)]
        self.in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.conv2(out))
        return self.linear(self.avgpool(out).flatten(1))


@register_model("shufflenetv2")
def shufflenetv2(num_classes: int, in_channels: int = 3, image_size: int = 32) -> ShuffleNetV2:
    """RepDistiller's ``ShuffleV2`` (net size 1)."""
    return ShuffleNetV2(1, num_classes, in_channels)
