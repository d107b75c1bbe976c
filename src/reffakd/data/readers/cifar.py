"""The official CIFAR-10 / CIFAR-100 python pickles (extracted, or inside their archive)."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable

import numpy as np
import torch

from reffakd.data.dataset import ImageSplit, RawDataset
from reffakd.data.readers.archive import Tree, find_prefix, open_tree
from reffakd.data.readers.common import PathLike, corrupt
from reffakd.errors import DataError


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays, so a tampered pickle cannot run code."""

    _ALLOWED = frozenset(
        (module, name)
        for module in (
            "numpy",
            "numpy.core.multiarray",
            "numpy._core.multiarray",
            "numpy.core.numeric",
            "numpy._core.numeric",
        )
        for name in ("_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer")
    ) | {("_codecs", "encode"), ("builtins", "bytes"), ("builtins", "bytearray")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def _load_pickle(data: bytes, where: str) -> dict:
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # truncated or damaged pickles fail in many different ways
        raise corrupt(where, f"not a readable CIFAR pickle ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise corrupt(where, f"expected a dict in the CIFAR pickle, found {type(obj).__name__}")
    return obj


def _pickle_value(batch: dict, key: str, where: str) -> object:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise corrupt(where, f"the CIFAR pickle has no {key!r} entry")


def _cifar_batch(tree: Tree, rel: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    where = tree.describe(rel)
    batch = _load_pickle(tree.read(rel), where)
    data = np.asarray(_pickle_value(batch, "data", where))
    labels = _integer_array(_pickle_value(batch, label_key, where), label_key, where)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise corrupt(where, f"'data' should be uint8 (N, 3072), found {data.dtype} {data.shape}")
    if labels.shape != (len(data),):
        raise corrupt(where, f"{len(data)} images but {labels.size} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _integer_array(value: object, key: str, where: str) -> np.ndarray:
    """Labels as int64, refusing floats, text and anything else that is not whole numbers."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise corrupt(where, f"{key!r} is not an array of integers ({err})") from err
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.ndim == 1):
        raise corrupt(where, f"{key!r} should hold integer labels, found {array.dtype} values")
    return array.astype(np.int64)


def _cifar_names(tree: Tree, rel: str, key: str) -> list[str]:
    where = tree.describe(rel)
    names = _pickle_value(_load_pickle(tree.read(rel), where), key, where)
    if not isinstance(names, list | tuple) or not all(isinstance(n, bytes | str) for n in names):
        raise corrupt(where, f"{key!r} should be a list of class names, found {_kind(names)}")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


def _kind(value: object) -> str:
    return type(value).__name__ if not isinstance(value, list | tuple) else "a list of other values"


def _cifar_split(
    tree: Tree, rels: Iterable[str], label_key: str, class_names: list[str]
) -> ImageSplit:
    parts = [_cifar_batch(tree, rel, label_key) for rel in rels]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels), list(class_names))


def _read_cifar(
    path: PathLike,
    name: str,
    meta: str,
    names_key: str,
    label_key: str,
    train: list[str],
    test: str,
) -> RawDataset:
    with open_tree(path) as tree:
        prefix = find_prefix(tree, meta)
        if prefix is None:
            raise DataError(
                f"{name}: no {meta} found in {path}; expected the official python version "
                f"({', '.join(train + [test, meta])}); re-download it or fix "
                "--data-dir/REFFAKD_DATA."
            )
        class_names = _cifar_names(tree, prefix + meta, names_key)
        train_split = _cifar_split(tree, [prefix + r for r in train], label_key, class_names)
        test_split = _cifar_split(tree, [prefix + test], label_key, class_names)
    return RawDataset(name, train_split, test_split, source=str(path))


def read_cifar10(path: PathLike) -> RawDataset:
    """Read CIFAR-10 from ``cifar-10-batches-py/`` (or a folder or tar holding it)."""
    train = [f"data_batch_{i}" for i in range(1, 6)]
    return _read_cifar(
        path, "cifar10", "batches.meta", "label_names", "labels", train, "test_batch"
    )


def read_cifar100(path: PathLike) -> RawDataset:
    """Read CIFAR-100 (fine labels) from ``cifar-100-python/`` (or a folder or tar holding it)."""
    return _read_cifar(
        path, "cifar100", "meta", "fine_label_names", "fine_labels", ["train"], "test"
    )
