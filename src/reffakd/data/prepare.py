"""From a data config to what training needs: the three splits, the input size, the
normalisation statistics and the augmentation policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reffakd.config import AugmentConfig, DataConfig
from reffakd.data.augment import AugmentPolicy, channel_stats
from reffakd.data.dataset import DataSplits, check_classes, hold_out_validation
from reffakd.data.locate import load_dataset
from reffakd.data.spec import DatasetSpec, get_spec


@dataclass
class PreparedData:
    spec: DatasetSpec
    splits: DataSplits
    image_size: int
    mean: list[float]
    std: list[float]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, size, size) of a model input."""
        return (self.splits.in_channels, self.image_size, self.image_size)


def prepare_data(config: DataConfig) -> PreparedData:
    """Load a dataset, hold out validation, and compute normalisation from the train part."""
    spec = get_spec(config.name)
    raw = load_dataset(config.name, data_dir=config.data_dir, download=config.download)
    splits = hold_out_validation(raw, config.val_fraction, config.split_seed)
    check_classes(raw, splits, config.val_fraction)
    mean, std = channel_stats(splits.train.images)
    image_size = config.image_size or spec.default_image_size or splits.train.shape[-1]
    return PreparedData(spec, splits, image_size, mean, std)


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
