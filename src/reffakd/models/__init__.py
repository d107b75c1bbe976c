"""Model registry. Every factory takes ``num_classes``, ``in_channels`` and ``image_size``.

>>> from reffakd.models import build_model
>>> net = build_model("lenet5", num_classes=10, in_channels=1, image_size=32)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from reffakd.models.adapters import build_adapter
from reffakd.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register ``factory(num_classes, in_channels, image_size) -> nn.Module`` under ``name``."""
    return MODELS.register(name)


def build_model(
    name: str, num_classes: int, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    """Build a registered model, or an adapter model ``timm:NAME`` / ``torchvision:NAME``."""
    if ":" in name:
        return build_adapter(name, num_classes, in_channels, image_size)
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def list_models() -> list[str]:
    return MODELS.names()


# Importing the modules registers their models.
from reffakd.models import cae, cifar_resnet, lenet, mobilenetv2, resnet, shufflenetv2, vgg, wrn  # noqa: E402,F401
