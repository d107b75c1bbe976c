"""Models from optional third-party packages: ``timm:NAME`` and ``torchvision:NAME``.

The packages are imported only when such a model is requested; a missing package raises
:class:`~reffakd.errors.UserError` with the install command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from torch import nn

from reffakd.errors import UserError, first_line

PREFIXES = ("timm", "torchvision")


def _import(package: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(package)
    except ImportError as err:
        if err.name is None or err.name.split(".")[0] == package:
            raise UserError(
                f"model {spec!r} needs the optional package {package}: pip install {package}"
            ) from None
        raise _broken_package(package, spec, err) from None
    except Exception as err:  # a broken install fails in its own code, with any exception
        raise _broken_package(package, spec, err) from None


def _broken_package(package: str, spec: str, err: Exception) -> UserError:
    return UserError(
        f"model {spec!r}: importing {package} failed ({type(err).__name__}: {first_line(err)}); "
        f"its install is broken, e.g. by a torchvision that does not match torch: reinstall it "
        f"with `pip install --force-reinstall {package}`."
    )


def _build_timm(spec: str, name: str, num_classes: int, in_channels: int) -> nn.Module:
    timm = _import("timm", spec)
    try:
        return timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_channels
        )
    except RuntimeError as err:  # timm raises RuntimeError for unknown model names
        raise UserError(f"model {spec!r}: {err}") from None


def _replace_first_conv(model: nn.Module, spec: str, in_channels: int) -> None:
    """Swap the first ``Conv2d`` (3 input channels, no groups) for one taking ``in_channels``."""
    path, conv = next(
        ((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d)), ("", None)
    )
    if conv is None or conv.in_channels != 3 or conv.groups != 1:
        raise UserError(
            f"model {spec!r}: cannot adapt its first convolution to {in_channels} input "
            "channels; use 3-channel images or a registered model"
        )
    parent_path, _, attr = path.rpartition(".")
    new_conv = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    setattr(model.get_submodule(parent_path), attr, new_conv)


def _build_torchvision(spec: str, name: str, num_classes: int, in_channels: int) -> nn.Module:
    torchvision = _import("torchvision", spec)
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except ValueError as err:  # unknown model name
        raise UserError(f"model {spec!r}: {err}") from None
    if in_channels != 3:
        _replace_first_conv(model, spec, in_channels)
    return model


def build_adapter(
    spec: str, num_classes: int, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    """Build ``timm:NAME`` or ``torchvision:NAME`` without pretrained weights."""
    prefix, _, name = spec.partition(":")
    if prefix not in PREFIXES:
        raise UserError(
            f"unknown model source {prefix!r} in {spec!r}; use one of: "
            + ", ".join(f"{p}:NAME" for p in PREFIXES)
        )
    if not name:
        raise UserError(f"model {spec!r} has no name after {prefix!r}:, e.g. {prefix}:resnet18")
    if prefix == "timm":
        return _build_timm(spec, name, num_classes, in_channels)
    return _build_torchvision(spec, name, num_classes, in_channels)
