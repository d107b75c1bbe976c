"""Batches as index gathers over tensors that already live on the training device."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class Split(Protocol):
    """What a batch gathers from: ``inputs`` (uint8 images, token ids, ...) and ``labels``.

    ``batch_order(order, batch_size, generator)`` may rearrange an epoch's sample order before
    it is cut into batches (text groups texts of similar length; images keep the order).
    """

    @property
    def inputs(self) -> Tensor: ...

    labels: Tensor

    def __len__(self) -> int: ...

    def batch_order(
        self, order: Tensor, batch_size: int, generator: torch.Generator | None
    ) -> Tensor: ...


class Splits(Protocol):
    """Train / validation / test of any modality."""

    train: Split
    val: Split
    test: Split


class Transform(Protocol):
    """A batch transform: raw batch inputs -> model inputs, on the batch's device.

    ``train`` switches augmentation on; its random numbers come from ``generator``.
    ``augments`` says whether training inputs differ from evaluation inputs at all.
    ``rows``/``total``: the inputs are this process's rows of a batch of ``total`` samples
    split over processes; random numbers are drawn for the whole batch and this share kept.
    """

    @property
    def augments(self) -> bool: ...

    def __call__(
        self,
        inputs: Tensor,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
        rows: slice | None = None,
        total: int | None = None,
    ) -> Tensor: ...


@dataclass
class Batch:
    inputs: Tensor  # uint8 images (B, C, H, W) or token ids (B, L), on the device
    labels: Tensor  # int64 (B,), on the device
    indices: Tensor  # int64 (B,), positions in the split: the key for per-sample caches
    rows: slice | None = None  # with shards: this process's rows of the whole batch
    total: int | None = None  # with shards: the whole batch's size

    @property
    def whole_size(self) -> int:
        """Samples in the whole batch, over all processes."""
        return len(self.labels) if self.total is None else self.total


def shard_rows(count: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``count`` rows: sizes differ by at most one, the
    first ``count % world_size`` ranks taking one more (``torch.tensor_split``'s rule)."""
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


WIDTH_MULTIPLE = 8


class BatchLoader:
    """Iterate over a split in batches. The split is copied to ``device`` once.

    Shuffling draws one permutation per epoch from ``generator`` (CPU), whose state the engine
    checkpoints, so resumed runs see the same order.

    With ``world_size`` > 1 every process walks the same batches and gets only its
    :func:`shard_rows` of each (``Batch.rows`` of ``Batch.total``); a process whose share of a
    batch is empty skips that batch.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.split = split
        self.inputs = split.inputs.to(self.device)
        self.labels = split.labels.to(self.device)
        # text: the CPU lengths that trim each batch without reading the device
        self.lengths: Tensor | None = getattr(split, "lengths", None)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        generator = self.generator if self.shuffle else None
        order = self.split.batch_order(order, self.batch_size, generator)
        widths = self._widths(order)
        order = order.to(self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            inputs = self.inputs if widths is None else self.inputs[:, : widths[i]]
            if self.world_size == 1:
                yield Batch(inputs[idx], self.labels[idx], idx)
                continue
            rows = shard_rows(len(idx), self.rank, self.world_size)
            mine = idx[rows]
            if len(mine):
                yield Batch(inputs[mine], self.labels[mine], mine, rows, len(idx))

    def _widths(self, order: Tensor) -> list[int] | None:
        """Text: each batch's width, its longest row rounded up to a multiple of
        :data:`WIDTH_MULTIPLE` (at most the padded width), from the CPU lengths, once an epoch.
        Text models ignore trailing pads, so trimming only saves the work of running on them;
        the rounding keeps the number of distinct shapes small (compiled and cuDNN kernels)."""
        if self.lengths is None or not len(order):
            return None
        longest = torch.stack([part.max() for part in self.lengths[order].split(self.batch_size)])
        rounded = (longest.clamp(min=1) + WIDTH_MULTIPLE - 1) // WIDTH_MULTIPLE * WIDTH_MULTIPLE
        return rounded.clamp(max=self.inputs.shape[1]).tolist()
