"""Readers for the on-disk dataset formats.

Supported: IDX (MNIST, Fashion-MNIST; gzipped or raw), the official CIFAR-10 / CIFAR-100 python
pickles (extracted or inside their ``.tar.gz``), class-per-folder image trees (a folder, or a
``.tar``/``.tar.gz``/``.zip`` of ``train/<class>/`` and ``test/<class>/``) and the Tiny ImageNet
layout. Every reader returns uint8 images of shape (N, C, H, W) and int64 labels wrapped in
:class:`ImageSplit` / :class:`RawDataset`. Problems with the files raise :class:`DataError` with
a one-line message that names the file and says how to fix it.

Decoding image files is slow, so the folder, archive and Tiny ImageNet readers keep the decoded
arrays in a cache (one ``.npz`` per source, keyed by the source's paths, sizes and modification
times). A cache file that cannot be read is ignored and rebuilt.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from reffakd.data.dataset import ImageSplit, RawDataset
from reffakd.data.image_modes import to_uint8
from reffakd.errors import DataError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
FIX_HINT = "delete it and re-download, or point --data-dir/REFFAKD_DATA at a good copy"
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SPLIT_FOLDERS = ("train", "test")
CACHE_VERSION = 2  # bump whenever decoding changes what a cached source holds


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _corrupt(where: object, problem: str) -> DataError:
    return DataError(_one_line(f"{where}: {problem}; {FIX_HINT}."))


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)


def _read_maybe_gzip(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic bytes."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(_one_line(f"cannot read {path}: {err.strerror or err}")) from err
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise _corrupt(path, f"bad or truncated gzip data ({err})") from err


def _parse_idx(path: Path, magic: int, ndim: int) -> tuple[list[int], np.ndarray]:
    data = _read_maybe_gzip(path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(path, f"only {len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = "images" if magic == IDX_IMAGES_MAGIC else "labels"
        raise _corrupt(path, f"magic number {found}, expected {magic} (IDX {kind}); wrong file")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        shape = "x".join(map(str, dims))
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise _corrupt(
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


# ---------------------------------------------------------------------------------------------
# Directories and archives as read-only trees of files


def _is_hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _is_image(rel: str) -> bool:
    return os.path.splitext(rel)[1].lower() in IMAGE_EXTENSIONS and not _is_hidden(rel)


class _Tree:
    """A directory or an archive seen as relative POSIX paths -> bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release open handles."""

    def files(self) -> list[str]:
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def identity(self) -> str:
        """A string that changes whenever the content may have changed."""
        stat = self.path.stat()
        return f"{self.path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"

    def describe(self, rel: str) -> str:
        return f"{rel} in {self.path}"

    def missing(self, rel: str) -> DataError:
        return DataError(f"{self.describe(rel)} is missing; the dataset is incomplete, {FIX_HINT}.")


class _DirTree(_Tree):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._stats: dict[str, tuple[int, int]] | None = None

    def _scan(self) -> dict[str, tuple[int, int]]:
        if self._stats is None:
            stats = {}
            for dirpath, dirnames, filenames in os.walk(self.path, followlinks=True):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                base = Path(dirpath).relative_to(self.path).as_posix()
                for filename in filenames:
                    if filename.startswith("."):
                        continue
                    rel = filename if base == "." else f"{base}/{filename}"
                    stat = os.stat(os.path.join(dirpath, filename))
                    stats[rel] = (stat.st_size, stat.st_mtime_ns)
            self._stats = dict(sorted(stats.items()))
        return self._stats

    def files(self) -> list[str]:
        return list(self._scan())

    def read(self, rel: str) -> bytes:
        try:
            return (self.path / rel).read_bytes()
        except FileNotFoundError:
            raise self.missing(rel) from None
        except OSError as err:
            raise DataError(_one_line(f"cannot read {self.describe(rel)}: {err}")) from err

    def identity(self) -> str:
        digest = hashlib.sha256()
        for rel, (size, mtime) in self._scan().items():
            digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
        return f"dir\0{digest.hexdigest()}"

    def describe(self, rel: str) -> str:
        return str(self.path / rel)


def _member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


class _TarTree(_Tree):
    """A tar archive, read in one sequential pass (fast for compressed tars)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._members: dict[str, bytes] | None = None

    def _load(self) -> dict[str, bytes]:
        if self._members is None:
            members = {}
            try:
                with tarfile.open(self.path, "r:*") as tar:
                    for member in tar:
                        name = _member_name(member.name)
                        if member.isfile() and not _is_hidden(name):
                            members[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
            except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
                raise _corrupt(self.path, f"unreadable or truncated archive ({err})") from err
            self._members = dict(sorted(members.items()))
        return self._members

    def files(self) -> list[str]:
        return list(self._load())

    def read(self, rel: str) -> bytes:
        try:
            return self._load()[rel]
        except KeyError:
            raise self.missing(rel) from None


class _ZipTree(_Tree):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise _corrupt(path, f"unreadable zip archive ({err})") from err

    def close(self) -> None:
        self._zip.close()

    def files(self) -> list[str]:
        names = (_member_name(info.filename) for info in self._zip.infolist() if not info.is_dir())
        return sorted(name for name in names if not _is_hidden(name))

    def read(self, rel: str) -> bytes:
        try:
            return self._zip.read(rel)
        except KeyError:
            raise self.missing(rel) from None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            raise _corrupt(self.describe(rel), f"damaged archive member ({err})") from err


def _open_tree(path: PathLike) -> _Tree:
    """Open a directory, tar (any compression) or zip archive as a tree of files."""
    path = Path(path)
    if path.is_dir():
        return _DirTree(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; check --data-dir/REFFAKD_DATA.")
    if zipfile.is_zipfile(path):
        return _ZipTree(path)
    try:
        is_tar = tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        is_tar = False
    if is_tar:
        return _TarTree(path)
    raise _corrupt(path, "neither a directory nor a readable tar or zip archive")


def _find_prefix(tree: _Tree, filename: str) -> str | None:
    """The folder prefix ("" or "top/") of the shallowest file called ``filename``."""
    hits = [rel for rel in tree.files() if rel.rsplit("/", 1)[-1] == filename]
    if not hits:
        return None
    best = min(hits, key=lambda rel: (rel.count("/"), rel))
    return best[: len(best) - len(filename)]


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 python pickles


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
        raise _corrupt(where, f"not a readable CIFAR pickle ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise _corrupt(where, f"expected a dict in the CIFAR pickle, found {type(obj).__name__}")
    return obj


def _pickle_value(batch: dict, key: str, where: str) -> object:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise _corrupt(where, f"the CIFAR pickle has no {key!r} entry")


def _cifar_batch(tree: _Tree, rel: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    where = tree.describe(rel)
    batch = _load_pickle(tree.read(rel), where)
    data = np.asarray(_pickle_value(batch, "data", where))
    labels = np.asarray(_pickle_value(batch, label_key, where), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _corrupt(where, f"'data' should be uint8 (N, 3072), found {data.dtype} {data.shape}")
    if labels.shape != (len(data),):
        raise _corrupt(where, f"{len(data)} images but {labels.size} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_names(tree: _Tree, rel: str, key: str) -> list[str]:
    where = tree.describe(rel)
    names = _pickle_value(_load_pickle(tree.read(rel), where), key, where)
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]  # type: ignore[union-attr]


def _cifar_split(
    tree: _Tree, rels: Iterable[str], label_key: str, class_names: list[str]
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
    with _open_tree(path) as tree:
        prefix = _find_prefix(tree, meta)
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


# ---------------------------------------------------------------------------------------------
# Image decoding


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
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(
            _one_line(
                f"cannot decode image {where} ({err}); replace or delete that file, {FIX_HINT}"
            )
        ) from err


def _decode_all(tree: _Tree, rels: Sequence[str]) -> list[np.ndarray]:
    """Decode one by one; for small images Pillow's work is mostly Python, so threads don't help."""
    return [_decode_image(tree.read(rel), tree.describe(rel)) for rel in rels]


def _stack(arrays: Sequence[np.ndarray], rgb: bool) -> torch.Tensor:
    if rgb:
        arrays = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
        stacked = np.stack(arrays).transpose(0, 3, 1, 2)
    else:
        stacked = np.stack(arrays)[:, None]
    return torch.from_numpy(np.ascontiguousarray(stacked))


def _decode_splits(
    tree: _Tree, splits: Sequence[Sequence[str]], force_rgb: bool = False
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


# ---------------------------------------------------------------------------------------------
# Decode cache


@dataclass
class _Decoded:
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
    def from_npz(cls, npz: np.lib.npyio.NpzFile) -> _Decoded:
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
    from reffakd.data.catalog import user_cache_dir  # catalog imports this module

    return user_cache_dir() / "decoded"


def cache_file(kind: str, tree: _Tree, cache_dir: PathLike | None) -> Path:
    key = hashlib.sha256(f"{CACHE_VERSION}\0{kind}\0{tree.identity()}".encode()).hexdigest()
    return (
        Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{kind}-{key[:32]}.npz"
    )


def _cache_load(path: Path) -> _Decoded | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return _Decoded.from_npz(npz)
    except Exception as err:  # any damage to the cache just means decoding again
        log.warning("ignoring unreadable decode cache %s (%s); rebuilding it", path, err)
        return None


def _cache_store(path: Path, decoded: _Decoded) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, **decoded.to_arrays())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as err:
        log.warning("could not write decode cache %s (%s); continuing without it", path, err)


def _cached(
    kind: str,
    tree: _Tree,
    cache_dir: PathLike | None,
    use_cache: bool,
    build: Callable[[], _Decoded],
) -> _Decoded:
    if not use_cache:
        return build()
    path = cache_file(kind, tree, cache_dir)
    decoded = _cache_load(path)
    if decoded is None:
        decoded = build()
        _cache_store(path, decoded)
    return decoded


# ---------------------------------------------------------------------------------------------
# Class-per-folder images


def _labelled(
    entries: Iterable[tuple[str, str]], classes: list[str], by_class: bool = True
) -> tuple[list[str], torch.Tensor]:
    """Sort (class, rel) pairs by class order then path (or by path only); paths and labels."""
    index = {name: i for i, name in enumerate(classes)}
    key = (lambda e: (index[e[0]], e[1])) if by_class else (lambda e: e[1])
    ordered = sorted(entries, key=key)
    labels = torch.tensor([index[c] for c, _ in ordered], dtype=torch.int64)
    return [rel for _, rel in ordered], labels


def _build_class_folder(tree: _Tree) -> _Decoded:
    entries = [
        (rel.split("/")[0], rel) for rel in tree.files() if _is_image(rel) and rel.count("/") == 1
    ]
    if not entries:
        raise DataError(f"no images found in {tree.path}; expected <folder>/<class>/<image files>.")
    classes = sorted({c for c, _ in entries})
    rels, labels = _labelled(entries, classes)
    (images,) = _decode_splits(tree, [rels])
    return _Decoded({"all": ImageSplit(images, labels, classes)})


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
    with _DirTree(root) as tree:
        return _cached(
            "folder", tree, cache_dir, use_cache, lambda: _build_class_folder(tree)
        ).splits["all"]


def _split_entries(tree: _Tree) -> dict[str, list[tuple[str, str]]]:
    """(class, rel) pairs per split for ``[top/]{train,test}/<class>/<image>``."""
    images = [rel.split("/") for rel in tree.files() if _is_image(rel)]
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


def _build_split_folders(tree: _Tree) -> _Decoded:
    entries = _split_entries(tree)
    classes = sorted({cls for items in entries.values() for cls, _ in items})
    ordered = {split: _labelled(items, classes) for split, items in entries.items()}
    images = _decode_splits(tree, [rels for rels, _ in ordered.values()])
    return _Decoded(
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
    with _open_tree(path) as tree:
        decoded = _cached("splits", tree, cache_dir, use_cache, lambda: _build_split_folders(tree))
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


# ---------------------------------------------------------------------------------------------
# Tiny ImageNet


def _text(tree: _Tree, rel: str) -> list[str]:
    try:
        return tree.read(rel).decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise _corrupt(tree.describe(rel), f"not UTF-8 text ({err})") from err


def _tiny_class_names(tree: _Tree, prefix: str, wnids: list[str]) -> list[str]:
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


def _build_tiny_imagenet(tree: _Tree) -> _Decoded:
    prefix = _find_prefix(tree, "wnids.txt")
    if prefix is None:
        raise DataError(f"{tree.path}: no wnids.txt; expected the tiny-imagenet-200/ layout.")
    wnids = [line.strip() for line in _text(tree, prefix + "wnids.txt") if line.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    files = tree.files()
    train = []
    for rel in files:
        parts = rel[len(prefix) :].split("/")
        if rel.startswith(prefix + "train/") and len(parts) == 4 and _is_image(rel):
            if parts[1] not in index:
                raise _corrupt(tree.describe(rel), f"class {parts[1]} is not listed in wnids.txt")
            train.append((parts[1], rel))
    annotations = {}
    for line in _text(tree, prefix + "val/val_annotations.txt"):
        fields = line.split("\t")
        if len(fields) >= 2:
            annotations[fields[0]] = fields[1]
    val = []
    for rel in files:
        if rel.startswith(prefix + "val/images/") and _is_image(rel):
            wnid = annotations.get(rel.rsplit("/", 1)[-1])
            if wnid not in index:
                raise _corrupt(tree.describe(rel), "no valid entry in val/val_annotations.txt")
            val.append((wnid, rel))
    if not train or not val:
        raise DataError(f"{tree.path}: no train/<wnid>/images/ or val/images/ images; {FIX_HINT}.")
    train_rels, train_labels = _labelled(train, wnids)
    val_rels, val_labels = _labelled(val, wnids, by_class=False)
    train_images, val_images = _decode_splits(tree, [train_rels, val_rels], force_rgb=True)
    names = _tiny_class_names(tree, prefix, wnids)
    return _Decoded(
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
    with _open_tree(path) as tree:
        decoded = _cached(
            "tiny-imagenet", tree, cache_dir, use_cache, lambda: _build_tiny_imagenet(tree)
        )
    return RawDataset(
        "tiny-imagenet",
        decoded.splits["train"],
        decoded.splits["test"],
        source=str(path),
        extra={"wnids": decoded.extra.get("wnids", [])},
    )
