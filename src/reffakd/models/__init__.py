"""Model registry: ``name -> factory(num_classes, **input_shape) -> nn.Module``.

Image factories take ``in_channels`` and ``image_size``; text factories take ``vocab_size``,
``max_len`` and ``pad_id`` and their models read one tensor of padded int64 token ids ``(B, L)``.

>>> from reffakd.models import build_model
>>> net = build_model("lenet5", num_classes=10, in_channels=1, image_size=32)
>>> txt = build_model("textcnn", num_classes=2, vocab_size=1000, max_len=64)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from reffakd.errors import UserError
from reffakd.models.adapters import build_adapter
from reffakd.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")

# What an image factory gets when the caller leaves its input shape out.
IMAGE_DEFAULTS = {"in_channels": 3, "image_size": 32}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register ``factory(num_classes, **input_shape) -> nn.Module`` under ``name``.

    Image factories: ``(num_classes, in_channels, image_size)``. Text factories:
    ``(num_classes, vocab_size, max_len=128, pad_id=0, **options)``.
    """
    return MODELS.register(name)


def _factory_arguments(name: str, factory: ModelFactory, shape: dict[str, int]) -> dict[str, int]:
    """``shape`` plus the image defaults the factory takes; UserError for a mismatch."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return shape
    arguments = {**{k: v for k, v in IMAGE_DEFAULTS.items() if k in params}, **shape}
    takes = ", ".join(n for n in params if n != "num_classes")
    unknown = [k for k in arguments if k not in params]
    missing = [
        n for n, p in params.items()
        if n != "num_classes" and p.default is inspect.Parameter.empty and n not in arguments
    ]  # fmt: skip
    if unknown or missing:
        kind = "text" if "vocab_size" in params else "image"
        problem = f"not {', '.join(unknown)}" if unknown else f"{', '.join(missing)} is missing"
        raise UserError(
            f"model {name!r} is {'a' if kind == 'text' else 'an'} {kind} model taking {takes} "
            f"({problem}); use {kind} data or another model"
        )
    return arguments


def build_model(
    name: str,
    num_classes: int,
    in_channels: int | None = None,
    image_size: int | None = None,
    **input_shape: int,
) -> nn.Module:
    """Build a registered model, or an adapter model ``timm:NAME`` / ``torchvision:NAME``.

    ``in_channels``/``image_size`` (positional or keyword, default 3 and 32) go to image
    models; any other keyword (``vocab_size``, ``max_len``, ``pad_id``, model options) goes to
    the factory as is. An argument the factory does not take raises :class:`UserError`.
    """
    shape = {"in_channels": in_channels, "image_size": image_size, **input_shape}
    shape = {k: v for k, v in shape.items() if v is not None}
    if ":" in name:
        extra = sorted(set(shape) - set(IMAGE_DEFAULTS))
        if extra:
            raise UserError(f"adapter model {name!r} is an image model; it does not take {extra}")
        image = {**IMAGE_DEFAULTS, **shape}
        return build_adapter(name, num_classes, image["in_channels"], image["image_size"])
    factory = MODELS.get(name)
    return factory(num_classes=num_classes, **_factory_arguments(name, factory, shape))


def list_models() -> list[str]:
    return MODELS.names()


def is_text_model(name: str) -> bool:
    """Whether a registered model reads token ids (its factory takes ``vocab_size``)."""
    if ":" in name:
        return False
    return "vocab_size" in inspect.signature(MODELS.get(name)).parameters


# Importing the modules registers their models.
from reffakd.models import (  # noqa: E402,F401
    cae,
    cifar_resnet,
    lenet,
    mobilenetv2,
    resnet,
    rnn_ae,
    shufflenetv2,
    text,
    vgg,
    wrn,
)
