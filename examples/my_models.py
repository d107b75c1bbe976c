"""Your own model for the command line: ``reffakd train --student my_models:small_cnn``.

The factory receives the keyword arguments it names among ``num_classes``, ``in_channels``
and ``image_size`` (the dataset's), and returns an ``nn.Module`` that maps
``(B, in_channels, image_size, image_size)`` images to ``(B, num_classes)`` logits.
"""

from torch import nn


def small_cnn(num_classes: int, in_channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32 * 16, num_classes),
    )
