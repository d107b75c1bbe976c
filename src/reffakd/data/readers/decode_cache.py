"""The decode cache: decoded image arrays kept as one ``.npz`` per source.

Decoding image files is slow, so the folder, archive and Tiny ImageNet readers keep the decoded
arrays in a cache keyed by the source's paths, sizes and modification times. A cache file that
cannot be read is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reffakd.data.dataset import ImageSplit
from reffakd.data.paths import user_cache_dir
from reffakd.data.readers.archive import Tree
from reffakd.data.readers.common import PathLike
from reffakd.files import new_file_mode

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump whenever decoding changes what a cached source holds


@dataclass
class Decoded:
    """What the decode cache stores: named splits sharing class names, plus string lists."""

    splits: dict[str, ImageSplit]
    extra: dict[str, list[str]] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        first = next(iter(self.splits.values()))
        arrays = {
            "split_names": np.array(list(self.splits), dtype=str),
            "class_names": np.array(first.class_names, dtype=str),
            "extra_names": np.array(list(self.extra), dtype=str),
        }
        for name, split in self.splits.items():
            arrays[f"{name}_images"] = split.images.numpy()
            arrays[f"{name}_labels"] = split.labels.numpy()
        for key, values in self.extra.items():
            arrays[f"extra_{key}"] = np.array(values, dtype=str)
        return arrays

    @classmethod
    def from_npz(cls, npz: np.lib.npyio.NpzFile) -> Decoded:
        class_names = [str(n) for n in npz["class_names"]]
        splits = {
            str(name): ImageSplit(
                torch.from_numpy(npz[f"{name}_images"]),
                torch.from_numpy(npz[f"{name}_labels"]),
                list(class_names),
            )
            for name in npz["split_names"]
        }
        extra = {str(k): [str(v) for v in npz[f"extra_{k}"]] for k in npz["extra_names"]}
        return cls(splits, extra)


def default_cache_dir() -> Path:
    """Where decoded arrays are cached unless a reader is given ``cache_dir``."""
    return user_cache_dir() / "decoded"


def cache_file(kind: str, tree: Tree, cache_dir: PathLike | None) -> Path:
    key = hashlib.sha256(f"{CACHE_VERSION}\0{kind}\0{tree.identity()}".encode()).hexdigest()
    return (
        Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{kind}-{key[:32]}.npz"
    )


def _cache_load(path: Path) -> Decoded | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return Decoded.from_npz(npz)
    except Exception as err:  # any damage to the cache just means decoding again
        log.warning("ignoring unreadable decode cache %s (%s); rebuilding it", path, err)
        return None


def _cache_store(path: Path, decoded: Decoded) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        os.fchmod(fd, new_file_mode())
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, **decoded.to_arrays())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as err:
        log.warning("could not write decode cache %s (%s); continuing without it", path, err)


def cached(
    kind: str,
    tree: Tree,
    cache_dir: PathLike | None,
    use_cache: bool,
    build: Callable[[], Decoded],
) -> Decoded:
    if not use_cache:
        return build()
    path = cache_file(kind, tree, cache_dir)
    decoded = _cache_load(path)
    if decoded is None:
        decoded = build()
        _cache_store(path, decoded)
    return decoded
