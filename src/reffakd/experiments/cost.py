"""``reffakd cost MODEL --dataset D``: a model's parameters, FLOPs and MACs at a dataset's input.

For image datasets it reads only the dataset's spec, never its files. A text model's size and
cost depend on the vocabulary and the text length: given both (``--vocab-size``, ``--tokens``)
nothing is read either; otherwise they are measured on the data (found like for ``reffakd
train``), with the default data settings: the vocabulary size and the mean training length.
Counting conventions are those of :mod:`reffakd.training.cost` (a text model on a text of the
mean training length, every position a token, as in training runs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reffakd.config import DataConfig
from reffakd.data.prepare import prepare_data
from reffakd.data.prepared_text import PreparedText
from reffakd.data.spec import DatasetSpec, get_spec
from reffakd.data.vocab import PAD, UNK
from reffakd.errors import UserError, first_line
from reffakd.models import build_model, input_tokenizer
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
    "sst2": (29_780, 37_569),  # GLUE train (phrases)
    "agnews": (30_000,) * 4,  # the official train set
    "mr": (4_798, 4_798),  # 5,331 each, less the seeded 10% test split
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


@dataclass
class CostInput:
    """What a model is counted on: its factory's input keywords, one example sample, the
    classes, the training samples per epoch (None if unknown) and the input in words."""

    model_input: dict[str, int]
    example: torch.Tensor
    num_classes: int
    train_samples: int | None
    text: str


@dataclass(frozen=True)
class CostOptions:
    """The command's optional overrides (None: from the spec or the data)."""

    image_size: int | None = None
    in_channels: int | None = None
    num_classes: int | None = None
    vocab_size: int | None = None
    tokens: int | None = None
    val_fraction: float = 0.1
    data_dir: str | None = None
    tokenizer: str | None = None  # the model's own tokenizer (hf:...), see input_tokenizer


def _image_cost_input(spec: DatasetSpec, options: CostOptions) -> CostInput:
    shape, classes = dataset_input(
        spec.name, options.image_size, options.in_channels, options.num_classes
    )
    return CostInput(
        {"in_channels": shape[0], "image_size": shape[1]},
        torch.zeros(1, *shape),
        classes,
        train_split_size(spec.name, options.val_fraction),
        _shape_text(shape),
    )


def _text_cost_input(spec: DatasetSpec, options: CostOptions) -> CostInput:
    """Vocabulary size and tokens per text from the options, else measured on the data."""
    vocab, length, classes = options.vocab_size, options.tokens, options.num_classes
    samples = train_split_size(spec.name, options.val_fraction)
    where = "given"
    if options.tokenizer is not None:
        return _tokenized_cost_input(spec, options)
    if vocab is None or length is None:
        data = prepare_data(
            DataConfig(name=spec.name, data_dir=options.data_dir, val_fraction=options.val_fraction)
        )
        assert isinstance(data, PreparedText)
        vocab, length = vocab or len(data.vocab), length or data.tokens_per_sample
        classes, samples = classes or data.splits.num_classes, len(data.splits.train)
        where = f"measured on {data.splits.source}"
    classes = classes or spec.num_classes
    if classes is None:
        raise UserError(f"dataset {spec.name!r} does not fix the classes; pass --num-classes")
    return CostInput(
        {"vocab_size": vocab, "max_len": length, "pad_id": PAD},
        torch.full((1, length), UNK, dtype=torch.int64),
        classes,
        samples,
        f"{length} tokens, vocabulary {vocab:,} ({where})",
    )


def _tokenized_cost_input(spec: DatasetSpec, options: CostOptions) -> CostInput:
    """Text in the ids of the model's own tokenizer, measured on the data (``--tokens``
    overrides the length)."""
    if options.vocab_size is not None:
        raise UserError(
            f"--vocab-size does not apply to a model with its own tokenizer ({options.tokenizer})"
            "; drop it."
        )
    config = DataConfig(
        name=spec.name, data_dir=options.data_dir, val_fraction=options.val_fraction
    )
    data = prepare_data(config, options.tokenizer)
    example = data.example_input()
    if options.tokens is not None:
        example = example[:, :1].expand(1, options.tokens).contiguous()
    length = example.shape[1]
    return CostInput(
        {**data.model_input, "max_len": max(length, data.model_input["max_len"])},
        example,
        options.num_classes or data.splits.num_classes,
        len(data.splits.train),
        f"{length} tokens of {options.tokenizer} (measured on {data.splits.source})",
    )


COST_INPUTS: dict[str, Callable[[DatasetSpec, CostOptions], CostInput]] = {
    "image": _image_cost_input,
    "text": _text_cost_input,
}
# The options that only one modality takes.
MODALITY_OPTIONS = {"image": ("image_size", "in_channels"), "text": ("vocab_size", "tokens")}


def cost_input(
    dataset: str, options: CostOptions | None = None, model: str | None = None
) -> CostInput:
    """What ``reffakd cost`` counts a model on, for a dataset of any modality (in the ids of
    ``model``'s own tokenizer when it brings one)."""
    options = options or CostOptions()
    if model is not None and input_tokenizer(model) is not None:
        options = dataclasses.replace(options, tokenizer=input_tokenizer(model))
    spec = get_spec(dataset)
    for modality, names in MODALITY_OPTIONS.items():
        for name in names:
            value = getattr(options, name)
            if value is not None and modality != spec.modality:
                raise UserError(
                    f"--{name.replace('_', '-')} applies to {modality} datasets, and {dataset} "
                    f"is a {spec.modality} dataset; drop it."
                )
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if options.tokenizer is not None and spec.modality != "text":
        raise UserError(f"{model} reads text, and {dataset} is {spec.modality} data.")
    return COST_INPUTS[spec.modality](spec, options)


def model_cost(
    model_name: str,
    given: CostInput,
    batch_size: int = 128,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Parameters, forward FLOPs/MACs per sample and training FLOPs of a registry model.

    Raises :class:`~reffakd.errors.UserError` for an unknown model or one that cannot read the
    input.
    """
    train_samples, num_classes = given.train_samples, given.num_classes
    try:
        model = build_model(model_name, num_classes, **given.model_input)
        forward = forward_flops(model, given.example.shape[1:], example_input=given.example)
    except UserError:  # an unknown model: its own message
        raise
    except (ValueError, RuntimeError) as err:
        raise UserError(f"model {model_name!r} at input {given.text}: {first_line(err)}") from None
    per_epoch = None if train_samples is None else training_flops(forward["flops"], train_samples)
    return {
        "model": model_name,
        "input": given.text,
        "input_shape": list(given.example.shape[1:]),
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
        f"model       {cost['model']} ({where}input {cost['input']}, "
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
    lines.append(
        "counted: matmul/conv ops, LSTM/GRU gates by hand (not BN, activations, pooling, bias)"
    )
    return "\n".join(lines)
