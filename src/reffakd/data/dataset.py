"""In-memory image datasets: uint8 tensors, int64 labels, class names."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from reffakd.errors import DataError


@dataclass
class ImageSplit:
    """One split held in memory.

    ``images`` is uint8 of shape (N, C, H, W); ``labels`` is int64 of shape (N,), each in
    ``[0, len(class_names))``. Batches are index gathers: ``split.images[idx]``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"images must be a uint8 tensor of shape (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}; check the reader for this dataset."
            )
        self.labels = self.labels.to(torch.int64)
        if self.labels.dim() != 1 or len(self.labels) != len(self.images):
            raise DataError(
                f"image/label count mismatch: {len(self.images)} images but "
                f"{self.labels.numel()} labels; the data files are inconsistent, "
                "re-download or re-extract them."
            )
        if len(self.labels) and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)
        ):
            raise DataError(
                f"labels must lie in [0, {len(self.class_names)}), found "
                f"[{int(self.labels.min())}, {int(self.labels.max())}]; the label file is corrupt."
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def inputs(self) -> torch.Tensor:
        """What a batch gathers from: the uint8 images."""
        return self.images

    def batch_order(
        self, order: Tensor, batch_size: int, generator: torch.Generator | None
    ) -> Tensor:
        """The epoch's sample order, unchanged: image batches are plain slices of it."""
        return order

    def subset(self, indices: torch.Tensor) -> ImageSplit:
        return ImageSplit(self.images[indices], self.labels[indices], list(self.class_names))


@dataclass
class RawDataset:
    """What a reader returns: the official train and test splits."""

    name: str
    train: ImageSplit
    test: ImageSplit
    source: str = ""  # where it was read from, for the run record
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train.class_names != self.test.class_names:
            raise DataError(
                f"{self.name}: train and test splits have different classes; "
                "the dataset folder is inconsistent."
            )
        if self.train.shape[0] != self.test.shape[0]:
            raise DataError(f"{self.name}: train and test images have different channel counts.")

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def facts(self) -> dict[str, int]:
        """What the data says about itself, checked against the dataset's spec."""
        channels, side = self.train.shape[:2]
        return {"classes": self.num_classes, "channels": channels, "pixels per side": side}


class SplitTrio:
    """What every modality's train / val / test holder (a dataclass with ``train``, ``val``
    and ``test``) derives from its splits."""

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


@dataclass
class DataSplits(SplitTrio):
    """Train / validation / test. Validation is held out from train; test is only reported."""

    name: str
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    source: str = ""

    @property
    def in_channels(self) -> int:
        return self.train.shape[0]


def stratified_order(labels: torch.Tensor, seed: int, num_classes: int) -> tuple[Tensor, Tensor]:
    """A seeded random order of all samples grouped by class, and each sample's rank in it.

    Returns ``(by_class, rank)``: ``by_class`` lists the indices class by class (random order
    inside a class, drawn from ``seed``); ``rank[i]`` is the position of ``by_class[i]`` within
    its class. Taking the entries with ``rank < k_c`` draws ``k_c`` random samples of class c.
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    # stable sort by label keeps the random order inside each class
    by_class = order[torch.sort(labels[order], stable=True).indices]
    counts = torch.bincount(labels, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(labels)) - torch.repeat_interleave(starts, counts)
    return by_class, rank


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int, num_classes: int
) -> tuple[Tensor, Tensor]:
    """``(kept, held)`` sorted indices: a seeded, stratified ``fraction`` of every class held out.

    Each class holds out ``round(n_c * fraction)`` samples (half to even, as ``torch.round``).
    """
    by_class, rank = stratified_order(labels, seed, num_classes)
    counts = torch.bincount(labels, minlength=num_classes)
    n_held = torch.round(counts.double() * fraction).long()
    is_held = rank < torch.repeat_interleave(n_held, counts)
    return torch.sort(by_class[~is_held]).values, torch.sort(by_class[is_held]).values


def hold_out_validation(raw: RawDataset, fraction: float, seed: int) -> DataSplits:
    """Split a seeded, stratified ``fraction`` of train off as validation.

    Stratified so that every class keeps the same share in both parts; the permutation depends
    only on ``seed`` (the split seed, kept separate from the training seed so every training
    seed sees the same validation set).
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {fraction}")
    train = raw.train
    if fraction == 0.0:
        empty = train.subset(torch.zeros(0, dtype=torch.int64))
        return DataSplits(raw.name, train, empty, raw.test, raw.source)
    train_idx, val_idx = stratified_split(train.labels, fraction, seed, train.num_classes)
    return DataSplits(
        raw.name, train.subset(train_idx), train.subset(val_idx), raw.test, raw.source
    )


def check_classes(raw: RawDataset, splits: DataSplits, val_fraction: float) -> None:
    """Refuse data a classifier cannot be trained on: fewer than 2 classes, or a class without
    a training sample (absent from the train split, or all of it held out for validation)."""
    names = raw.class_names
    if len(names) < 2:
        raise DataError(
            f"{raw.name} has {len(names)} class{'' if len(names) == 1 else 'es'} "
            f"({', '.join(names) or 'none'}); a classifier "
            "needs at least 2 classes: add another class (e.g. another class folder)."
        )
    in_raw = torch.bincount(raw.train.labels, minlength=len(names))
    in_test = torch.bincount(raw.test.labels, minlength=len(names))
    kept = torch.bincount(splits.train.labels, minlength=len(names))
    for label, name in enumerate(names):
        if int(in_raw[label]) == 0:
            where = "test images but no training images" if in_test[label] else "no images"
            raise DataError(
                f"class {name!r} of {raw.name} has {where}; add training images for it or "
                "remove it from the dataset."
            )
        if int(kept[label]) == 0:
            raise DataError(
                f"class {name!r} of {raw.name} keeps no training image after holding out "
                f"data.val_fraction={val_fraction} for validation (it has {int(in_raw[label])}); "
                "add images or lower data.val_fraction."
            )


def require_every_class(what: str, class_names: list[str], labels: Tensor, fix: str) -> None:
    """At least 2 classes, each with a training sample (``labels``: the train split's): an
    empty class would be a class the model can never learn, trained on silently."""
    if len(class_names) < 2:
        raise DataError(
            f"{what} has {len(class_names)} class(es) ({', '.join(class_names) or 'none'}); a "
            "classifier needs at least 2: add samples of another class."
        )
    counts = torch.bincount(labels, minlength=len(class_names)).tolist()
    empty = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
    if empty:
        raise DataError(
            f"class {empty[0]!r} of {what} has no training sample ({len(empty)} of "
            f"{len(class_names)} classes are empty); {fix}"
        )
