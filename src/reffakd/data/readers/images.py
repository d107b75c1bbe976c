"""Image files: decoding, and class-per-folder trees (a folder, or an archive of one).

Every image becomes uint8 (H, W) or (H, W, 3); a dataset is grayscale when all its images are,
RGB otherwise, and all images of a dataset must have the same size.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from reffakd.data.dataset import ImageSplit, RawDataset
from reffakd.data.readers.archive import DirTree, Tree, is_image, open_tree
from reffakd.data.readers.common import FIX_HINT, PathLike, one_line
from reffakd.data.readers.decode_cache import Decoded, cached
from reffakd.data.readers.image_modes import to_uint8
from reffakd.errors import DataError, UserError

log = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "test")

_FORMAT_HINTS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pnm": "PPM",
}


def _open_image(data: bytes, where: str) -> Image.Image:
    """Open with the format the extension suggests (faster), else let Pillow detect it."""
    hint = _FORMAT_HINTS.get(os.path.splitext(where)[1].lower())
    if hint is not None:
        try:
            return Image.open(io.BytesIO(data), formats=[hint])
        except UnidentifiedImageError:
            pass
    return Image.open(io.BytesIO(data))


def _decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode one image to (H, W) uint8 for grayscale sources, (H, W, 3) otherwise."""
    try:
        with _open_image(data, where) as img:
            return to_uint8(img, where)
    except UserError:  # already names the file and the fix (a ValueError too)
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(
            one_line(
                f"cannot decode image {where} ({err}); replace or delete that file, {FIX_HINT}"
            )
        ) from err


def _decode_all(tree: Tree, rels: Sequence[str]) -> list[np.ndarray]:
    """Decode one by one; for small images Pillow's work is mostly Python, so threads don't help."""
    return [_decode_image(tree.read(rel), tree.describe(rel)) for rel in rels]


def _stack(arrays: Sequence[np.ndarray], rgb: bool) -> torch.Tensor:
    if rgb:
        arrays = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
        stacked = np.stack(arrays).transpose(0, 3, 1, 2)
    else:
        stacked = np.stack(arrays)[:, None]
    return torch.from_numpy(np.ascontiguousarray(stacked))


def decode_splits(
    tree: Tree, splits: Sequence[Sequence[str]], force_rgb: bool = False
) -> list[torch.Tensor]:
    """Decode several lists of images with one shared size and channel count.

    All images become grayscale (1 channel) if every one of them is grayscale, RGB otherwise.
    """
    rels = [rel for split in splits for rel in split]
    log.info("decoding %d images from %s", len(rels), tree.path)
    arrays = _decode_all(tree, rels)
    size = arrays[0].shape[:2]
    for rel, array in zip(rels, arrays, strict=True):
        if array.shape[:2] != size:
            raise DataError(
                f"{tree.describe(rel)} is {array.shape[1]}x{array.shape[0]} pixels but "
                f"{tree.describe(rels[0])} is {size[1]}x{size[0]}; all images must have the same "
                "size, resize or remove the odd ones."
            )
    rgb = force_rgb or any(array.ndim == 3 for array in arrays)
    tensors, start = [], 0
    for split in splits:
        tensors.append(_stack(arrays[start : start + len(split)], rgb))
        start += len(split)
    return tensors


def labelled(
    entries: Iterable[tuple[str, str]], classes: list[str], by_class: bool = True
) -> tuple[list[str], torch.Tensor]:
    """Sort (class, rel) pairs by class order then path (or by path only); paths and labels."""
    index = {name: i for i, name in enumerate(classes)}
    key = (lambda e: (index[e[0]], e[1])) if by_class else (lambda e: e[1])
    ordered = sorted(entries, key=key)
    labels = torch.tensor([index[c] for c, _ in ordered], dtype=torch.int64)
    return [rel for _, rel in ordered], labels


def _build_class_folder(tree: Tree) -> Decoded:
    entries = [
        (rel.split("/")[0], rel) for rel in tree.files() if is_image(rel) and rel.count("/") == 1
    ]
    if not entries:
        raise DataError(f"no images found in {tree.path}; expected <folder>/<class>/<image files>.")
    classes = sorted({c for c, _ in entries})
    rels, labels = labelled(entries, classes)
    (images,) = decode_splits(tree, [rels])
    return Decoded({"all": ImageSplit(images, labels, classes)})


def read_image_folder(
    root: PathLike, cache_dir: PathLike | None = None, use_cache: bool = True
) -> ImageSplit:
    """Read ``<root>/<class>/<image>`` into one split.

    Classes are the sorted names of the subfolders that hold images; images are sorted by name
    within a class. Images become grayscale if all of them are, RGB otherwise, and must all have
    the same size.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; expected <folder>/<class>/<image files>.")
    with DirTree(root) as tree:
        return cached(
            "folder", tree, cache_dir, use_cache, lambda: _build_class_folder(tree)
        ).splits["all"]


def _split_entries(tree: Tree) -> dict[str, list[tuple[str, str]]]:
    """(class, rel) pairs per split for ``[top/]{train,test}/<class>/<image>``."""
    images = [rel.split("/") for rel in tree.files() if is_image(rel)]
    prefixes = {p[0] for p in images if len(p) == 4 and p[1] in SPLIT_FOLDERS}
    depth = 3 if any(len(p) == 3 and p[0] in SPLIT_FOLDERS for p in images) else 4
    if depth == 4 and len(prefixes) != 1:
        found = "several top folders" if prefixes else "none"
        raise DataError(
            f"{tree.path}: expected train/<class>/<images> and test/<class>/<images>, optionally "
            f"under one top folder; found {found}."
        )
    entries: dict[str, list[tuple[str, str]]] = {split: [] for split in SPLIT_FOLDERS}
    for parts in images:
        if len(parts) == depth and (depth == 3 or parts[0] in prefixes):
            split, cls = parts[-3], parts[-2]
            if split in entries:
                entries[split].append((cls, "/".join(parts)))
    for split, items in entries.items():
        if not items:
            raise DataError(
                f"{tree.path}: no images under {split}/<class>/; both splits are needed."
            )
    return entries


def _build_split_folders(tree: Tree) -> Decoded:
    entries = _split_entries(tree)
    classes = sorted({cls for items in entries.values() for cls, _ in items})
    ordered = {split: labelled(items, classes) for split, items in entries.items()}
    images = decode_splits(tree, [rels for rels, _ in ordered.values()])
    return Decoded(
        {
            split: ImageSplit(img, ordered[split][1], classes)
            for split, img in zip(ordered, images, strict=True)
        }
    )


def read_split_folders(
    path: PathLike,
    name: str = "imagefolder",
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
) -> RawDataset:
    """Read ``train/<class>/*`` and ``test/<class>/*`` from a folder, tar or zip archive.

    Inside an archive the two folders may sit under one top folder; other files (a README) are
    ignored. Classes are the sorted union of the class folder names of both splits.
    """
    with open_tree(path) as tree:
        decoded = cached("splits", tree, cache_dir, use_cache, lambda: _build_split_folders(tree))
    return RawDataset(name, decoded.splits["train"], decoded.splits["test"], source=str(path))


def read_image_tar(
    path: PathLike,
    name: str = "imagefolder",
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
) -> RawDataset:
    """Read a ``.tar``/``.tar.gz`` of ``train/<class>/`` and ``test/<class>/`` folders."""
    if not Path(path).is_file():
        raise DataError(f"{path} is not an archive file; check --data-dir/REFFAKD_DATA.")
    return read_split_folders(path, name, cache_dir, use_cache)
