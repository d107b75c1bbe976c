"""The CIFAR VGG of the KD literature (RepDistiller / mdistiller ``vgg.py``, with BatchNorm).

Five conv blocks separated by 2x2 max-pools (the fourth pool only for 64x64 inputs, as in
the reference), adaptive average pooling and a single ``Linear(512, num_classes)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from reffakd.models import register_model
from reffakd.models._init import init_kd_weights

CFGS: dict[str, list[list[int]]] = {
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "E": [[64, 64], [128, 128], [256, 256, 256, 256], [512] * 4, [512] * 4],
    "S": [[64], [128], [256], [512], [512]],
}


def _conv_block(widths: Sequence[int], in_channels: int) -> nn.Sequential:
    """Conv3x3-BN-ReLU for each width; the final ReLU is applied in ``forward``."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    """CIFAR VGG with BatchNorm built from a five-block config such as ``CFGS["S"]``."""

    # its stages, in order: USKD hooks the last-but-one (docs/methods.md §7.3)
    feature_stages = tuple(f"blocks.{i}" for i in range(5))

    def __init__(
        self, cfg: Sequence[Sequence[int]], num_classes: int = 100, in_channels: int = 3
    ) -> None:
        super().__init__()
        inputs = [in_channels] + [block[-1] for block in cfg[:-1]]
        self.blocks = nn.ModuleList(_conv_block(w, c) for w, c in zip(cfg, inputs, strict=True))
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cfg[-1][-1], num_classes)
        init_kd_weights(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pool after blocks 0-2 always, after block 3 only for 64x64 inputs (as the reference).
        pool_after = (True, True, True, x.shape[-2] >= 64, False)
        for block, pool in zip(self.blocks, pool_after, strict=True):
            x = F.relu(block(x))
            if pool:
                x = self.pool(x)
        return self.classifier(self.avgpool(x).flatten(1))


@register_model("vgg8")
def vgg8(num_classes: int, in_channels: int = 3, image_size: int = 32) -> VGG:
    """VGG-8 with BatchNorm (config ``S``)."""
    return VGG(CFGS["S"], num_classes, in_channels)


@register_model("vgg13")
def vgg13(num_classes: int, in_channels: int = 3, image_size: int = 32) -> VGG:
    """VGG-13 with BatchNorm (config ``B``)."""
    return VGG(CFGS["B"], num_classes, in_channels)
