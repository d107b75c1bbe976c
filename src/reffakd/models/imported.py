"""Models from the user's own code: ``package.module:factory``, an import path.

The factory (a function or an ``nn.Module`` class) is called with the keyword arguments it
accepts among ``num_classes`` and the data's model inputs (``in_channels`` and ``image_size``
for images; ``vocab_size``, ``max_len`` and ``pad_id`` for text), and must return an
``nn.Module``. The module is imported as Python would import it, with the current folder as a
last resort (a console script does not put it on ``sys.path``, ``python -m`` does).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from torch import nn

from reffakd.errors import UserError, UserTypeError, first_line

EXAMPLE = "package.module:factory"


def split_import_path(spec: str) -> tuple[str, str]:
    """``"pkg.mod:factory"`` -> ``("pkg.mod", "factory")``; UserError when a part is missing."""
    module, _, attribute = spec.partition(":")
    if not module or not attribute:
        raise UserError(f"model {spec!r} is not an import path of the form {EXAMPLE}.")
    return module, attribute


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The object an import path names; UserError when its module or attribute is missing."""
    module_name, attribute = split_import_path(spec)
    module = _import(module_name, spec)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UserError(
                f"model {spec!r}: module {module_name!r} has no attribute {attribute!r}; "
                f"check the name after the ':' ({EXAMPLE})."
            )
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"model {spec!r}: {attribute!r} is not callable; name a factory or class.")
    return target


def build_imported(spec: str, num_classes: int, **inputs: int) -> nn.Module:
    """Call the factory an import path names with the arguments it accepts among
    ``num_classes`` and the data's ``inputs`` (``in_channels`` and ``image_size`` for images;
    ``vocab_size``, ``max_len`` and ``pad_id`` for text)."""
    factory = resolve_factory(spec)
    offered = {"num_classes": num_classes, **inputs}
    model = factory(**_accepted(factory, offered))
    if not isinstance(model, nn.Module):
        raise UserTypeError(
            f"model {spec!r} returned a {type(model).__name__}, not a torch nn.Module."
        )
    return model


def _accepted(factory: Callable[..., Any], offered: dict[str, Any]) -> dict[str, Any]:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: offer everything
        return offered
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return offered
    names = {p.name for p in parameters if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return {k: v for k, v in offered.items() if k in names}


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing != module_name and not module_name.startswith(missing + "."):
            raise UserError(
                f"model {spec!r}: module {module_name!r} imports {missing!r}, which is not "
                "installed; install it."
            ) from None
        module = _import_from_cwd(module_name)
        if module is not None:
            return module
        raise UserError(
            f"model {spec!r}: cannot import module {module_name!r} ({first_line(exc)}); a name "
            f"with ':' is an import path {EXAMPLE} (installed, on PYTHONPATH or in the current "
            "folder) or an adapter timm:NAME / torchvision:NAME."
        ) from None


def _import_from_cwd(module_name: str) -> Any:
    """The module imported with the current folder appended to ``sys.path``, or None."""
    cwd = os.getcwd()
    if cwd in sys.path:
        return None
    sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError:
        sys.path.remove(cwd)
        return None
