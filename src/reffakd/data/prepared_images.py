"""Images prepared for training: :class:`PreparedImages`, :func:`prepare_images` and the
augmentation policy of a dataset (:func:`augment_policy`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from reffakd.config import AugmentConfig, DataConfig
from reffakd.data.augment import AugmentPolicy, BatchTransform, channel_stats
from reffakd.data.dataset import DataSplits, check_classes, hold_out_validation, limit_images
from reffakd.data.locate import load_dataset
from reffakd.data.prepared import AUGMENT_OPTIONS, DATA_OPTIONS, PreparedData, refuse_foreign
from reffakd.data.spec import DatasetSpec, get_spec
from reffakd.errors import UserError


@dataclass
class PreparedImages(PreparedData):
    """Images: uint8 splits, the model's input size and the train split's channel statistics."""

    modality: ClassVar[str] = "image"
    data_options: ClassVar[frozenset[str]] = DATA_OPTIONS["image"]
    augment_options: ClassVar[frozenset[str]] = AUGMENT_OPTIONS["image"]

    spec: DatasetSpec
    splits: DataSplits
    image_size: int
    mean: list[float]
    std: list[float]
    limited: dict[str, int] = dataclasses.field(default_factory=dict)  # train_limit, before it

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, size, size) of a model input."""
        return (self.splits.in_channels, self.image_size, self.image_size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.input_shape

    @property
    def model_input(self) -> dict[str, int]:
        return {"in_channels": self.splits.in_channels, "image_size": self.image_size}

    def example_input(self, batch_size: int = 1) -> Tensor:
        return torch.zeros(batch_size, *self.input_shape)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.limited}

    def batch_transform(self, augment: AugmentConfig) -> BatchTransform:
        refuse_foreign(augment, self.augment_options, AUGMENT_OPTIONS, "augment", self.spec)
        policy = augment_policy(self.spec, augment)
        return BatchTransform(self.image_size, self.mean, self.std, policy)

    def input_mismatch(self, run: Path, config: DataConfig) -> str | None:
        spec = get_spec(config.name)
        theirs = {
            "input channels": spec.in_channels,
            "pixels per side": config.image_size or spec.default_image_size,
        }
        ours = {"input channels": self.splits.in_channels, "pixels per side": self.image_size}
        for what, value in theirs.items():
            if value is not None and value != ours[what]:
                return f"its model reads {value} {what}, this run's {ours[what]}"
        return None

    def input_text(self) -> str:
        return "x".join(map(str, self.input_shape)) + " images"


def prepare_images(spec: DatasetSpec, config: DataConfig) -> PreparedImages:
    """Load the images, hold out validation, and compute normalisation from the train part."""
    raw = load_dataset(config.name, data_dir=config.data_dir, download=config.download)
    splits = hold_out_validation(raw, config.val_fraction, config.split_seed)
    limited = {}
    if config.train_limit is not None:
        limited = {"train_limit": config.train_limit, "train_before_limit": len(splits.train)}
        train = limit_images(splits.train, config.train_limit, config.split_seed)
        _check_limit_keeps_classes(splits.train, train, config.train_limit)
        splits = dataclasses.replace(splits, train=train)
    check_classes(raw, splits, config.val_fraction)
    mean, std = channel_stats(splits.train.images)
    image_size = config.image_size or spec.default_image_size or splits.train.shape[-1]
    return PreparedImages(spec, splits, image_size, mean, std, limited)


def _check_limit_keeps_classes(before: Any, after: Any, limit: int) -> None:
    """A train_limit so small that a class with training images keeps none is refused."""
    had = torch.bincount(before.labels, minlength=len(before.class_names))
    kept = torch.bincount(after.labels, minlength=len(before.class_names))
    lost = [name for name, h, k in zip(before.class_names, had, kept, strict=True) if h and not k]
    if lost:
        raise UserError(
            f"data.train_limit={limit} keeps no training image of class {lost[0]!r} (every class "
            "keeps its share of the limit); raise the limit or drop it."
        )


def augment_policy(spec: DatasetSpec, config: AugmentConfig) -> AugmentPolicy:
    """The dataset's default policy with any explicitly set field replaced."""
    if not config.enabled:
        return AugmentPolicy()
    defaults = spec.augment
    return AugmentPolicy(
        crop_padding=int(_pick(config.crop_padding, defaults.get("crop_padding", 0))),
        flip=bool(_pick(config.flip, defaults.get("flip", False))),
        rotation=float(_pick(config.rotation, defaults.get("rotation", 0.0))),
    )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value
