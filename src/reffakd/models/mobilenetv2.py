"""MobileNetV2 for CIFAR as used in the KD literature (RepDistiller ``mobile_half``).

Width multiplier 0.5, expansion ``T = 6``, a stride-2 3x3 stem, and a 1280-channel head.
"""

from __future__ import annotations

import torch
from torch import nn

from reffakd.models import register_model
from reffakd.models._init import init_kd_weights

# expansion t (None = the model's T), output channels c, repeats n, first stride s
SETTINGS: tuple[tuple[int | None, int, int, int], ...] = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)


def _conv_bn_relu(inp: int, oup: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Pointwise expand, depthwise 3x3, linear pointwise project; residual when shapes match."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            _conv_bn_relu(inp, hidden, 1, 1),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2 with expansion ``T`` and width multiplier ``width_mult``."""

    # its stages, in order: USKD hooks the last-but-one (docs/methods.md §7.3)
    feature_stages = tuple(f"blocks.{i}" for i in range(len(SETTINGS)))

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        expansion: int = 6,
        width_mult: float = 0.5,
    ) -> None:
        super().__init__()
        channels = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(in_channels, channels, 3, 2)
        stages = []
        for t, c, n, s in SETTINGS:
            out_channels = int(c * width_mult)
            layers = []
            for stride in [s] + [1] * (n - 1):
                layers.append(InvertedResidual(channels, out_channels, stride, t or expansion))
                channels = out_channels
            stages.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*stages)
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(channels, self.last_channel, 1, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.last_channel, num_classes)
        init_kd_weights(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.blocks(self.conv1(x)))
        return self.classifier(self.avgpool(x).flatten(1))


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int, in_channels: int = 3, image_size: int = 32) -> MobileNetV2:
    """RepDistiller's ``mobile_half``: T = 6, width multiplier 0.5."""
    return MobileNetV2(num_classes, in_channels, expansion=6, width_mult=0.5)
