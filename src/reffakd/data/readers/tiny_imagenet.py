"""Tiny ImageNet: the ``tiny-imagenet-200/`` layout (a folder, zip or tar holding it)."""

from __future__ import annotations

from reffakd.data.dataset import ImageSplit, RawDataset
from reffakd.data.readers.archive import Tree, find_prefix, is_image, open_tree
from reffakd.data.readers.common import FIX_HINT, PathLike, corrupt
from reffakd.data.readers.decode_cache import Decoded, cached
from reffakd.data.readers.images import decode_splits, labelled
from reffakd.errors import DataError


def _text(tree: Tree, rel: str) -> list[str]:
    try:
        return tree.read(rel).decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise corrupt(tree.describe(rel), f"not UTF-8 text ({err})") from err


def _tiny_class_names(tree: Tree, prefix: str, wnids: list[str]) -> list[str]:
    """Readable names (first synonym in ``words.txt``), wnids where missing or ambiguous."""
    if prefix + "words.txt" not in tree.files():
        return list(wnids)
    wanted, words = set(wnids), {}
    for line in _text(tree, prefix + "words.txt"):
        wnid, _, text = line.partition("\t")
        if wnid in wanted:
            words[wnid] = text.split(",")[0].strip()
    names = [words.get(w) or w for w in wnids]
    counts = {n: names.count(n) for n in names}
    return [n if counts[n] == 1 else f"{n} ({w})" for n, w in zip(names, wnids, strict=True)]


def _build_tiny_imagenet(tree: Tree) -> Decoded:
    prefix = find_prefix(tree, "wnids.txt")
    if prefix is None:
        raise DataError(f"{tree.path}: no wnids.txt; expected the tiny-imagenet-200/ layout.")
    wnids = [line.strip() for line in _text(tree, prefix + "wnids.txt") if line.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    files = tree.files()
    train = []
    for rel in files:
        parts = rel[len(prefix) :].split("/")
        if rel.startswith(prefix + "train/") and len(parts) == 4 and is_image(rel):
            if parts[1] not in index:
                raise corrupt(tree.describe(rel), f"class {parts[1]} is not listed in wnids.txt")
            train.append((parts[1], rel))
    annotations = {}
    for line in _text(tree, prefix + "val/val_annotations.txt"):
        fields = line.split("\t")
        if len(fields) >= 2:
            annotations[fields[0]] = fields[1]
    val = []
    for rel in files:
        if rel.startswith(prefix + "val/images/") and is_image(rel):
            wnid = annotations.get(rel.rsplit("/", 1)[-1])
            if wnid not in index:
                raise corrupt(tree.describe(rel), "no valid entry in val/val_annotations.txt")
            val.append((wnid, rel))
    if not train or not val:
        raise DataError(f"{tree.path}: no train/<wnid>/images/ or val/images/ images; {FIX_HINT}.")
    train_rels, train_labels = labelled(train, wnids)
    val_rels, val_labels = labelled(val, wnids, by_class=False)
    train_images, val_images = decode_splits(tree, [train_rels, val_rels], force_rgb=True)
    names = _tiny_class_names(tree, prefix, wnids)
    return Decoded(
        {
            "train": ImageSplit(train_images, train_labels, names),
            "test": ImageSplit(val_images, val_labels, names),
        },
        {"wnids": wnids},
    )


def read_tiny_imagenet(
    path: PathLike, cache_dir: PathLike | None = None, use_cache: bool = True
) -> RawDataset:
    """Read Tiny ImageNet from ``tiny-imagenet-200/`` (or a folder, zip or tar holding it).

    Class order is the line order of ``wnids.txt``; class names come from ``words.txt`` when
    present. The official validation split (labels in ``val/val_annotations.txt``) is returned
    as the test split; the unlabelled official test split is not used. Grayscale JPEGs are
    converted to RGB.
    """
    with open_tree(path) as tree:
        decoded = cached(
            "tiny-imagenet", tree, cache_dir, use_cache, lambda: _build_tiny_imagenet(tree)
        )
    return RawDataset(
        "tiny-imagenet",
        decoded.splits["train"],
        decoded.splits["test"],
        source=str(path),
        extra={"wnids": decoded.extra.get("wnids", [])},
    )
