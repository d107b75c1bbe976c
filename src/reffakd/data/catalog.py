"""The known datasets: their specs, where to look for them and how to download them.

:func:`load_dataset` searches, in order, the ``--data-dir`` folder, ``$REFFAKD_DATA`` (several
folders may be joined with ``os.pathsep``), the download folder ``user_cache_dir()/"datasets"``
and the system folders ``/usr/share/datasets`` and ``/usr/local/share/datasets``. In each of them
it looks in the subfolders named by the spec's ``folder_names`` and then in the folder itself. The
first usable copy is read. If none is found the dataset is downloaded (with checksum verification)
into ``user_cache_dir()/"datasets"/<name>/``, unless ``download=False`` or the environment sets
``REFFAKD_NO_DOWNLOAD=1``.

The ``imagefolder`` dataset reads whatever ``--data-dir`` points at: a folder with ``train/`` and
``test/`` class folders, a tar or zip archive of them, or a single ``<root>/<class>/`` folder. In
the last case a stratified 20% of the images, chosen with the fixed seed
``IMAGEFOLDER_TEST_SEED``, is held out as the test split.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reffakd.data.dataset import RawDataset, hold_out_validation
from reffakd.data.readers import (
    PathLike,
    idx_files,
    read_cifar10,
    read_cifar100,
    read_idx_dataset,
    read_image_folder,
    read_split_folders,
    read_tiny_imagenet,
)
from reffakd.errors import DataError, UserError
from reffakd.registry import Registry

log = logging.getLogger(__name__)

ENV_DATA = "REFFAKD_DATA"
ENV_CACHE = "REFFAKD_CACHE"
ENV_NO_DOWNLOAD = "REFFAKD_NO_DOWNLOAD"
SYSTEM_ROOTS: tuple[Path, ...] = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))
DOWNLOAD_TIMEOUT_S = 20.0
IMAGEFOLDER_TEST_FRACTION = 0.2
IMAGEFOLDER_TEST_SEED = 0
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")


def user_cache_dir() -> Path:
    """``$REFFAKD_CACHE``, else ``$XDG_CACHE_HOME/reffakd``, else ``~/.cache/reffakd``."""
    override = os.environ.get(ENV_CACHE)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "reffakd"


@dataclass(frozen=True)
class Found:
    """A usable copy of a dataset and the function that reads it (given a cache dir)."""

    path: Path
    read: Callable[[PathLike | None], RawDataset]


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
    datasets leave the image fields None.
    """

    name: str
    num_classes: int | None
    in_channels: int | None
    native_size: int | None
    default_image_size: int | None
    class_names: list[str] | None = None
    aesl_boost: float = 0.008
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


DATASETS: Registry[DatasetSpec] = Registry("dataset", autoload=("reffakd.data.text_catalog",))


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; unknown names raise UserError listing known ones."""
    return DATASETS.get(name)


# ---------------------------------------------------------------------------------------------
# Probes: does this path hold a usable copy?


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _archives(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if _is_archive(p) and not p.name.startswith("."))


def _official_elsewhere(archive: Path, own_stem: str) -> bool:
    """Whether ``archive`` is another dataset's official download (never class folders)."""
    stems = ("cifar-10-python", "cifar-100-python", "tiny-imagenet-200")
    return any(archive.name.startswith(s + ".") for s in stems if s != own_stem)


def _split_folders_found(path: Path, name: str) -> Found:
    return Found(path, lambda cache_dir: read_split_folders(path, name, cache_dir))


def _has_split_folders(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _idx_probe(name: str, class_names: list[str]) -> Probe:
    def probe(path: Path, dedicated: bool) -> Found | None:
        if not path.is_dir():
            return None
        files = idx_files(path)
        if not any(files.values()):
            return None
        return Found(path, lambda cache_dir: read_idx_dataset(name, path, class_names))

    return probe


def _cifar_probe(
    name: str,
    official: str,
    archive_stem: str,
    markers: tuple[str, ...],
    read_pickles: Callable[[PathLike], RawDataset],
    name_pattern: str,
) -> Probe:
    """Probe for the official pickles (``official`` folder, or ``archive_stem.tar.gz``) or for
    train/ and test/ class folders (a folder or an archive).

    Archives of class folders are accepted in a folder dedicated to the dataset, or anywhere
    when their file name matches ``name_pattern``.
    """
    pattern = re.compile(name_pattern, re.IGNORECASE)

    def archive(path: Path) -> Found:
        if path.name.startswith(archive_stem):
            return Found(path, lambda cache_dir: read_pickles(path))
        return _split_folders_found(path, name)

    def probe(path: Path, dedicated: bool) -> Found | None:
        if path.is_file():
            return archive(path) if dedicated and _is_archive(path) else None
        for folder in (path, path / official):
            if all((folder / marker).is_file() for marker in markers):
                return Found(folder, lambda cache_dir, f=folder: read_pickles(f))
        for suffix in (".tar.gz", ".tgz", ".tar"):
            if (path / (archive_stem + suffix)).is_file():
                return archive(path / (archive_stem + suffix))
        if dedicated and _has_split_folders(path):
            return _split_folders_found(path, name)
        archives = [a for a in _archives(path) if not _official_elsewhere(a, archive_stem)]
        matching = [a for a in archives if pattern.match(a.name)]
        others = [a for a in archives if dedicated and a not in matching]
        candidates = matching + others
        return archive(candidates[0]) if candidates else None

    return probe


def _tiny_probe(path: Path, dedicated: bool) -> Found | None:
    def found(p: Path) -> Found:
        return Found(p, lambda cache_dir: read_tiny_imagenet(p, cache_dir))

    if path.is_file():
        return found(path) if dedicated and _is_archive(path) else None
    for folder in (path, path / "tiny-imagenet-200"):
        if (folder / "wnids.txt").is_file():
            return found(folder)
    for suffix in (".zip", ".tar.gz", ".tar"):
        if (path / f"tiny-imagenet-200{suffix}").is_file():
            return found(path / f"tiny-imagenet-200{suffix}")
    return None


def _read_single_folder(path: Path, cache_dir: PathLike | None) -> RawDataset:
    """One ``<root>/<class>/`` folder: hold out a seeded, stratified 20% as the test split."""
    everything = read_image_folder(path, cache_dir)
    whole = RawDataset("imagefolder", everything, everything, source=str(path))
    parts = hold_out_validation(whole, IMAGEFOLDER_TEST_FRACTION, IMAGEFOLDER_TEST_SEED)
    return RawDataset(
        "imagefolder",
        parts.train,
        parts.val,
        source=str(path),
        extra={
            "test_split": f"held out {IMAGEFOLDER_TEST_FRACTION:.0%}, seed {IMAGEFOLDER_TEST_SEED}"
        },
    )


def _imagefolder_probe(path: Path, dedicated: bool) -> Found | None:
    if path.is_file():
        return _split_folders_found(path, "imagefolder") if _is_archive(path) else None
    if _has_split_folders(path):
        return _split_folders_found(path, "imagefolder")
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return Found(path, lambda cache_dir: _read_single_folder(path, cache_dir))
    return None


# ---------------------------------------------------------------------------------------------
# Registered datasets

_CIFAR_AUGMENT = {"crop_padding": 4, "flip": True, "rotation": 15}
_IDX_EXPECTS = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
_IDX_EXPECTS += "and t10k-labels-idx1-ubyte.gz (or the same files uncompressed)"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
MNIST_CLASSES = [str(d) for d in range(10)]


def _idx_downloads(base: str, md5s: list[str]) -> list[tuple[str, str, str]]:
    names = [
        f"{stem}.gz"
        for stem in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ]
    return [(base + n, n, md5) for n, md5 in zip(names, md5s, strict=True)]


for _spec in (
    DatasetSpec(
        name="fashion-mnist",
        num_classes=10,
        in_channels=1,
        native_size=28,
        default_image_size=32,
        class_names=FASHION_MNIST_CLASSES,
        aesl_boost=0.008,
        augment={"crop_padding": 0, "flip": True, "rotation": 15},
        folder_names=["fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"],
        downloads=_idx_downloads(
            _FASHION_URL,
            [
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ],
        ),
        expects=_IDX_EXPECTS,
        install_hint="run apt-get install dataset-fashion-mnist",
        probe=_idx_probe("fashion-mnist", FASHION_MNIST_CLASSES),
    ),
    DatasetSpec(
        name="mnist",
        num_classes=10,
        in_channels=1,
        native_size=28,
        default_image_size=32,
        class_names=MNIST_CLASSES,
        aesl_boost=0.008,
        augment={"crop_padding": 0, "flip": False, "rotation": 15},
        folder_names=["mnist", "MNIST", "MNIST/raw"],
        downloads=_idx_downloads(
            _MNIST_URL,
            [
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ],
        ),
        expects=_IDX_EXPECTS,
        probe=_idx_probe("mnist", MNIST_CLASSES),
    ),
    DatasetSpec(
        name="cifar10",
        num_classes=10,
        in_channels=3,
        native_size=32,
        default_image_size=32,
        class_names=CIFAR10_CLASSES,
        aesl_boost=0.008,
        augment=dict(_CIFAR_AUGMENT),
        folder_names=["cifar10", "cifar-10", "CIFAR10", "CIFAR-10"],
        downloads=[
            (
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
            )
        ],
        expects="cifar-10-batches-py/, cifar-10-python.tar.gz, or a tar or folder with "
        "train/<class>/ and test/<class>/ images",
        probe=_cifar_probe(
            "cifar10",
            "cifar-10-batches-py",
            "cifar-10-python",
            ("batches.meta", "data_batch_1", "test_batch"),
            read_cifar10,
            r"cifar-?10(?!\d)",
        ),
    ),
    DatasetSpec(
        name="cifar100",
        num_classes=100,
        in_channels=3,
        native_size=32,
        default_image_size=32,
        aesl_boost=0.0225,
        augment=dict(_CIFAR_AUGMENT),
        folder_names=["cifar100", "cifar-100", "CIFAR100", "CIFAR-100"],
        downloads=[
            (
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
            )
        ],
        expects="cifar-100-python/, cifar-100-python.tar.gz, or a tar or folder with "
        "train/<class>/ and test/<class>/ images",
        probe=_cifar_probe(
            "cifar100",
            "cifar-100-python",
            "cifar-100-python",
            ("meta", "train", "test"),
            read_cifar100,
            r"cifar-?100(?!\d)",
        ),
    ),
    DatasetSpec(
        name="tiny-imagenet",
        num_classes=200,
        in_channels=3,
        native_size=64,
        default_image_size=64,
        aesl_boost=0.0225,
        augment={"crop_padding": 0, "flip": True, "rotation": 15},
        folder_names=["tiny-imagenet", "tiny-imagenet-200", "tiny_imagenet", "TinyImageNet"],
        downloads=[
            (
                "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                "tiny-imagenet-200.zip",
                "90528d7ca1a48142e341f4ef8d21d0de",
            )
        ],
        expects="tiny-imagenet-200/ (wnids.txt, train/, val/) or tiny-imagenet-200.zip",
        probe=_tiny_probe,
    ),
    DatasetSpec(
        name="imagefolder",
        num_classes=None,
        in_channels=None,
        native_size=None,
        default_image_size=None,
        augment={"crop_padding": 0, "flip": True, "rotation": 15},
        expects="train/<class>/ and test/<class>/ image folders, a tar or zip of them, "
        "or <class>/ folders (20% then held out as test)",
        probe=_imagefolder_probe,
        explicit_only=True,
    ),
):
    DATASETS.add(_spec.name, _spec)


# ---------------------------------------------------------------------------------------------
# Searching


def _roots(data_dir: PathLike | None) -> list[tuple[Path, str]]:
    """Search roots in order, each with where it came from."""
    roots: list[tuple[Path, str]] = []
    if data_dir is not None:
        roots.append((Path(data_dir).expanduser(), "--data-dir"))
    for entry in os.environ.get(ENV_DATA, "").split(os.pathsep):
        if entry:
            roots.append((Path(entry).expanduser(), f"${ENV_DATA}"))
    roots.append((user_cache_dir() / "datasets", "download folder"))
    roots.extend((root, "system") for root in SYSTEM_ROOTS)
    seen: set[Path] = set()
    unique = []
    for root, origin in roots:
        if root not in seen:
            seen.add(root)
            unique.append((root, origin))
    return unique


def candidate_roots(data_dir: PathLike | None = None) -> list[Path]:
    """The folders searched, in order: data_dir, $REFFAKD_DATA, the download folder, system."""
    return [root for root, _ in _roots(data_dir)]


def _places(spec: DatasetSpec, root: Path, explicit: bool) -> list[tuple[Path, bool]]:
    """Paths to probe under one root, each with whether it is dedicated to the dataset."""
    if spec.explicit_only:
        return [(root, True)]
    return [(root / name, True) for name in spec.folder_names] + [(root, explicit)]


def locate(spec: DatasetSpec, data_dir: PathLike | None = None) -> Found | None:
    """The first usable copy of the dataset in the search order, or None."""
    assert spec.probe is not None
    for root, origin in _roots(data_dir):
        explicit = origin == "--data-dir"
        if spec.explicit_only and not explicit:
            continue
        for path, dedicated in _places(spec, root, explicit):
            try:
                found = spec.probe(path, dedicated) if path.exists() else None
            except PermissionError as err:
                log.warning("skipping %s: %s", path, err)
                continue
            if found is not None:
                return found
    return None


def _not_found(spec: DatasetSpec, data_dir: PathLike | None, problem: str) -> DataError:
    roots = _roots(data_dir)
    if spec.explicit_only:
        roots = [r for r in roots if r[1] == "--data-dir"]
    places = ", ".join(
        f"{root} ({origin}{'' if root.exists() else ', missing'})" for root, origin in roots
    )
    where = (
        f"looked in {places} and in their subfolders {', '.join(spec.folder_names)}"
        if spec.folder_names
        else f"looked in {places}"
    )
    how = f"pass --data-dir DIR or set {ENV_DATA}=DIR, where DIR holds {spec.expects}"
    if spec.install_hint:
        how += f", or {spec.install_hint}"
    text = f"{spec.name} not found: {where}; {problem}. To provide it, {how}."
    return DataError(" ".join(text.split()))


# ---------------------------------------------------------------------------------------------
# Downloading


class _DownloadFailed(Exception):
    """The network or the server failed; reported as part of the not-found message."""


def _downloads_disabled() -> bool:
    return os.environ.get(ENV_NO_DOWNLOAD, "").strip().lower() not in ("", "0", "false", "no")


def _hasher(checksum: str) -> Any:
    """sha256 for a 64-digit checksum, else md5."""
    return hashlib.sha256() if len(checksum) == 64 else hashlib.md5(usedforsecurity=False)


def _checksum(path: Path, like: str) -> str:
    """The checksum of ``path``, of the same kind as ``like``."""
    digest = _hasher(like)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, checksum: str) -> None:
    """Download ``url`` to ``dest`` via a temporary file, verifying its checksum."""
    log.info("downloading %s", url)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}-", suffix=".part")
    try:
        digest = _hasher(checksum)
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        ):
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
        if digest.hexdigest() != checksum:
            raise DataError(
                f"checksum mismatch for {url}: {digest.name} {digest.hexdigest()}, expected "
                f"{checksum}; the download was deleted. Try again later, or fetch the data by hand "
                f"and pass --data-dir DIR or set {ENV_DATA}=DIR."
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise _DownloadFailed(f"downloading {url} failed ({reason})") from err
    finally:
        Path(tmp).unlink(missing_ok=True)


def _extract(archive: Path, target: Path) -> None:
    """Unpack a tar or zip archive into ``target``, replacing what was unpacked before."""
    log.info("extracting %s", archive)
    staging = Path(tempfile.mkdtemp(dir=target, prefix=".extract-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        for entry in staging.iterdir():
            dest = target / entry.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(entry, dest)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DataError(
            " ".join(f"cannot extract {archive} ({err}); delete it and run again.".split())
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_dataset(spec: DatasetSpec) -> Path:
    """Download (and unpack) a dataset into ``user_cache_dir()/"datasets"/<name>/``."""
    target = user_cache_dir() / "datasets" / spec.name
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _DownloadFailed(f"cannot create {target} ({err})") from err
    for url, filename, checksum in spec.downloads:
        dest = target / filename
        if not (dest.is_file() and _checksum(dest, checksum) == checksum):
            _fetch(url, dest, checksum)
        if _is_archive(dest):
            _extract(dest, target)
    return target


# ---------------------------------------------------------------------------------------------
# Loading


def _check(spec: DatasetSpec, raw: RawDataset, path: Path) -> None:
    """Catch a copy of the wrong dataset (e.g. MNIST files in a Fashion-MNIST folder)."""
    found = {
        "classes": raw.num_classes,
        "channels": raw.train.shape[0],
        "pixels per side": raw.train.shape[1],
    }
    expected = {
        "classes": spec.num_classes,
        "channels": spec.in_channels,
        "pixels per side": spec.native_size,
    }
    for what, value in expected.items():
        if value is not None and found[what] != value:
            raise DataError(
                f"{spec.name}: {path} has {found[what]} {what}, expected {value}; it is not a "
                f"copy of {spec.name}, point --data-dir/{ENV_DATA} at the right data."
            )


def load_dataset(
    name: str,
    data_dir: PathLike | None = None,
    download: bool = True,
    cache_dir: PathLike | None = None,
) -> RawDataset:
    """Find (or download) and read a dataset's official train and test splits.

    ``cache_dir`` is where decoded image files are cached (default
    ``user_cache_dir()/"decoded"``). Raises :class:`DataError` when the data cannot be found or
    is damaged, with a message naming every place searched.
    """
    spec = get_spec(name)
    if spec.explicit_only and data_dir is None:
        raise UserError(
            f"dataset {name!r} reads only from --data-dir DIR; DIR holds {spec.expects}."
        )
    found = locate(spec, data_dir)
    if found is None:
        found = _download_and_locate(spec, data_dir, download)
    raw = found.read(cache_dir)
    if spec.modality == "image":
        _check(spec, raw, found.path)
    raw.name = spec.name
    raw.source = str(found.path)
    return raw


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def _download_and_locate(spec: DatasetSpec, data_dir: PathLike | None, allowed: bool) -> Found:
    if not spec.downloads:
        raise _not_found(spec, data_dir, "it cannot be downloaded automatically")
    if not allowed:
        raise _not_found(spec, data_dir, "downloading was not requested")
    if _downloads_disabled():
        raise _not_found(spec, data_dir, f"downloading is disabled by {ENV_NO_DOWNLOAD}=1")
    try:
        target = download_dataset(spec)
    except _DownloadFailed as err:
        _remove_if_empty(user_cache_dir() / "datasets" / spec.name)
        raise _not_found(spec, data_dir, str(err)) from err
    assert spec.probe is not None
    found = spec.probe(target, True)
    if found is None:
        raise DataError(
            f"{spec.name}: downloaded into {target} but found no usable data there; delete that "
            "folder and try again."
        )
    return found
