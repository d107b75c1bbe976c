"""The built-in datasets: their specs, and the probes that recognise a usable copy on disk.

The ``imagefolder`` dataset reads whatever ``--data-dir`` points at: a folder with ``train/`` and
``test/`` class folders, a tar or zip archive of them, or a single ``<root>/<class>/`` folder. In
the last case a stratified 20% of the images, chosen with the fixed seed
``IMAGEFOLDER_TEST_SEED``, is held out as the test split.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

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
from reffakd.data.readers.archive import is_archive_file, is_image
from reffakd.data.spec import DATASETS, DatasetSpec, Found, Probe
from reffakd.errors import DataError

IMAGEFOLDER_TEST_FRACTION = 0.2
IMAGEFOLDER_TEST_SEED = 0


def _archives(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if is_archive_file(p) and not p.name.startswith(".")
    )


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
            return archive(path) if dedicated and is_archive_file(path) else None
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
        return found(path) if dedicated and is_archive_file(path) else None
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
        return _split_folders_found(path, "imagefolder") if is_archive_file(path) else None
    if _has_split_folders(path):
        return _split_folders_found(path, "imagefolder")
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return Found(path, lambda cache_dir: _read_single_folder(path, cache_dir))
    images = any(p.is_file() and is_image(p.name) for p in path.iterdir())
    raise DataError(
        f"{path} holds {'images but ' if images else ''}no class folders; imagefolder takes one "
        f"folder per class: {path}/train/<class>/ and {path}/test/<class>/, or {path}/<class>/ "
        "(20% then held out as test), or a tar or zip of them. Put each class's images in a "
        "folder named after the class."
    )


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


# The student schedules `reffakd train` uses when not told: those of the fmnist and cifar10
# suites (docs/results/); CIFAR-100 and Tiny ImageNet keep the paper's 200 epochs.
_SMALL_RECIPE = {"epochs": 10, "lr": 0.05, "milestones": [6, 8]}
_CIFAR10_RECIPE = {"epochs": 30, "milestones": [15, 25]}

for _spec in (
    DatasetSpec(
        name="fashion-mnist",
        recipe=_SMALL_RECIPE,
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
        recipe=_SMALL_RECIPE,
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
        recipe=_CIFAR10_RECIPE,
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
        recipe=_CIFAR10_RECIPE,
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
