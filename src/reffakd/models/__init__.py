"""Model registry. Every factory takes ``num_classes``, ``in_channels`` and ``image_size``.

>>> from reffakd.models import build_model
>>> net = build_model("lenet5", num_classes=10, in_channels=1, image_size=32)

A model name is one of: a registered name (``reffakd list models``; installed packages add
names through the ``reffakd.models`` entry-point group), an adapter ``timm:NAME`` or
``torchvision:NAME``, or an import path ``package.module:factory`` to the user's own code.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from reffakd.errors import UserError
from reffakd.models.adapters import PREFIXES as ADAPTER_PREFIXES
from reffakd.models.adapters import build_adapter
from reffakd.models.imported import build_imported, resolve_factory
from reffakd.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model", entry_points="reffakd.models")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register ``factory(num_classes, in_channels, image_size) -> nn.Module`` under ``name``."""
    return MODELS.register(name)


def build_model(
    name: str, num_classes: int, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    """Build a registered model, an adapter model (``timm:NAME`` / ``torchvision:NAME``) or the
    model an import path ``package.module:factory`` names."""
    if ":" in name:
        if name.partition(":")[0] in ADAPTER_PREFIXES:
            return build_adapter(name, num_classes, in_channels, image_size)
        return build_imported(name, num_classes, in_channels, image_size)
    _refuse_user_module(name)
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def check_model_name(name: str) -> None:
    """Fail fast on a model name that cannot be built: unknown, or an import path whose module
    or attribute is missing (adapters are checked when built, as they import big packages)."""
    if ":" in name:
        if name.partition(":")[0] not in ADAPTER_PREFIXES:
            resolve_factory(name)
        return
    _refuse_user_module(name)
    MODELS.get(name)


# How a run records a student that was passed as an nn.Module instance, not by name.
USER_MODULE = "<user module {}>"


def user_module_name(module: nn.Module) -> str:
    """The name a run records for a module passed as an instance, e.g. ``<user module Net>``."""
    return USER_MODULE.format(type(module).__name__)


def is_user_module_name(name: str) -> bool:
    prefix, _, suffix = USER_MODULE.partition("{}")
    return name.startswith(prefix) and name.endswith(suffix)


def _refuse_user_module(name: str) -> None:
    if is_user_module_name(name):
        raise UserError(
            f"model {name!r} was an nn.Module passed to train_student, so it cannot be rebuilt "
            "from its name: pass the module again (train_student(..., student=module)), or "
            "name a factory instead (package.module:factory)."
        )


def list_models() -> list[str]:
    return MODELS.names()


# Importing the modules registers their models.
from reffakd.models import (  # noqa: E402,F401
    cae,
    cifar_resnet,
    lenet,
    mlp,
    mobilenetv2,
    resnet,
    shufflenetv2,
    vgg,
    wrn,
)
