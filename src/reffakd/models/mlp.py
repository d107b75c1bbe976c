"""A multilayer perceptron on the flattened image: the smallest classifier here.

No convolutions and no BatchNorm: its output for a sample depends on that sample alone, so it
is the model for checks that compare batchings (a multi-process run against one process) and
for quick smoke runs.
"""

from __future__ import annotations

import torch
from torch import nn

from reffakd.models import register_model


class MLP(nn.Module):
    """Flatten, ``hidden`` ReLU units, then the class logits."""

    def __init__(
        self, num_classes: int, in_channels: int = 1, image_size: int = 32, hidden: int = 256
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model("mlp")
def mlp(num_classes: int, in_channels: int = 1, image_size: int = 32) -> MLP:
    return MLP(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
