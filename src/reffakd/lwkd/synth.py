"""LW-KD's synthesized dataset: class k is the zero-padded base-10 string of k, drawn in digits.

For C classes every class name has d = max(1, ceil(log10 C)) digits (``num_digits``: the length
of ``str(C - 1)``, which equals ceil(log10 C) for C ≥ 2), so C = 10 gives "0".."9", C = 100
gives "00".."99" and C = 200 gives "000".."199". An image of class k is d digit images of the
digits of k side by side (each 28×28 cell trimmed to its central 22 columns), resized to the
target H×W with one antialiased ``F.interpolate`` per chunk and replicated to the target channel
count (a stride-0 ``expand`` view: no memory for the copies).

Digits come from MNIST when it is on the machine (found like any dataset, never downloaded unless
asked): synthesized train and validation images use two disjoint parts of MNIST's train split,
the synthesized test split (and the LW-KD pool) MNIST's test split. Otherwise they are rendered
procedurally (:mod:`reffakd.lwkd.glyphs`), which needs no data at all. Everything is drawn from
seeded ``torch.Generator`` streams, one per split, so a seed fixes every image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reffakd.data.dataset import DataSplits, ImageSplit, RawDataset
from reffakd.data.locate import load_dataset
from reffakd.errors import UserError
from reffakd.lwkd.glyphs import CELL, Jitter, render_digits

TRIM = 3  # columns dropped on each side of a 28×28 cell: MNIST digits fit in the middle 20
STREAMS = {"train": 1, "val": 2, "test": 3, "pool": 4, "partition": 5}
DIGIT_SOURCES = ("auto", "mnist", "procedural")
MNIST_MEAN_INK = (0.10, 0.17)  # MNIST's mean pixel is 0.1307; Fashion-MNIST's 0.286


def num_digits(num_classes: int) -> int:
    """d = max(1, ceil(log10 C)): the digits needed to write C - 1 in base 10."""
    if num_classes < 2:
        raise UserError(f"the synthesized digits need at least 2 classes, got {num_classes}.")
    return len(str(num_classes - 1))


def class_names(num_classes: int) -> list[str]:
    """["0", ..., "9"] for C = 10, ["00", ..., "99"] for C = 100: class k zero-padded to d."""
    d = num_digits(num_classes)
    return [f"{k:0{d}d}" for k in range(num_classes)]


def class_digits(labels: Tensor, digits: int) -> Tensor:
    """(N,) class indices -> (N, d) base-10 digits, most significant first:
    digit_i(k) = floor(k / 10^(d-1-i)) mod 10."""
    powers = 10 ** torch.arange(digits - 1, -1, -1, dtype=torch.int64)
    return torch.div(labels.long().unsqueeze(1), powers, rounding_mode="floor") % 10


@dataclass(frozen=True)
class SplitSizes:
    """Images per class in each synthesized split."""

    train: int
    val: int
    test: int

    @classmethod
    def default(cls, num_classes: int, train: int | None = None) -> SplitSizes:
        """train = min(500, max(50, 50000 // C)) unless given (at most 50k images for C ≥ 100);
        val = max(1, train // 10); test = max(1, train // 5)."""
        if train is None:
            train = min(500, max(50, 50_000 // num_classes))
        if train < 1:
            raise UserError(f"synthesized images per class must be >= 1, got {train}.")
        return cls(train, max(1, train // 10), max(1, train // 5))


class DigitBank(Protocol):
    """Where digit images come from: ``cells(values, generator)`` -> (M, 28, 28) in [0, 1]."""

    kind: str

    def cells(self, values: Tensor, generator: torch.Generator) -> Tensor: ...


class ProceduralDigits:
    """Rendered digits with random style, stroke width and affine jitter."""

    kind = "procedural"

    def __init__(self, jitter: Jitter | None = None) -> None:
        self.jitter = jitter

    def cells(self, values: Tensor, generator: torch.Generator) -> Tensor:
        return render_digits(values, generator, self.jitter)


class MnistDigits:
    """Handwritten digits: for each requested value v, a uniformly drawn MNIST image of v.

    Images are sorted by label once; a draw is ``start[v] + floor(u · count[v])`` for one
    uniform u per cell, i.e. a single vectorised gather.
    """

    kind = "mnist"

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        order = torch.sort(labels, stable=True).indices
        self.images = images.reshape(len(images), CELL, CELL)[order]
        self.counts = torch.bincount(labels, minlength=10)
        if bool((self.counts == 0).any()):
            raise UserError("the MNIST copy lacks some digit values; it is damaged.")
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def cells(self, values: Tensor, generator: torch.Generator) -> Tensor:
        values = values.long()
        counts = self.counts[values]
        offset = (torch.rand(len(values), generator=generator) * counts).long()
        index = self.starts[values] + torch.minimum(offset, counts - 1)
        return self.images[index].to(torch.float32) / 255.0


def find_mnist(data_dir: str | Path | None = None, download: bool = False) -> RawDataset | None:
    """MNIST from ``data_dir``, ``$REFFAKD_DATA`` or the cache (downloaded only if asked), or
    None when there is no usable copy. A folder of other IDX digits-sized images (e.g. a
    ``--data-dir`` pointing straight at Fashion-MNIST) is refused by its mean ink."""
    try:
        raw = load_dataset("mnist", data_dir=data_dir, download=download)
    except UserError:
        return None
    ink = float(raw.train.images[:2000].to(torch.float32).mean()) / 255.0
    if not MNIST_MEAN_INK[0] <= ink <= MNIST_MEAN_INK[1]:
        return None
    return raw


def digit_banks(
    kind: str, mnist: RawDataset | None, seed: int, jitter: Jitter | None = None
) -> dict[str, DigitBank]:
    """One bank per split. MNIST: train and val from a seeded 5:1 partition of MNIST train,
    test and pool from MNIST test. Procedural: the same renderer (own random stream per split)."""
    if kind == "procedural":
        bank = ProceduralDigits(jitter)
        return dict.fromkeys(("train", "val", "test", "pool"), bank)
    if mnist is None:
        raise UserError("MNIST digits were asked for but no MNIST copy was given.")
    train = mnist.train
    order = torch.randperm(len(train), generator=split_generator(seed, "partition"))
    held = len(train) // 6
    val_idx, train_idx = order[:held], order[held:]
    test = MnistDigits(mnist.test.images, mnist.test.labels)
    return {
        "train": MnistDigits(train.images[train_idx], train.labels[train_idx]),
        "val": MnistDigits(train.images[val_idx], train.labels[val_idx]),
        "test": test,
        "pool": test,
    }


def split_generator(seed: int, stream: str) -> torch.Generator:
    """An independent, seeded generator per (seed, stream) via numpy's SeedSequence."""
    words = np.random.SeedSequence([seed, STREAMS[stream]]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(words[0]) << 31 | int(words[1]) >> 1)


def compose(cells: Tensor, height: int, width: int) -> Tensor:
    """(N, d, 28, 28) digit cells in [0, 1] -> uint8 (N, 1, H, W): the trimmed cells side by
    side (N, 1, 28, d·22), resized with antialiased bilinear interpolation."""
    n, d = cells.shape[:2]
    strip = cells[..., TRIM : CELL - TRIM]
    strip = strip.permute(0, 2, 1, 3).reshape(n, 1, CELL, d * (CELL - 2 * TRIM))
    out = F.interpolate(strip, size=(height, width), mode="bilinear", antialias=True)
    return out.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def synthesize_split(
    num_classes: int,
    shape: tuple[int, int, int],
    per_class: int,
    bank: DigitBank,
    generator: torch.Generator,
    chunk: int = 4096,
) -> ImageSplit:
    """``per_class`` images of every class, grouped by class, of ``shape`` = (channels, H, W).

    The random numbers are consumed chunk by chunk in a fixed order: same generator state, same
    images."""
    channels, height, width = shape
    d = num_digits(num_classes)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    digits = class_digits(labels, d)
    images = torch.empty(len(labels), 1, height, width, dtype=torch.uint8)
    for start in range(0, len(labels), chunk):
        part = digits[start : start + chunk]
        cells = bank.cells(part.reshape(-1), generator).view(len(part), d, CELL, CELL)
        images[start : start + len(part)] = compose(cells, height, width)
    images = images.expand(len(labels), channels, height, width)
    return ImageSplit(images, labels, class_names(num_classes))


def resolve_digits(
    digits: str, data_dir: str | Path | None = None, download: bool = False
) -> tuple[str, RawDataset | None]:
    """("mnist", the data) or ("procedural", None) for ``digits`` = auto, mnist or procedural."""
    if digits not in DIGIT_SOURCES:
        raise UserError(f"digits must be one of {', '.join(DIGIT_SOURCES)}, got {digits!r}.")
    if digits == "procedural":
        return "procedural", None
    mnist = find_mnist(data_dir, download=download and digits == "mnist")
    if mnist is not None:
        return "mnist", mnist
    if digits == "mnist":
        raise UserError(
            "MNIST digits were asked for (digits=mnist) but no MNIST copy was found; pass "
            "--data-dir DIR or set REFFAKD_DATA=DIR with DIR/mnist/, or use digits=auto."
        )
    return "procedural", None


def synthesize(
    num_classes: int,
    shape: tuple[int, int, int] = (1, 32, 32),
    *,
    sizes: SplitSizes | None = None,
    seed: int = 0,
    digits: str = "auto",
    data_dir: str | Path | None = None,
    mnist: RawDataset | None = None,
    jitter: Jitter | None = None,
) -> DataSplits:
    """The synthesized train/val/test splits for C classes at ``shape`` = (channels, H, W).

    ``digits``: ``auto`` (MNIST if found, else procedural), ``mnist`` or ``procedural``;
    ``mnist`` may hand over an already loaded copy. ``DataSplits.source`` says which was used.
    """
    sizes = sizes or SplitSizes.default(num_classes)
    if mnist is not None and digits != "procedural":
        kind = "mnist"
    else:
        kind, mnist = resolve_digits(digits, data_dir)
    banks = digit_banks(kind, mnist, seed, jitter)
    parts = {
        name: synthesize_split(
            num_classes, shape, getattr(sizes, name), banks[name], split_generator(seed, name)
        )
        for name in ("train", "val", "test")
    }
    where = f"mnist digits from {mnist.source}" if kind == "mnist" and mnist else kind
    return DataSplits(f"synth-digits-{num_classes}", **parts, source=f"synthesized ({where})")
