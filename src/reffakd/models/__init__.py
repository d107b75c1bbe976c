"""Model registry: ``name -> factory(num_classes, **input_shape) -> nn.Module``.

Image factories take ``in_channels`` and ``image_size``; text factories take ``vocab_size``,
``max_len`` and ``pad_id`` and their models read one tensor of padded int64 token ids ``(B, L)``.

>>> from reffakd.models import build_model
>>> net = build_model("lenet5", num_classes=10, in_channels=1, image_size=32)
>>> txt = build_model("textcnn", num_classes=2, vocab_size=1000, max_len=64)

A model name is one of: a registered name (``reffakd list models``; installed packages add
names through the ``reffakd.models`` entry-point group), an adapter ``timm:NAME`` or
``torchvision:NAME``, a model with its own tokenizer ``hf:DIR_OR_ID`` (:data:`TOKENIZED_MODELS`),
or an import path ``package.module:factory`` to the user's own code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from reffakd.errors import UserError
from reffakd.hub import canonical_reference
from reffakd.models import hf
from reffakd.models.adapters import PREFIXES as ADAPTER_PREFIXES
from reffakd.models.adapters import build_adapter
from reffakd.models.imported import build_imported, resolve_factory
from reffakd.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model", entry_points="reffakd.models")

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
    """Build a registered model, an adapter model (``timm:NAME`` / ``torchvision:NAME``) or the
    model an import path ``package.module:factory`` names.

    ``in_channels``/``image_size`` (positional or keyword, default 3 and 32) go to image
    models; any other keyword (``vocab_size``, ``max_len``, ``pad_id``, model options) goes to
    the factory as is. An argument a registered factory does not take raises
    :class:`UserError`.
    """
    shape = {"in_channels": in_channels, "image_size": image_size, **input_shape}
    shape = {k: v for k, v in shape.items() if v is not None}
    image_only = set(shape) <= set(IMAGE_DEFAULTS)
    prefix = name.partition(":")[0]
    if ":" in name and prefix in TOKENIZED_MODELS:
        if set(shape) & set(IMAGE_DEFAULTS):
            raise UserError(f"model {name!r} reads text (its tokenizer's ids); use text data")
        return TOKENIZED_MODELS[prefix].build(name, num_classes, **shape)
    if ":" in name:
        if name.partition(":")[0] in ADAPTER_PREFIXES:
            if not image_only:
                extra = sorted(set(shape) - set(IMAGE_DEFAULTS))
                raise UserError(
                    f"adapter model {name!r} is an image model; it does not take {extra}"
                )
            image = {**IMAGE_DEFAULTS, **shape}
            return build_adapter(name, num_classes, image["in_channels"], image["image_size"])
        offered = {**IMAGE_DEFAULTS, **shape} if image_only else shape
        return build_imported(name, num_classes, **offered)
    _refuse_user_module(name)
    factory = MODELS.get(name)
    return factory(num_classes=num_classes, **_factory_arguments(name, factory, shape))


def check_model_name(name: str) -> None:
    """Fail fast on a model name that cannot be built: unknown, or an import path whose module
    or attribute is missing (adapters are checked when built, as they import big packages)."""
    prefix = name.partition(":")[0]
    if ":" in name and prefix in TOKENIZED_MODELS:
        TOKENIZED_MODELS[prefix].check(name)
        return
    if ":" in name:
        if prefix not in ADAPTER_PREFIXES:
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


@dataclass(frozen=True)
class TokenizedModels:
    """Models named ``PREFIX:WHERE`` that bring their own tokenizer: ``build`` (the factory),
    ``check`` (fail fast on the name), ``tokenizer`` (the reference of the tokenizer whose ids
    the model reads, for :func:`reffakd.data.prepare.prepare_data`), ``canonical`` (the name as
    a run records it) and ``embedder`` (the encoder alone: ids -> embeddings)."""

    build: Callable[..., nn.Module]
    check: Callable[[str], None]
    tokenizer: Callable[[str], str]
    canonical: Callable[[str], str]
    embedder: Callable[[str], nn.Module]
    listed: str  # how `reffakd list models` shows the form


TOKENIZED_MODELS: dict[str, TokenizedModels] = {
    "hf": TokenizedModels(
        hf.build_hf_classifier,
        hf.check_hf_name,
        hf.tokenizer_of,
        canonical_reference,
        hf.load_encoder,
        "a Hugging Face encoder (folder or hub id) and a linear head, on its own tokenizer's "
        "ids (needs transformers)",
    )
}


def _tokenized(name: str) -> TokenizedModels | None:
    return TOKENIZED_MODELS.get(name.partition(":")[0]) if ":" in name else None


def input_tokenizer(name: str) -> str | None:
    """The tokenizer whose ids model ``name`` reads, or None when it reads the data's own
    encoding (images, the run's word-level vocabulary)."""
    kind = _tokenized(name)
    return kind.tokenizer(name) if kind is not None else None


def canonical_model_name(name: str) -> str:
    """The name a run records (``hf:`` folders made absolute); other names unchanged."""
    kind = _tokenized(name)
    return kind.canonical(name) if kind is not None else name


def build_embedder(name: str) -> nn.Module:
    """The encoder of a model with its own tokenizer: ids ``(B, L)`` -> embeddings ``(B, d)``."""
    kind = _tokenized(name)
    if kind is None:
        forms = ", ".join(f"{p}:DIR_OR_ID" for p in TOKENIZED_MODELS)
        raise UserError(f"embedder {name!r} is not a pretrained encoder; use {forms}.")
    kind.check(name)
    return kind.embedder(name)


def is_text_model(name: str) -> bool:
    """Whether a model reads token ids (its factory takes ``vocab_size``, or it brings its own
    tokenizer)."""
    if _tokenized(name) is not None:
        return True
    if ":" in name:
        return False
    return "vocab_size" in inspect.signature(MODELS.get(name)).parameters


# Importing the modules registers their models.
from reffakd.models import (  # noqa: E402,F401
    cae,
    cifar_resnet,
    lenet,
    mlp,
    mobilenetv2,
    resnet,
    rnn_ae,
    shufflenetv2,
    text,
    vgg,
    wrn,
)
