"""``reffakd cost MODEL --dataset D``: a model's parameters, FLOPs and MACs at a dataset's input.

It reads only the dataset's spec, never its files. Counting conventions are those of
:mod:`reffakd.training.cost`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from reffakd.data.spec import get_spec
from reffakd.errors import UserError, first_line
from reffakd.models import build_model
from reffakd.training.cost import (
    count_parameters,
    count_trainable_parameters,
    forward_flops,
    training_flops,
)

Shape = Sequence[int]

# Official train-split images per class (the test split is separate). Used by ``reffakd cost`` to
# get an epoch's size without reading data; the validation hold-out is applied per class exactly
# as :func:`reffakd.data.dataset.hold_out_validation` does.
TRAIN_CLASS_COUNTS: dict[str, tuple[int, ...]] = {
    "fashion-mnist": (6000,) * 10,
    "mnist": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "cifar10": (5000,) * 10,
    "cifar100": (500,) * 100,
    "tiny-imagenet": (500,) * 200,
}


def train_split_size(dataset: str, val_fraction: float) -> int | None:
    """Images per training epoch after the per-class validation hold-out; None if unknown."""
    counts = TRAIN_CLASS_COUNTS.get(dataset)
    if counts is None:
        return None
    # round() rounds half to even, as torch.round does in hold_out_validation
    return sum(n - round(n * val_fraction) for n in counts)


def dataset_input(
    dataset: str,
    image_size: int | None = None,
    in_channels: int | None = None,
    num_classes: int | None = None,
) -> tuple[tuple[int, int, int], int]:
    """``((channels, size, size), num_classes)`` for a dataset, with optional overrides.

    Reads only the dataset's spec, never its files. Raises :class:`UserError` for an unknown
    dataset, a non-positive value, or a value the spec lacks (``imagefolder``) and no override.
    """
    spec = get_spec(dataset)
    values = {
        "--image-size": image_size or spec.default_image_size,
        "--in-channels": in_channels or spec.in_channels,
        "--num-classes": num_classes or spec.num_classes,
    }
    for flag, given in (
        ("--image-size", image_size),
        ("--in-channels", in_channels),
        ("--num-classes", num_classes),
    ):
        if given is not None and given < 1:
            raise UserError(f"{flag} must be positive, got {given}")
    missing = [flag for flag, value in values.items() if value is None]
    if missing:
        raise UserError(f"dataset {dataset!r} does not fix the input; pass {' '.join(missing)}")
    size, channels, classes = values.values()
    return (channels, size, size), classes


def model_cost(
    model_name: str,
    input_shape: Shape,
    num_classes: int,
    train_samples: int | None = None,
    batch_size: int = 128,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Parameters, forward FLOPs/MACs per sample and training FLOPs of a registry model.

    Raises :class:`~reffakd.errors.UserError` for an unknown model or one that cannot take
    ``input_shape``.
    """
    channels, size = int(input_shape[0]), int(input_shape[-1])
    try:
        model = build_model(model_name, num_classes, in_channels=channels, image_size=size)
        forward = forward_flops(model, input_shape)
    except (ValueError, RuntimeError) as err:
        raise UserError(
            f"model {model_name!r} at input {_shape_text(input_shape)}: {first_line(err)}"
        ) from None
    per_epoch = None if train_samples is None else training_flops(forward["flops"], train_samples)
    return {
        "model": model_name,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "params": count_parameters(model),
        "trainable_params": count_trainable_parameters(model),
        "forward_flops": forward["flops"],
        "forward_macs": forward["macs"],
        "train_samples_per_epoch": train_samples,
        "batch_size": batch_size,
        "steps_per_epoch": None if train_samples is None else math.ceil(train_samples / batch_size),
        "training_flops_per_epoch": per_epoch,
        "epochs": epochs,
        "training_flops_total": None if per_epoch is None or epochs is None else per_epoch * epochs,
    }


def _shape_text(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def human(value: float, unit: str = "") -> str:
    """``1298014208`` -> ``'1.30 G'``: three significant-ish digits with an SI prefix."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def format_model_cost(cost: Mapping[str, Any], dataset: str | None = None) -> str:
    """The human-readable report printed by ``reffakd cost``."""
    where = f"{dataset}: " if dataset else ""
    lines = [
        f"model       {cost['model']} ({where}input {_shape_text(cost['input_shape'])}, "
        f"{cost['num_classes']} classes)",
        f"parameters  {cost['params']:,} ({human(cost['params'])}), "
        f"trainable {cost['trainable_params']:,}",
        f"forward     {cost['forward_flops']:,} FLOPs = {cost['forward_macs']:,} MACs per sample "
        f"({human(cost['forward_macs'], 'MACs')})",
    ]
    if cost["training_flops_per_epoch"] is None:
        lines.append("training    train-split size unknown: 3 x forward FLOPs per sample seen")
        return "\n".join(lines)
    lines.append(
        f"training    {human(cost['training_flops_per_epoch'], 'FLOPs')} per epoch "
        f"(3 x forward x {cost['train_samples_per_epoch']:,} samples, "
        f"{cost['steps_per_epoch']:,} steps of {cost['batch_size']})"
    )
    if cost["training_flops_total"] is not None:
        lines.append(
            f"            {human(cost['training_flops_total'], 'FLOPs')} for "
            f"{cost['epochs']} epochs"
        )
    lines.append("counted: matmul/conv ops only (not BN, activations, pooling, bias)")
    return "\n".join(lines)
