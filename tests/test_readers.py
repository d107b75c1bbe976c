"""Readers on small files written in the real on-disk formats."""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import dump, save_image
from PIL import Image

from reffakd.data.readers import archive as archive_module
from reffakd.data.readers import images as images_module
from reffakd.data.readers import (
    read_cifar10,
    read_cifar100,
    read_idx_dataset,
    read_idx_images,
    read_idx_labels,
    read_image_folder,
    read_image_tar,
    read_split_folders,
    read_tiny_imagenet,
)
from reffakd.errors import DataError


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFFAKD_CACHE", str(tmp_path / "user-cache"))


def assert_one_line(err: pytest.ExceptionInfo[DataError]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# IDX


def idx_images_bytes(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()


def idx_labels_bytes(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def write(path: Path, data: bytes, gz: bool) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_dataset(
    directory: Path, n_train: int = 12, n_test: int = 5, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """The four standard IDX files with random 28x28 content; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    write(directory / "train-images-idx3-ubyte", idx_images_bytes(arrays["train_images"]), gz)
    write(directory / "train-labels-idx1-ubyte", idx_labels_bytes(arrays["train_labels"]), gz)
    write(directory / "t10k-images-idx3-ubyte", idx_images_bytes(arrays["test_images"]), gz)
    write(directory / "t10k-labels-idx1-ubyte", idx_labels_bytes(arrays["test_labels"]), gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([2, 0, 9], dtype=np.uint8)
    image_file = write(tmp_path / "images-idx3-ubyte", idx_images_bytes(images), gz)
    label_file = write(tmp_path / "labels-idx1-ubyte", idx_labels_bytes(labels), gz)
    got_images, got_labels = read_idx_images(image_file), read_idx_labels(label_file)
    assert got_images.dtype == torch.uint8 and got_images.shape == (3, 1, 4, 5)
    assert torch.equal(got_images[:, 0], torch.from_numpy(images))
    assert got_labels.dtype == torch.int64 and got_labels.tolist() == [2, 0, 9]


def test_idx_dataset(tmp_path: Path) -> None:
    arrays = write_idx_dataset(tmp_path, gz=False)
    names = [str(i) for i in range(10)]
    raw = read_idx_dataset("mnist", tmp_path, names)
    assert raw.train.images.shape == (12, 1, 28, 28) and raw.test.images.shape == (5, 1, 28, 28)
    assert torch.equal(raw.train.images[:, 0], torch.from_numpy(arrays["train_images"]))
    assert raw.test.labels.tolist() == arrays["test_labels"].tolist()
    assert raw.class_names == names


def test_idx_wrong_magic(tmp_path: Path) -> None:
    data = idx_images_bytes(np.zeros((2, 3, 3), np.uint8))
    path = write(tmp_path / "x-idx3-ubyte", struct.pack(">I", 2049) + data[4:], gz=True)
    with pytest.raises(DataError) as err:
        read_idx_images(path)
    message = assert_one_line(err)
    assert str(path) in message and "magic" in message and "re-download" in message


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    path = write(tmp_path / "x-idx3-ubyte", idx_images_bytes(np.ones((50, 8, 8), np.uint8)), True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError) as err:
        read_idx_images(path)
    assert "gzip" in assert_one_line(err)


def test_idx_bad_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError) as err:
        read_idx_labels(path)
    assert str(path) in assert_one_line(err)


@pytest.mark.parametrize("cut", [3, 200])
def test_idx_short_data(tmp_path: Path, cut: int) -> None:
    data = idx_images_bytes(np.ones((10, 8, 8), np.uint8))
    path = write(tmp_path / "x-idx3-ubyte", data[:-cut] if cut < 200 else data[:10], gz=False)
    with pytest.raises(DataError) as err:
        read_idx_images(path)
    assert str(path) in assert_one_line(err)


def test_idx_count_mismatch(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_labels_bytes(np.zeros(4, np.uint8)), gz=True)
    with pytest.raises(DataError) as err:
        read_idx_dataset("mnist", tmp_path, [str(i) for i in range(10)])
    message = assert_one_line(err)
    assert "5 images" in message and "4 labels" in message


def test_idx_missing_file(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        read_idx_dataset("mnist", tmp_path, [str(i) for i in range(10)])
    assert "t10k-images-idx3-ubyte" in assert_one_line(err)


# ---------------------------------------------------------------------------------------------
# CIFAR pickles


def write_cifar10(directory: Path, per_batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """``cifar-10-batches-py`` with tiny batches; returns the concatenated arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    train_data, train_labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        dump(
            directory / f"data_batch_{i}", {b"batch_label": b"x", b"labels": labels, b"data": data}
        )
        train_data.append(data)
        train_labels += labels
    test = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    dump(directory / "test_batch", {b"labels": [1, 2, 3], b"data": test})
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog")]
    names += [b"frog", b"horse", b"ship", b"truck"]
    dump(directory / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return {
        "train": np.concatenate(train_data),
        "train_labels": np.array(train_labels),
        "test": test,
    }


def write_cifar100(directory: Path, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train": rng.integers(0, 256, (7, 3072), dtype=np.uint8),
        "train_labels": rng.integers(0, 100, 7),
        "test": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
    }
    fine = [int(x) for x in arrays["train_labels"]]
    dump(
        directory / "train",
        {b"fine_labels": fine, b"coarse_labels": [0] * 7, b"data": arrays["train"]},
    )
    dump(
        directory / "test",
        {b"fine_labels": [99, 0], b"coarse_labels": [0, 0], b"data": arrays["test"]},
    )
    names = [f"class{i:02d}".encode() for i in range(100)]
    dump(directory / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20})
    return arrays


def test_cifar10_round_trip(tmp_path: Path) -> None:
    arrays = write_cifar10(tmp_path / "cifar-10-batches-py")
    raw = read_cifar10(tmp_path / "cifar-10-batches-py")
    assert raw.train.images.shape == (20, 3, 32, 32) and raw.test.images.shape == (3, 3, 32, 32)
    assert torch.equal(raw.train.images.reshape(20, -1), torch.from_numpy(arrays["train"]))
    assert torch.equal(raw.test.images.reshape(3, -1), torch.from_numpy(arrays["test"]))
    assert raw.train.labels.tolist() == arrays["train_labels"].tolist()
    assert raw.test.labels.tolist() == [1, 2, 3]
    assert raw.class_names[0] == "airplane" and raw.class_names[-1] == "truck"
    # CHW order: the first 1024 values of a row are the red plane
    assert torch.equal(
        raw.train.images[0, 0].flatten(), torch.from_numpy(arrays["train"][0, :1024])
    )


def test_cifar10_from_official_tar(tmp_path: Path) -> None:
    arrays = write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    raw = read_cifar10(archive)
    assert torch.equal(raw.test.images.reshape(3, -1), torch.from_numpy(arrays["test"]))


def test_cifar100_round_trip(tmp_path: Path) -> None:
    arrays = write_cifar100(tmp_path / "cifar-100-python")
    raw = read_cifar100(tmp_path / "cifar-100-python")
    assert raw.num_classes == 100 and raw.class_names[5] == "class05"
    assert torch.equal(raw.train.images.reshape(7, -1), torch.from_numpy(arrays["train"]))
    assert raw.train.labels.tolist() == arrays["train_labels"].tolist()
    assert raw.test.labels.tolist() == [99, 0]


def test_cifar_truncated_pickle(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar10(directory)
    batch = directory / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(DataError) as err:
        read_cifar10(directory)
    message = assert_one_line(err)
    assert "data_batch_3" in message and "re-download" in message


def test_cifar_pickle_with_code_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-100-python"
    write_cifar100(directory)
    dump(directory / "test", {b"data": os.system, b"fine_labels": []})
    with pytest.raises(DataError) as err:
        read_cifar100(directory)
    assert "unexpected object" in assert_one_line(err)


def test_cifar_missing_batch(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar10(directory)
    (directory / "test_batch").unlink()
    with pytest.raises(DataError) as err:
        read_cifar10(directory)
    assert "test_batch" in assert_one_line(err)


# ---------------------------------------------------------------------------------------------
# Image folders and archives


def make_class_folders(
    root: Path, counts: dict[str, int], size: int = 6, rgb: bool = True, ext: str = ".png"
) -> dict[str, list[np.ndarray]]:
    """``root/<class>/NNN<ext>`` with distinct random content; returns arrays per class."""
    rng = np.random.default_rng(len(counts) + size)
    shape = (size, size, 3) if rgb else (size, size)
    written: dict[str, list[np.ndarray]] = {}
    for cls, count in counts.items():
        written[cls] = []
        for i in range(count):
            array = rng.integers(0, 256, shape, dtype=np.uint8)
            save_image(root / cls / f"{i:03d}{ext}", array)
            written[cls].append(array)
    return written


def test_image_folder_round_trip(tmp_path: Path) -> None:
    written = make_class_folders(tmp_path / "imgs", {"zebra": 2, "apple": 3})
    (tmp_path / "imgs" / "apple" / "notes.txt").write_text("ignored")
    split = read_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    assert split.class_names == ["apple", "zebra"]
    assert split.labels.tolist() == [0, 0, 0, 1, 1]
    assert split.images.shape == (5, 3, 6, 6)
    expected = written["apple"] + written["zebra"]
    for got, want in zip(split.images, expected, strict=True):
        assert torch.equal(got, torch.from_numpy(want).permute(2, 0, 1))


def test_image_folder_grayscale_stays_one_channel(tmp_path: Path) -> None:
    written = make_class_folders(tmp_path / "imgs", {"a": 2, "b": 1}, rgb=False)
    split = read_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    assert split.images.shape == (3, 1, 6, 6)
    assert torch.equal(split.images[2, 0], torch.from_numpy(written["b"][0]))


def test_image_folder_mixed_modes_become_rgb(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "imgs", {"a": 2})
    gray = np.full((6, 6), 77, np.uint8)
    save_image(tmp_path / "imgs" / "b" / "gray.png", gray)
    split = read_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    assert split.images.shape == (3, 3, 6, 6)
    assert bool((split.images[2] == 77).all())


def test_image_folder_size_mismatch(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "imgs", {"a": 2})
    save_image(tmp_path / "imgs" / "b" / "big.png", np.zeros((7, 6, 3), np.uint8))
    with pytest.raises(DataError) as err:
        read_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    assert "big.png" in assert_one_line(err)


def test_image_folder_unreadable_image(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "imgs", {"a": 2})
    (tmp_path / "imgs" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError) as err:
        read_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    assert "broken.png" in assert_one_line(err)


def test_image_folder_empty(tmp_path: Path) -> None:
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        read_image_folder(tmp_path / "imgs", cache_dir=tmp_path / "cache")
    assert_one_line(err)


def make_split_tree(root: Path, ext: str = ".png") -> dict[str, dict[str, list[np.ndarray]]]:
    return {
        "train": make_class_folders(root / "train", {"cat": 3, "dog": 2}, ext=ext),
        "test": make_class_folders(root / "test", {"cat": 1, "dog": 2}, ext=ext),
    }


def make_tar(source: Path, archive: Path, top: str | None) -> Path:
    mode = "w:gz" if archive.name.endswith(".gz") else "w"
    with tarfile.open(archive, mode) as tar:
        for path in sorted(source.rglob("*")):
            arcname = path.relative_to(source).as_posix()
            tar.add(path, arcname=f"{top}/{arcname}" if top else arcname, recursive=False)
    return archive


@pytest.mark.parametrize(("name", "top"), [("data.tar.gz", None), ("data.tar", "cifar-ish")])
def test_tar_of_split_folders(tmp_path: Path, name: str, top: str | None) -> None:
    written = make_split_tree(tmp_path / "src")
    (tmp_path / "src" / "README.md").write_text("about")
    archive = make_tar(tmp_path / "src", tmp_path / name, top)
    raw = read_image_tar(archive, "toy", cache_dir=tmp_path / "cache")
    assert raw.name == "toy" and raw.class_names == ["cat", "dog"]
    assert raw.train.labels.tolist() == [0, 0, 0, 1, 1]
    assert raw.test.labels.tolist() == [0, 1, 1]
    expected = written["test"]["cat"] + written["test"]["dog"]
    for got, want in zip(raw.test.images, expected, strict=True):
        assert torch.equal(got, torch.from_numpy(want).permute(2, 0, 1))


def test_tar_of_jpegs(tmp_path: Path) -> None:
    make_split_tree(tmp_path / "src", ext=".jpg")
    archive = make_tar(tmp_path / "src", tmp_path / "data.tar.gz", None)
    raw = read_split_folders(archive, "toy", cache_dir=tmp_path / "cache")
    assert raw.train.images.shape == (5, 3, 6, 6) and raw.test.images.shape == (3, 3, 6, 6)


def test_split_folders_directory(tmp_path: Path) -> None:
    written = make_split_tree(tmp_path / "src")
    raw = read_split_folders(tmp_path / "src", "toy", cache_dir=tmp_path / "cache")
    assert torch.equal(
        raw.train.images[3], torch.from_numpy(written["train"]["dog"][0]).permute(2, 0, 1)
    )


def test_truncated_tar_gz(tmp_path: Path) -> None:
    make_split_tree(tmp_path / "src", ext=".jpg")
    archive = make_tar(tmp_path / "src", tmp_path / "data.tar.gz", None)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError) as err:
        read_split_folders(archive, "toy", cache_dir=tmp_path / "cache")
    assert str(archive) in assert_one_line(err)


def test_tar_without_splits(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "src", {"cat": 1})
    archive = make_tar(tmp_path / "src", tmp_path / "data.tar", None)
    with pytest.raises(DataError) as err:
        read_split_folders(archive, "toy", cache_dir=tmp_path / "cache")
    assert "train/<class>" in assert_one_line(err)


# ---------------------------------------------------------------------------------------------
# Tiny ImageNet


def make_tiny_imagenet(root: Path, size: int = 8) -> dict[str, object]:
    """A two-class ``tiny-imagenet-200`` with a grayscale JPEG in train and in val."""
    rng = np.random.default_rng(1)
    wnids = ["n02", "n01"]  # file order, deliberately not sorted
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text(
        "n00\tentity\nn01\tgoldfish, Carassius auratus\nn02\ttabby, cat\n"
    )
    for wnid in wnids:
        for i in range(2):
            array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            save_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", array)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    save_image(
        root / "train" / "n01" / "images" / "n01_gray.JPEG", np.full((size, size), 90, np.uint8)
    )
    val = {"val_0.JPEG": "n01", "val_1.JPEG": "n02", "val_2.JPEG": "n01"}
    for filename in val:
        save_image(
            root / "val" / "images" / filename, rng.integers(0, 256, (size, size, 3), np.uint8)
        )
    save_image(root / "val" / "images" / "val_3.JPEG", np.full((size, size), 40, np.uint8))
    val["val_3.JPEG"] = "n02"
    lines = [f"{f}\t{w}\t0\t0\t{size - 1}\t{size - 1}" for f, w in val.items()]
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    save_image(root / "test" / "images" / "test_0.JPEG", np.zeros((size, size, 3), np.uint8))
    return {"wnids": wnids, "val": val}


def test_tiny_imagenet(tmp_path: Path) -> None:
    make_tiny_imagenet(tmp_path / "tiny-imagenet-200")
    raw = read_tiny_imagenet(tmp_path / "tiny-imagenet-200", cache_dir=tmp_path / "cache")
    assert raw.class_names == ["tabby", "goldfish"]
    assert raw.extra["wnids"] == ["n02", "n01"]
    assert raw.train.images.shape == (5, 3, 8, 8) and raw.test.images.shape == (4, 3, 8, 8)
    assert raw.train.labels.tolist() == [0, 0, 1, 1, 1]
    assert raw.test.labels.tolist() == [1, 0, 1, 0]  # val_0..val_3 by file name
    gray = raw.train.images[4]  # n01_gray sorts after n01_0, n01_1
    assert bool((gray[0] == gray[1]).all() and (gray[1] == gray[2]).all())


def test_tiny_imagenet_zip(tmp_path: Path) -> None:
    make_tiny_imagenet(tmp_path / "src" / "tiny-imagenet-200")
    archive = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "src").rglob("*")):
            zf.write(path, path.relative_to(tmp_path / "src").as_posix())
    raw = read_tiny_imagenet(archive, cache_dir=tmp_path / "cache")
    direct = read_tiny_imagenet(tmp_path / "src", use_cache=False)
    assert torch.equal(raw.train.images, direct.train.images)
    assert raw.test.labels.tolist() == direct.test.labels.tolist()


def test_tiny_imagenet_bad_annotation(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    make_tiny_imagenet(root)
    annotations = root / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text().replace("val_2.JPEG\tn01", "val_2.JPEG\tn99"))
    with pytest.raises(DataError) as err:
        read_tiny_imagenet(root, cache_dir=tmp_path / "cache")
    assert "val_2.JPEG" in assert_one_line(err)


# ---------------------------------------------------------------------------------------------
# Decode cache


def failing_decoder(data: bytes, where: str) -> np.ndarray:
    raise AssertionError(f"decoded {where} although the cache should have served it")


def test_cache_serves_second_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_split_tree(tmp_path / "src")
    cache = tmp_path / "cache"
    first = read_split_folders(tmp_path / "src", "toy", cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary files left behind
    monkeypatch.setattr(images_module, "_decode_image", failing_decoder)
    second = read_split_folders(tmp_path / "src", "toy", cache_dir=cache)
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels)
    assert second.class_names == first.class_names


def test_cache_default_dir_follows_user_cache(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "imgs", {"a": 1})
    read_image_folder(tmp_path / "imgs")
    assert len(list((tmp_path / "user-cache" / "decoded").glob("folder-*.npz"))) == 1


def test_cache_of_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_split_tree(tmp_path / "src")
    archive = make_tar(tmp_path / "src", tmp_path / "data.tar.gz", "top")
    first = read_split_folders(archive, "toy", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(images_module, "_decode_image", failing_decoder)
    monkeypatch.setattr(archive_module.TarTree, "_load", lambda self: pytest.fail("tar was read"))
    second = read_split_folders(archive, "toy", cache_dir=tmp_path / "cache")
    assert torch.equal(first.train.images, second.train.images)


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "imgs", {"a": 2, "b": 2})
    cache = tmp_path / "cache"
    first = read_image_folder(tmp_path / "imgs", cache_dir=cache)
    (cache_file,) = cache.iterdir()
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    second = read_image_folder(tmp_path / "imgs", cache_dir=cache)
    assert torch.equal(first.images, second.images)
    with np.load(cache_file) as npz:  # rewritten whole
        assert npz["all_images"].shape == (4, 3, 6, 6)


def test_cache_invalidated_by_changed_file(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "imgs", {"a": 2})
    cache = tmp_path / "cache"
    read_image_folder(tmp_path / "imgs", cache_dir=cache)
    save_image(tmp_path / "imgs" / "a" / "000.png", np.full((6, 6, 3), 5, np.uint8))
    os.utime(tmp_path / "imgs" / "a" / "000.png", ns=(1, 1))
    split = read_image_folder(tmp_path / "imgs", cache_dir=cache)
    assert bool((split.images[0] == 5).all())
    assert len(list(cache.iterdir())) == 2


def test_unwritable_cache_is_not_fatal(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "imgs", {"a": 1})
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    split = read_image_folder(tmp_path / "imgs", cache_dir=blocker / "cache")
    assert len(split) == 1


def test_decode_image_detects_misnamed_format() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((3, 3), 9, np.uint8)).save(buffer, format="PNG")
    array = images_module._decode_image(buffer.getvalue(), "really-a-png.jpg")
    assert array.shape == (3, 3) and int(array[0, 0]) == 9
