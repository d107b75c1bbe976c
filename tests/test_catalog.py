"""Dataset catalog: specs, search order, not-found messages and checksum-verified downloads."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reffakd.data import (
    DATASETS,
    DatasetSpec,
    catalog,
    get_spec,
    load_dataset,
    paths,
    user_cache_dir,
)
from reffakd.data.readers.archive import ARCHIVE_SUFFIXES
from reffakd.data.text_catalog import load_text_dataset
from reffakd.errors import DataError, UserError

REAL_DATA = os.environ.get("REFFAKD_DATA")
# tarfile write modes by the last part of an archive suffix
TAR_MODES = {"gz": "gz", "tgz": "gz", "bz2": "bz2", "tbz2": "bz2", "xz": "xz", "txz": "xz"}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real data, no downloads, caches and 'system' folders inside tmp_path."""
    monkeypatch.delenv("REFFAKD_DATA", raising=False)
    monkeypatch.setenv("REFFAKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REFFAKD_NO_DOWNLOAD", "1")
    monkeypatch.setattr(paths, "SYSTEM_ROOTS", (tmp_path / "system",))
    return tmp_path


def one_line(err: pytest.ExceptionInfo[Exception]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def write_idx(directory: Path, n_train: int, n_test: int = 2) -> None:
    """The four gzipped IDX files of an MNIST-style dataset with ``n_train`` images."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = struct.pack(">IIII", 2051, n, 28, 28) + bytes(n * 28 * 28)
        labels = struct.pack(">II", 2049, n) + bytes(i % 10 for i in range(n))
        (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
        (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))


def write_class_folders(root: Path, classes: list[str], per_class: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / cls / f"{i}.png")


def write_split_tar(archive: Path, classes: list[str], size: int = 32) -> Path:
    staging = archive.parent / f"{archive.name}-staging"
    write_class_folders(staging / "train", classes, 2, size)
    write_class_folders(staging / "test", classes, 1, size)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(staging / split, arcname=split)
    return archive


def write_cifar10_pickles(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"labels": [1, 7], b"data": np.full((2, 3072), 3, dtype=np.uint8)}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [n.encode() for n in catalog.CIFAR10_CLASSES]}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Specs and registry


def test_specs() -> None:
    assert set(DATASETS.names()) == {
        "fashion-mnist",
        "mnist",
        "cifar10",
        "cifar100",
        "tiny-imagenet",
        "imagefolder",
        "sst2",
        "agnews",
        "mr",
        "textfile",
    }
    fashion = get_spec("fashion-mnist")
    assert isinstance(fashion, DatasetSpec)
    assert (fashion.num_classes, fashion.in_channels, fashion.native_size) == (10, 1, 28)
    assert fashion.default_image_size == 32 and fashion.aesl_boost == 0.008
    assert fashion.augment == {"crop_padding": 0, "flip": True, "rotation": 15}
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert get_spec("mnist").augment["flip"] is False
    assert get_spec("cifar10").augment == {"crop_padding": 4, "flip": True, "rotation": 15}
    assert get_spec("cifar100").aesl_boost == 0.0225
    tiny = get_spec("tiny-imagenet")
    assert (tiny.num_classes, tiny.default_image_size, tiny.aesl_boost) == (200, 64, 0.0225)
    assert tiny.augment["crop_padding"] == 0
    for spec in (get_spec(n) for n in DATASETS.names() if not get_spec(n).explicit_only):
        assert spec.downloads and all(len(c) in (32, 64) for _, _, c in spec.downloads)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt"]
FASHION_CLASSES += ["Sneaker", "Bag", "Ankle boot"]


@pytest.mark.parametrize(
    ("name", "shape", "class_names"),
    [
        # (num_classes, in_channels, native_size, default_image_size)
        ("fashion-mnist", (10, 1, 28, 32), FASHION_CLASSES),
        ("mnist", (10, 1, 28, 32), [str(d) for d in range(10)]),
        ("cifar10", (10, 3, 32, 32), catalog.CIFAR10_CLASSES),
        ("cifar100", (100, 3, 32, 32), []),  # read from the copy's meta file
        ("tiny-imagenet", (200, 3, 64, 64), []),  # read from the copy's wnids.txt
        ("imagefolder", (None, None, None, None), []),  # all from the folders
    ],
)
def test_image_spec_entries(
    name: str, shape: tuple[int | None, ...], class_names: list[str]
) -> None:
    spec = get_spec(name)
    assert spec.name == name and spec.modality == "image"
    assert (spec.num_classes, spec.in_channels, spec.native_size, spec.default_image_size) == shape
    assert (spec.class_names or []) == class_names


def test_cifar10_class_names_are_the_official_order() -> None:
    assert catalog.CIFAR10_CLASSES == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]


IDX_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


@pytest.mark.parametrize(
    ("name", "files", "checksums"),
    [
        # the md5s published by zalandoresearch/fashion-mnist and used by torchvision
        (
            "fashion-mnist",
            IDX_FILES,
            ["8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe"]
            + ["bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"],
        ),
        (
            "mnist",
            IDX_FILES,
            ["f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432"]
            + ["9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"],
        ),
        # the md5s on the CIFAR page and in torchvision
        ("cifar10", ["cifar-10-python.tar.gz"], ["c58f30108f718f92721af3b95e74349a"]),
        ("cifar100", ["cifar-100-python.tar.gz"], ["eb9058c3a382ffc7106e4002c42a8d85"]),
        ("tiny-imagenet", ["tiny-imagenet-200.zip"], ["90528d7ca1a48142e341f4ef8d21d0de"]),
    ],
)
def test_official_downloads(name: str, files: list[str], checksums: list[str]) -> None:
    downloads = get_spec(name).downloads
    assert [filename for _, filename, _ in downloads] == files
    assert [checksum for _, _, checksum in downloads] == checksums
    assert all(url.endswith("/" + filename) for url, filename, _ in downloads)


def test_idx_copy_is_read_pixel_and_label_exact(tmp_path: Path) -> None:
    write_idx(tmp_path / "flag" / "mnist", n_train=12, n_test=3)
    raw = load_dataset("mnist", data_dir=tmp_path / "flag")
    assert raw.train.images.shape == (12, 1, 28, 28) and raw.train.images.dtype == torch.uint8
    assert raw.train.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert raw.test.labels.tolist() == [0, 1, 2] and int(raw.train.images.max()) == 0
    assert raw.class_names == [str(d) for d in range(10)] and raw.num_classes == 10


def test_unknown_dataset_is_a_user_error() -> None:
    with pytest.raises(UserError) as err:
        load_dataset("fashion-mnits")
    assert not isinstance(err.value, DataError)
    message = one_line(err)
    assert "fashion-mnist" in message and "cifar100" in message


def test_user_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert user_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("REFFAKD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "reffakd"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir() == tmp_path / "home" / ".cache" / "reffakd"


def test_candidate_roots_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFFAKD_DATA", f"{tmp_path / 'env1'}{os.pathsep}{tmp_path / 'env2'}")
    assert paths.candidate_roots(tmp_path / "flag") == [
        tmp_path / "flag",
        tmp_path / "env1",
        tmp_path / "env2",
        tmp_path / "cache" / "datasets",
        tmp_path / "system",
    ]
    monkeypatch.delenv("REFFAKD_DATA")
    assert paths.candidate_roots() == [tmp_path / "cache" / "datasets", tmp_path / "system"]


# ---------------------------------------------------------------------------------------------
# Searching


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx(tmp_path / "flag" / "fashion-mnist", n_train=3)
    write_idx(tmp_path / "env" / "fashion_mnist", n_train=4)
    write_idx(tmp_path / "cache" / "datasets" / "fashion-mnist", n_train=5)
    write_idx(tmp_path / "system" / "fashion-mnist", n_train=6)
    monkeypatch.setenv("REFFAKD_DATA", str(tmp_path / "env"))
    raw = load_dataset("fashion-mnist", data_dir=tmp_path / "flag")
    assert len(raw.train) == 3 and raw.source == str(tmp_path / "flag" / "fashion-mnist")
    assert len(load_dataset("fashion-mnist").train) == 4
    monkeypatch.delenv("REFFAKD_DATA")
    assert len(load_dataset("fashion-mnist").train) == 5
    (tmp_path / "cache" / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError):  # an incomplete copy is reported, not skipped
        load_dataset("fashion-mnist")
    for path in (tmp_path / "cache" / "datasets" / "fashion-mnist").iterdir():
        path.unlink()
    raw = load_dataset("fashion-mnist")
    assert len(raw.train) == 6 and raw.name == "fashion-mnist"
    assert raw.class_names == get_spec("fashion-mnist").class_names


@pytest.mark.parametrize("sub", ["", "fashion-mnist", "FashionMNIST/raw"])
def test_folder_names_and_root_itself(tmp_path: Path, sub: str) -> None:
    write_idx(tmp_path / "flag" / sub, n_train=3)
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path / "flag").train) == 3


def test_data_dir_without_data_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "flag").mkdir()
    write_idx(tmp_path / "env" / "mnist", n_train=4)
    monkeypatch.setenv("REFFAKD_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist", data_dir=tmp_path / "flag").train) == 4


def test_not_found_names_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFFAKD_DATA", str(tmp_path / "env"))
    (tmp_path / "env").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path / "flag")
    message = one_line(err)
    places = [tmp_path / "flag", tmp_path / "env", tmp_path / "cache" / "datasets"]
    places.append(tmp_path / "system")
    positions = [message.index(str(p)) for p in places]
    assert positions == sorted(positions)
    for hint in ("--data-dir", "REFFAKD_DATA=", "apt-get install dataset-fashion-mnist"):
        assert hint in message
    assert "REFFAKD_NO_DOWNLOAD" in message and "FashionMNIST" in message


def test_not_found_without_download_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFFAKD_NO_DOWNLOAD")
    with pytest.raises(DataError) as err:
        load_dataset("mnist", download=False)
    message = one_line(err)
    assert "not requested" in message and "apt-get" not in message


def test_corrupt_copy_is_reported(tmp_path: Path) -> None:
    write_idx(tmp_path / "flag" / "mnist", n_train=3)
    labels = tmp_path / "flag" / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-8])
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path / "flag")
    assert str(labels) in one_line(err)


def test_cifar10_tar_of_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_split_tar(tmp_path / "env" / "cifar10" / "whatever.tar.gz", catalog.CIFAR10_CLASSES)
    monkeypatch.setenv("REFFAKD_DATA", str(tmp_path / "env"))
    raw = load_dataset("cifar10", cache_dir=tmp_path / "decoded")
    assert raw.train.images.shape == (20, 3, 32, 32) and raw.test.images.shape == (10, 3, 32, 32)
    assert raw.class_names == catalog.CIFAR10_CLASSES
    assert raw.source.endswith("whatever.tar.gz")


def test_cifar10_archive_names_at_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFFAKD_DATA", str(tmp_path / "env"))
    write_split_tar(tmp_path / "env" / "unrelated.tar.gz", catalog.CIFAR10_CLASSES)
    with pytest.raises(DataError):
        load_dataset("cifar10")
    (tmp_path / "env" / "unrelated.tar.gz").rename(tmp_path / "env" / "cifar10-jpg.tar.gz")
    assert len(load_dataset("cifar10").train) == 20


def test_cifar10_official_pickles_and_data_dir_file(tmp_path: Path) -> None:
    write_cifar10_pickles(tmp_path / "flag" / "cifar-10-batches-py")
    raw = load_dataset("cifar10", data_dir=tmp_path / "flag")
    assert raw.train.images.shape == (10, 3, 32, 32) and raw.test.labels.tolist() == [1, 7]
    assert raw.train.labels.tolist() == [1, 7] * 5 and raw.train.images.unique().tolist() == [3]
    archive = write_split_tar(tmp_path / "other" / "c10.tar.gz", catalog.CIFAR10_CLASSES)
    assert len(load_dataset("cifar10", data_dir=archive).test) == 10


def test_cifar10_official_archive_read_in_place(tmp_path: Path) -> None:
    write_cifar10_pickles(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "env" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    raw = load_dataset("cifar10", data_dir=tmp_path / "env")
    assert raw.source == str(archive) and len(raw.train) == 10


def test_wrong_dataset_is_reported(tmp_path: Path) -> None:
    write_split_tar(tmp_path / "flag" / "cifar10" / "c.tar.gz", ["cat", "dog", "emu"])
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=tmp_path / "flag")
    assert "3 classes, expected 10" in one_line(err)


def test_cifar100_official_folder(tmp_path: Path) -> None:
    directory = tmp_path / "flag" / "cifar-100-python"
    directory.mkdir(parents=True)
    names = {b"fine_label_names": [f"c{i}".encode() for i in range(100)]}
    (directory / "meta").write_bytes(pickle.dumps(names, protocol=2))
    for split, n in (("train", 4), ("test", 2)):
        batch = {b"fine_labels": list(range(n)), b"data": np.zeros((n, 3072), np.uint8)}
        (directory / split).write_bytes(pickle.dumps(batch, protocol=2))
    raw = load_dataset("cifar100", data_dir=tmp_path / "flag")
    assert raw.num_classes == 100 and len(raw.train) == 4


def test_tiny_imagenet_layout(tmp_path: Path) -> None:
    root = tmp_path / "flag" / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(200)]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    pixels = np.zeros((64, 64, 3), np.uint8)
    for wnid in wnids:
        (root / "train" / wnid / "images").mkdir(parents=True)
        Image.fromarray(pixels).save(root / "train" / wnid / "images" / f"{wnid}_0.JPEG")
    for i in range(3):
        Image.fromarray(pixels).save(root / "val" / "images" / f"val_{i}.JPEG")
    lines = [f"val_{i}.JPEG\t{wnids[i * 50]}\t0\t0\t63\t63" for i in range(3)]
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    raw = load_dataset("tiny-imagenet", data_dir=tmp_path / "flag", cache_dir=tmp_path / "dec")
    assert raw.train.images.shape == (200, 3, 64, 64)
    assert raw.test.labels.tolist() == [0, 50, 100]
    assert raw.class_names == wnids  # no words.txt: class names are the wnids


@pytest.mark.parametrize("suffix", ARCHIVE_SUFFIXES)
def test_text_archives_of_every_reader_format(tmp_path: Path, suffix: str) -> None:
    """The text catalog takes the archive formats of readers.archive, .tbz2 and .txz too."""
    source = tmp_path / "src" / "rt-polaritydata"
    source.mkdir(parents=True)
    for polarity in ("pos", "neg"):
        lines = "".join(f"{polarity} {i}\n" for i in range(10))
        (source / f"rt-polarity.{polarity}").write_text(lines, encoding="latin-1")
    archive = tmp_path / "flag" / "mr" / f"rt-polaritydata{suffix}"
    archive.parent.mkdir(parents=True)
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for path in source.iterdir():
                zf.write(path, f"rt-polaritydata/{path.name}")
    else:
        with tarfile.open(archive, "w:" + TAR_MODES.get(suffix.rsplit(".", 1)[-1], "")) as tar:
            tar.add(source, arcname="rt-polaritydata")
    for data_dir in (tmp_path / "flag", archive):
        raw = load_text_dataset("mr", data_dir=data_dir)
        assert raw.source == str(archive)
        assert sorted(raw.train.texts + raw.test.texts) == sorted(
            f"{p} {i}" for p in ("pos", "neg") for i in range(10)
        )


# ---------------------------------------------------------------------------------------------
# imagefolder


def test_imagefolder_needs_data_dir() -> None:
    with pytest.raises(UserError) as err:
        load_dataset("imagefolder")
    assert "--data-dir" in one_line(err)


def test_imagefolder_split_folders_and_tar(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "dir" / "train", ["a", "b", "c"], 2, 5)
    write_class_folders(tmp_path / "dir" / "test", ["a", "b", "c"], 1, 5)
    raw = load_dataset("imagefolder", data_dir=tmp_path / "dir", cache_dir=tmp_path / "dec")
    assert (len(raw.train), len(raw.test), raw.class_names) == (6, 3, ["a", "b", "c"])
    archive = write_split_tar(tmp_path / "tar" / "x.tar.gz", ["p", "q"], size=5)
    raw = load_dataset("imagefolder", data_dir=archive, cache_dir=tmp_path / "dec")
    assert (len(raw.train), len(raw.test), raw.class_names) == (4, 2, ["p", "q"])


def test_imagefolder_single_folder_holds_out_20_percent(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "dir", ["a", "b"], 10, 4)
    first = load_dataset("imagefolder", data_dir=tmp_path / "dir", cache_dir=tmp_path / "dec")
    again = load_dataset("imagefolder", data_dir=tmp_path / "dir", cache_dir=tmp_path / "dec")
    assert (len(first.train), len(first.test)) == (16, 4)
    assert first.test.labels.bincount().tolist() == [2, 2]
    assert bool((first.test.images == again.test.images).all())


def test_imagefolder_empty_data_dir(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("imagefolder", data_dir=tmp_path / "empty")
    message = one_line(err)
    assert str(tmp_path / "empty") in message and str(tmp_path / "system") not in message


# ---------------------------------------------------------------------------------------------
# Downloading


@pytest.fixture
def idx_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file:// mirror of a tiny Fashion-MNIST, wired into the spec's download list."""
    mirror = tmp_path / "mirror"
    write_idx(mirror, n_train=7)
    spec = get_spec("fashion-mnist")
    downloads = [
        (mirror.joinpath(name).as_uri(), name, md5(mirror / name)) for _, name, _ in spec.downloads
    ]
    monkeypatch.setattr(spec, "downloads", downloads)
    monkeypatch.delenv("REFFAKD_NO_DOWNLOAD")
    return mirror


def test_download_verifies_and_reads(tmp_path: Path, idx_mirror: Path) -> None:
    raw = load_dataset("fashion-mnist")
    target = tmp_path / "cache" / "datasets" / "fashion-mnist"
    assert len(raw.train) == 7 and raw.source == str(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in idx_mirror.iterdir())
    for path in idx_mirror.iterdir():
        path.unlink()  # a second load must not download again
    assert len(load_dataset("fashion-mnist").train) == 7


def test_download_checksum_mismatch(tmp_path: Path, idx_mirror: Path) -> None:
    spec = get_spec("fashion-mnist")
    url, name, _ = spec.downloads[0]
    spec.downloads[0] = (url, name, "0" * 32)
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist")
    assert "checksum mismatch" in one_line(err)
    assert list((tmp_path / "cache" / "datasets" / "fashion-mnist").iterdir()) == []


def test_download_failure_is_not_found(tmp_path: Path, idx_mirror: Path) -> None:
    (idx_mirror / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist")
    message = one_line(err)
    assert "fashion-mnist not found" in message and "t10k-images-idx3-ubyte.gz" in message
    assert "--data-dir" in message


def test_download_extracts_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10_pickles(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    spec = get_spec("cifar10")
    monkeypatch.setattr(spec, "downloads", [(archive.as_uri(), archive.name, md5(archive))])
    monkeypatch.delenv("REFFAKD_NO_DOWNLOAD")
    raw = load_dataset("cifar10")
    target = tmp_path / "cache" / "datasets" / "cifar10"
    assert raw.source == str(target / "cifar-10-batches-py")
    assert len(raw.train) == 10 and raw.class_names == catalog.CIFAR10_CLASSES
    assert not [p for p in target.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.skipif(not REAL_DATA, reason="set REFFAKD_DATA to a folder holding fashion-mnist/")
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFFAKD_DATA", REAL_DATA or "")
    raw = load_dataset("fashion-mnist", download=False)
    assert (len(raw.train), len(raw.test)) == (60000, 10000)
    assert raw.train.shape == (1, 28, 28) and raw.num_classes == 10
    assert raw.train.labels.bincount().tolist() == [6000] * 10
