"""The user's own data, in whatever form it comes, as the in-memory splits the project trains on.

Accepted forms (``data`` below):

* a map-style dataset (a torch ``Dataset``, a Hugging Face ``datasets.Dataset``, a list) whose
  items are ``(input, label)`` pairs or mappings such as ``{"image": ..., "label": ...}``;
* tensors: a pair ``(inputs, labels)`` of tensors or numpy arrays with one row per sample;
* any iterable of batches ``(inputs, labels)`` (a ``DataLoader``, a generator).

An item whose label is a scalar is one sample; one whose labels are a vector is a batch. Inputs
may be tensors, numpy arrays or PIL images. Images are channels first, ``(C, H, W)`` or
``(H, W)`` per sample, as torch lays them out.

Images become uint8, the form every split is held in (:class:`~reffakd.data.dataset.ImageSplit`):
uint8 is kept; integer images must lie in [0, 255]; float images must lie in [0, 1] (what
``transforms.ToTensor`` gives) and are stored as ``round(255 x)``, which gives back exactly the
uint8 image ``ToTensor`` started from. Normalised floats (after ``transforms.Normalize``) are
refused: their scale cannot be recovered without the mean and std.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from reffakd.data.augment import channel_stats
from reffakd.data.dataset import (
    DataSplits,
    ImageSplit,
    RawDataset,
    hold_out_validation,
    require_every_class,
)
from reffakd.data.prepared_images import PreparedImages
from reffakd.data.readers.image_modes import to_uint8
from reffakd.data.spec import DatasetSpec
from reffakd.errors import DataError, UserError, UserTypeError

USER_DATA = "user data"
DEFAULT_KEYS = ("image", "label")
SPLIT_KEYS = ("train", "val", "test", "class_names")
MAX_CLASSES = 100_000  # numbered classes: more is a stray label, not a dataset
ALIASES = {"validation": "val"}  # Hugging Face's name for the validation split
NO_AUGMENTATION = {"crop_padding": 0, "flip": False, "rotation": 0.0}


# ---------------------------------------------------------------------------- any form -> tensors
def gather(data: Any, keys: Sequence[str] = DEFAULT_KEYS) -> tuple[Tensor, Tensor]:
    """Every ``(input, label)`` of ``data`` as two tensors, in order: inputs ``(N, ...)``, labels
    int64 ``(N,)``. ``keys`` name the input and label of mapping items."""
    if isinstance(data, ImageSplit):
        return data.images, data.labels
    pair = _tensor_pair(data)
    if pair is not None:
        inputs, labels = pair
    else:
        inputs, labels = _from_items(_items(data), keys)
    return inputs, _labels(labels)


def _tensor_pair(data: Any) -> tuple[Tensor, Tensor] | None:
    """``(inputs, labels)`` when ``data`` is a pair of whole tensors/arrays, else None."""
    if not isinstance(data, tuple | list) or len(data) != 2:
        return None
    inputs, labels = data
    if not isinstance(inputs, Tensor | np.ndarray) or not isinstance(
        labels, Tensor | np.ndarray | list
    ):
        return None
    inputs, labels = torch.as_tensor(inputs), torch.as_tensor(labels)
    if labels.dim() != 1 or inputs.dim() < 1 or len(inputs) != len(labels):
        if labels.dim() == 0:
            return None  # one (input, label) sample, not whole tensors
        raise UserError(
            f"tensors (inputs, labels) must have one row per sample: got inputs of shape "
            f"{tuple(inputs.shape)} and labels of shape {tuple(labels.shape)}."
        )
    return inputs, labels


def _items(data: Any) -> Iterable[Any]:
    if isinstance(data, Tensor | np.ndarray | str | bytes | Mapping):
        raise UserTypeError(
            f"cannot read samples from a {type(data).__name__}: pass a Dataset of (input, label) "
            "pairs, a pair of tensors (inputs, labels), or an iterable of (inputs, labels) batches."
        )
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return (data[i] for i in range(len(data)))
    if isinstance(data, Iterable):
        return data
    raise UserTypeError(
        f"cannot read samples from a {type(data).__name__}: it is neither a dataset (len and "
        "indexing) nor an iterable of (inputs, labels) batches."
    )


def _from_items(items: Iterable[Any], keys: Sequence[str]) -> tuple[Tensor, Tensor]:
    inputs: list[Tensor] = []
    labels: list[Tensor] = []
    for number, item in enumerate(items):
        x, y = _split_item(item, keys, number)
        x, y = _as_tensor(x, "input", number), _as_tensor(y, "label", number)
        if y.dim() == 0:  # one sample
            x, y = x.unsqueeze(0), y.unsqueeze(0)
        elif y.dim() != 1 or len(x) != len(y):
            raise UserError(
                f"item {number}: a batch needs one label per input, got inputs of shape "
                f"{tuple(x.shape)} and labels of shape {tuple(y.shape)}."
            )
        inputs.append(x)
        labels.append(y)
    if not inputs:
        raise UserError("the data holds no samples.")
    shapes = {tuple(x.shape[1:]) for x in inputs}
    if len(shapes) > 1:
        shown = ", ".join(str(s) for s in sorted(shapes)[:3])
        raise UserError(
            f"samples have different shapes ({shown}...); resize or pad them to one shape."
        )
    return torch.cat(inputs), torch.cat(labels)


def _split_item(item: Any, keys: Sequence[str], number: int) -> tuple[Any, Any]:
    if isinstance(item, Mapping):
        missing = [k for k in keys if k not in item]
        if missing:
            raise UserError(
                f"item {number} has the keys {', '.join(map(str, item))}, not {missing[0]!r}; "
                "pass keys=(input_key, label_key)."
            )
        return item[keys[0]], item[keys[1]]
    if isinstance(item, tuple | list) and len(item) >= 2:
        return item[0], item[1]
    raise UserTypeError(
        f"item {number} is a {type(item).__name__}, not an (input, label) pair or a mapping."
    )


def _as_tensor(value: Any, what: str, number: int) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, Image.Image):
        array = torch.from_numpy(to_uint8(value, f"item {number}").copy())
        return array.permute(2, 0, 1) if array.dim() == 3 else array
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError):
        raise UserTypeError(
            f"item {number}: the {what} is a {type(value).__name__}, not a tensor, array, "
            "number or PIL image."
        ) from None


def _labels(labels: Tensor) -> Tensor:
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise UserTypeError(f"labels must be integer class indices, got {labels.dtype}.")
    if len(labels) and int(labels.min()) < 0:
        raise UserError(f"labels must be class indices >= 0, found {int(labels.min())}.")
    return labels.to(torch.int64)


# ---------------------------------------------------------------------------- images
def as_uint8_images(inputs: Tensor) -> Tensor:
    """(N, C, H, W) uint8 from (N, C, H, W) or (N, H, W) images; see the module docstring."""
    if inputs.dim() == 3:
        inputs = inputs.unsqueeze(1)
    if inputs.dim() != 4:
        raise UserError(
            f"images must be (N, C, H, W) or (N, H, W), got shape {tuple(inputs.shape)}."
        )
    n, c, h, w = inputs.shape
    if c > 4 and w <= 4 and w != h:
        raise UserError(
            f"images of shape {tuple(inputs.shape)} look channels-last; pass them channels "
            "first, (N, C, H, W), e.g. images.permute(0, 3, 1, 2)."
        )
    if inputs.dtype == torch.uint8:
        return inputs.contiguous()
    if inputs.dtype == torch.bool or inputs.is_complex():
        raise UserError(f"images must be uint8, integer or float, got {inputs.dtype}.")
    low, high = (float(inputs.min()), float(inputs.max())) if inputs.numel() else (0.0, 0.0)
    if inputs.is_floating_point():
        if not (low >= 0.0 and high <= 1.0):
            raise UserError(
                f"float images must lie in [0, 1], found values in [{low:.3g}, {high:.3g}]; "
                "pass them before normalisation (without transforms.Normalize) or as uint8."
            )
        return (inputs.to(torch.float64) * 255.0).round_().to(torch.uint8)
    if not (low >= 0 and high <= 255):
        raise UserError(f"integer images must lie in [0, 255], found [{low:.0f}, {high:.0f}].")
    return inputs.to(torch.uint8)


def image_split(inputs: Tensor, labels: Tensor, class_names: Sequence[str]) -> ImageSplit:
    """An :class:`ImageSplit` of the user's images; labels must lie in ``[0, len(class_names))``."""
    names = [str(n) for n in class_names]
    if len(labels) and int(labels.max()) >= len(names):
        raise UserError(
            f"labels go up to {int(labels.max())} but there are {len(names)} classes; pass "
            "the right num_classes or class_names."
        )
    return ImageSplit(as_uint8_images(inputs), labels, names)


def class_names_of(data: Any, label_key: str = DEFAULT_KEYS[1]) -> list[str] | None:
    """Class names a dataset carries: torchvision's ``classes``, or a Hugging Face
    ``ClassLabel`` feature's ``names``; None when it carries none."""
    names = getattr(data, "classes", None)
    if names is None:
        features = getattr(data, "features", None)
        feature = features.get(label_key) if isinstance(features, Mapping) else None
        names = getattr(feature, "names", None)
    if isinstance(names, Sequence) and not isinstance(names, str) and names:
        return [str(n) for n in names]
    return None


# ---------------------------------------------------------------------------- splits for the engine
def user_splits(
    data: Any,
    *,
    val_fraction: float,
    split_seed: int,
    keys: Sequence[str] = DEFAULT_KEYS,
) -> DataSplits:
    """Train / validation / test from the user's data.

    ``data`` is :class:`DataSplits`, one dataset (train only), or a mapping with ``train`` and
    optionally ``val`` (or ``validation``), ``test`` and ``class_names``. Without ``val``, a
    stratified ``val_fraction`` of train is held out (seeded by ``split_seed``), as for named
    datasets;
    without ``test``, no test accuracy is reported. Class names come from ``class_names``, the
    train dataset, or the largest label.
    """
    if isinstance(data, DataSplits):
        return data
    parts = dict(data) if isinstance(data, Mapping) and "train" in data else {"train": data}
    parts = {ALIASES.get(k, k): v for k, v in parts.items()}
    unknown = sorted(set(parts) - set(SPLIT_KEYS))
    if unknown:
        raise UserError(f"unknown data key {unknown[0]!r}; use {', '.join(SPLIT_KEYS)}.")
    gathered = {k: gather(parts[k], keys) for k in ("train", "val", "test") if k in parts}
    names = parts.get("class_names") or class_names_of(parts["train"], keys[1])
    if names is None:
        names = _numbered_classes(gathered)
    splits = {k: image_split(x, y, names) for k, (x, y) in gathered.items()}
    train = splits["train"]
    test = splits.get("test") or train.subset(torch.zeros(0, dtype=torch.int64))
    if "val" in splits:
        return DataSplits(USER_DATA, train, splits["val"], test, USER_DATA)
    raw = RawDataset(USER_DATA, train, test, source=USER_DATA)
    return hold_out_validation(raw, val_fraction, split_seed)


def _numbered_classes(gathered: dict[str, tuple[Tensor, Tensor]]) -> list[str]:
    """Classes "0".."top" for the largest label, refusing a label that would make a table of
    classes too large for memory (a stray 10**12)."""
    top = max(int(y.max()) for _, y in gathered.values() if len(y))
    if top >= MAX_CLASSES:
        raise UserError(
            f"labels go up to {top}, which would make {top + 1:,} classes (at most "
            f"{MAX_CLASSES:,}); number the classes 0..C-1, or pass class_names."
        )
    return [str(k) for k in range(top + 1)]


def prepare_user_data(splits: DataSplits, image_size: int | None) -> PreparedImages:
    """What training needs from user splits. Without ``image_size`` the images' own side is
    used; non-square images then need one, as the engine trains on square inputs."""
    require_every_class(
        "the data",
        list(splits.class_names),
        splits.train.labels,
        "number the classes 0..C-1 without gaps, pass class_names of the classes present, or "
        "lower data.val_fraction.",
    )
    channels, height, width = splits.train.shape
    for name, split in (("val", splits.val), ("test", splits.test)):
        if len(split) and split.shape != splits.train.shape:
            raise DataError(
                f"{name} images are {split.shape} but train images are {splits.train.shape}; "
                "give every split the same channels and size."
            )
    if image_size is None:
        if height != width:
            raise UserError(
                f"images are {height}x{width}; training runs on square inputs: set "
                "data.image_size to resize them to that side."
            )
        image_size = height
    spec = DatasetSpec(
        name=USER_DATA,
        num_classes=splits.num_classes,
        in_channels=channels,
        native_size=height if height == width else None,
        default_image_size=None,
        class_names=list(splits.class_names),
        augment=dict(NO_AUGMENTATION),
    )
    mean, std = channel_stats(splits.train.images)
    return PreparedImages(spec, splits, image_size, mean, std)
