"""What the project knows about a dataset before reading it: :class:`DatasetSpec`.

Specs live in the :data:`DATASETS` registry; the built-in ones are registered by
:mod:`reffakd.data.catalog` (images) and :mod:`reffakd.data.text_catalog` (text), which the
registry imports on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reffakd.data.dataset import RawDataset
from reffakd.data.readers.common import PathLike
from reffakd.data.text import RawTextDataset
from reffakd.registry import Registry


@dataclass(frozen=True)
class Found:
    """A usable copy of a dataset and the function that reads it (given a cache dir)."""

    path: Path
    read: Callable[[PathLike | None], RawDataset | RawTextDataset]


Probe = Callable[[Path, bool], "Found | None"]


@dataclass
class DatasetSpec:
    """Static facts about a dataset and how to obtain it.

    ``num_classes``, ``in_channels``, ``native_size`` and ``default_image_size`` are None for
    ``imagefolder``, where they come from the data (models then train at the native size).
    ``augment`` has ``crop_padding`` (pixels of padding for a random crop at the training size;
    0 means no crop), ``flip`` (random horizontal flip) and ``rotation`` (max degrees).
    ``downloads`` lists (url, filename, checksum of that file): an md5, or a sha256 where only
    that is published (told apart by length). ``modality`` is ``image`` or ``text``; text
    datasets leave the image fields None. ``recipe``: the student schedule (``optim`` keys)
    that ``reffakd train`` uses for the keys its command line leaves out; empty: the reference
    recipe (200 epochs, see :class:`reffakd.config.OptimConfig`).
    """

    name: str
    num_classes: int | None
    in_channels: int | None
    native_size: int | None
    default_image_size: int | None
    class_names: list[str] | None = None
    aesl_boost: float = 0.008
    aesl_temperature: float = 1.0
    max_len: int | None = None  # text: default padded length (None: see default_max_len)
    augment: dict[str, Any] = field(
        default_factory=lambda: {"crop_padding": 0, "flip": True, "rotation": 15}
    )
    folder_names: list[str] = field(default_factory=list)
    downloads: list[tuple[str, str, str]] = field(default_factory=list)
    expects: str = ""
    install_hint: str = ""
    probe: Probe | None = field(default=None, repr=False, compare=False)
    explicit_only: bool = False
    modality: str = "image"
    recipe: dict[str, Any] = field(default_factory=dict)


DATASETS: Registry[DatasetSpec] = Registry(
    "dataset",
    autoload=("reffakd.data.catalog", "reffakd.data.text_catalog"),
    entry_points="reffakd.datasets",
)


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; unknown names raise UserError listing known ones."""
    return DATASETS.get(name)
