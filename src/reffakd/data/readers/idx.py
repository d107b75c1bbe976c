"""IDX files (MNIST, Fashion-MNIST), gzipped or raw."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reffakd.data.dataset import ImageSplit, RawDataset
from reffakd.data.readers.common import FIX_HINT, PathLike, corrupt
from reffakd.errors import DataError
from reffakd.files import read_regular

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_maybe_gzip(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic bytes."""
    data = read_regular(path, "IDX file")
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise corrupt(path, f"bad or truncated gzip data ({err})") from err


def _parse_idx(path: Path, magic: int, ndim: int) -> tuple[list[int], np.ndarray]:
    data = _read_maybe_gzip(path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise corrupt(path, f"only {len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = "images" if magic == IDX_IMAGES_MAGIC else "labels"
        raise corrupt(path, f"magic number {found}, expected {magic} (IDX {kind}); wrong file")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        shape = "x".join(map(str, dims))
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise corrupt(
            path,
            f"header declares {shape} ({expected} bytes) but the data is {len(data)} bytes, {what}",
        )
    return dims, np.frombuffer(data, dtype=np.uint8, offset=header)


def read_idx_images(path: PathLike) -> torch.Tensor:
    """Read an IDX image file (magic 2051), gzipped or raw, as uint8 (N, 1, H, W)."""
    (n, height, width), pixels = _parse_idx(Path(path), IDX_IMAGES_MAGIC, 3)
    return torch.from_numpy(pixels.reshape(n, 1, height, width).copy())


def read_idx_labels(path: PathLike) -> torch.Tensor:
    """Read an IDX label file (magic 2049), gzipped or raw, as int64 (N,)."""
    _, labels = _parse_idx(Path(path), IDX_LABELS_MAGIC, 1)
    return torch.from_numpy(labels.astype(np.int64))


def idx_files(directory: PathLike) -> dict[str, Path | None]:
    """The four standard IDX files in ``directory`` (raw or ``.gz``; ``-idx`` or ``.idx``).

    Keys are ``train_images``, ``train_labels``, ``test_images``, ``test_labels``; a missing
    file maps to None.
    """
    directory = Path(directory)
    found: dict[str, Path | None] = {}
    for key, stem in IDX_STEMS.items():
        names = (
            stem,
            stem + ".gz",
            stem.replace("-idx", ".idx"),
            stem.replace("-idx", ".idx") + ".gz",
        )
        found[key] = next((directory / n for n in names if (directory / n).is_file()), None)
    return found


def read_idx_dataset(name: str, directory: PathLike, class_names: Sequence[str]) -> RawDataset:
    """Read the four standard IDX files of an MNIST-style dataset from ``directory``."""
    files = idx_files(directory)
    missing = [IDX_STEMS[key] for key, path in files.items() if path is None]
    if missing:
        raise DataError(
            f"{name}: {directory} lacks {', '.join(missing)} (raw or .gz); "
            "re-download the dataset or point --data-dir/REFFAKD_DATA at a complete copy."
        )
    splits = {}
    for split in ("train", "test"):
        images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
        images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
        if len(images) != len(labels):
            raise DataError(
                f"{name}: {images_path} holds {len(images)} images but {labels_path} holds "
                f"{len(labels)} labels; the files do not belong together, {FIX_HINT}."
            )
        splits[split] = ImageSplit(images, labels, list(class_names))
    return RawDataset(name, splits["train"], splits["test"], source=str(directory))
