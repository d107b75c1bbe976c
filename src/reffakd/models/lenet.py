"""LeNet-5 with batch normalisation after each convolution."""

from __future__ import annotations

import torch
from torch import nn

from reffakd.models import register_model


def _conv_stage(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=5),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def _feature_size(image_size: int) -> int:
    """Spatial side after two (5x5 valid conv, 2x2 max-pool) stages."""
    side = image_size
    for _ in range(2):
        side = (side - 4) // 2
    if side < 1:
        raise ValueError(f"LeNet-5 needs images of at least 12x12, got {image_size}")
    return side


class LeNet5(nn.Module):
    """LeNet-5: conv 6@5x5, conv 16@5x5 (each BN + ReLU + max-pool), FC 400-120-84-classes.

    The first FC layer has ``16 * s * s`` inputs, where ``s`` is 5 at 32x32.
    """

    # its stages, in order: USKD hooks the last-but-one (docs/methods.md §7.3)
    feature_stages = ("features.0", "features.1")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32) -> None:
        super().__init__()
        side = _feature_size(image_size)
        self.features = nn.Sequential(_conv_stage(in_channels, 6), _conv_stage(6, 16))
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@register_model("lenet5")
def lenet5(num_classes: int, in_channels: int = 1, image_size: int = 32) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
