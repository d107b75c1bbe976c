"""Shared fixtures: tiny datasets written in the real on-disk formats."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reffakd.config import DataConfig
from reffakd.data.dataset import DataSplits, ImageSplit
from reffakd.data.prepared_images import PreparedImages
from reffakd.data.spec import get_spec
from reffakd.kd.source_base import SourceContext


def dump(path: Path, obj: object) -> None:
    """Protocol 2 like the originals, which also name numpy 1's module for arrays."""
    data = pickle.dumps(obj, protocol=2)
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def save_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_idx_images(path: Path, images: torch.Tensor, compress: bool = True) -> None:
    n, h, w = images.shape
    payload = struct.pack(">IIII", 2051, n, h, w) + images.numpy().tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def write_idx_labels(path: Path, labels: torch.Tensor, compress: bool = True) -> None:
    payload = struct.pack(">II", 2049, len(labels)) + labels.to(torch.uint8).numpy().tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def make_class_images(labels: torch.Tensor, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Noisy images whose bright block position depends on the class: learnable in an epoch."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (len(labels), size, size), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 4)
        images[i, 2 + row * 8 : 8 + row * 8, 2 + col * 6 : 7 + col * 6] = 230
    return images


def write_tiny_idx_dataset(root: Path, n_train: int = 300, n_test: int = 100) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        labels = torch.arange(n) % 10
        write_idx_images(
            root / f"{prefix}-images-idx3-ubyte.gz", make_class_images(labels, seed=seed)
        )
        write_idx_labels(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` run where a CUDA device is available and are skipped elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """No downloads, no real data and a private cache for every test."""
    monkeypatch.setenv("REFFAKD_NO_DOWNLOAD", "1")
    monkeypatch.delenv("REFFAKD_DATA", raising=False)
    monkeypatch.setenv("REFFAKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    # precision auto resolves to fp32 on every host, so results do not depend on the CPU's
    # bf16 units; the tests of the resolution patch this back
    monkeypatch.setattr("reffakd.training.precision.native_bf16", lambda device: False)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A data root holding a tiny Fashion-MNIST in IDX .gz format."""
    root = tmp_path_factory.mktemp("data")
    write_tiny_idx_dataset(root / "fashion-mnist")
    return root


@pytest.fixture(scope="module")
def module_env(tmp_path_factory) -> Iterator[None]:
    """The isolation above, for module-scoped fixtures (they are set up before it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFFAKD_NO_DOWNLOAD", "1")
        patch.delenv("REFFAKD_DATA", raising=False)
        patch.setenv("REFFAKD_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        patch.setattr("reffakd.training.precision.native_bf16", lambda device: False)
        yield


def preset_signal(name: str) -> str | None:
    """The signal a preset needs from the test: its source, or "aesl" when the source starts
    from AESL rows (``reffakd+pskd``, ``reffakd+ols``)."""
    from reffakd.kd.methods import resolve_method

    return resolve_method(name).signal


@pytest.fixture(scope="module")
def soft_labels_file(tiny_data, tmp_path_factory, module_env) -> Path:
    """An AESL soft-label file made on the tiny Fashion-MNIST (1 autoencoder epoch)."""
    from reffakd.cli import main

    out = tmp_path_factory.mktemp("aesl") / "sl"
    args = ["soft-labels", "--dataset", "fashion-mnist", "--data-dir", str(tiny_data)]
    args += ["--out", str(out), "--epochs", "1", "-k", "5", "--no-progress"]
    assert main(args) == 0
    return out / "soft_labels.pt"


def epoch_records(run: Path) -> list[dict]:
    """A run's ``metrics.jsonl`` records without their timings, which differ between runs."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("seconds"), record.pop("train_seconds")
    return records


def one_line_error(capsys: pytest.CaptureFixture[str], *patterns: str) -> str:
    """The CLI's error, checked: exactly one ``reffakd: error:`` line (warning lines aside), no
    traceback, holding every one of ``patterns``."""
    err = capsys.readouterr().err
    lines = [
        line
        for line in err.strip().splitlines()
        if line.strip() and not line.startswith("reffakd: warning:")
    ]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("reffakd: error:"), err
    for pattern in patterns:
        assert pattern in lines[0], lines[0]
    return lines[0]


def train_args(
    data: Path,
    out: Path,
    *extra: str,
    epochs: int = 1,
    batch_size: int = 128,
    dataset: str = "fashion-mnist",
    student: str = "lenet5",
) -> list[str]:
    """CLI arguments of a short run (default: LeNet-5 on the tiny Fashion-MNIST), on the CPU in
    fp32 (also in subprocesses, where the fixtures' fp32 pinning of ``auto`` does not reach)."""
    return [
        "train",
        "--dataset",
        dataset,
        "--data-dir",
        str(data),
        "--student",
        student,
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
        "--no-progress",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--set",
        "optim.milestones=[1]",
        "--set",
        "optim.eval_batch_size=200",
        *extra,
    ]


def source_context(
    run_dir: Path,
    *,
    num_classes: int = 10,
    student: str = "lenet5",
    augmented: bool = True,
    val_fraction: float = 0.1,
    dataset: str = "fashion-mnist",
) -> SourceContext:
    """A source's context for a 1x32x32 dataset of ``num_classes`` classes, without data files.

    The splits are tiny random images; the class names are the dataset's own when it has
    ``num_classes`` classes (so soft-label files made on the tiny data match), else "0", "1"...
    """
    spec = get_spec(dataset)
    names = list(spec.class_names or [])
    if len(names) != num_classes:
        names = [str(k) for k in range(num_classes)]
    labels = torch.arange(4 * num_classes) % num_classes
    split = ImageSplit(torch.zeros(len(labels), 1, 28, 28, dtype=torch.uint8), labels, names)
    splits = DataSplits(dataset, split, split, split)
    data = PreparedImages(spec, splits, 32, [0.5], [0.5])
    return SourceContext(
        data=data,
        data_config=DataConfig(name=dataset, val_fraction=val_fraction),
        run_dir=Path(run_dir),
        device=torch.device("cpu"),
        student=student,
        augmented=augmented,
    )


def tiny_image_splits(n: int = 48, classes: int = 3, size: int = 16, seed: int = 0) -> DataSplits:
    """1-channel ``size``×``size`` uint8 images whose class sets a bright row: learnable fast."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 80, (n, 1, size, size), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        images[i, 0, 2 + 4 * label : 4 + 4 * label] = 220
    split = ImageSplit(images, labels, [str(c) for c in range(classes)])
    held = split.subset(torch.arange(classes * 2))
    return DataSplits("toy", split, held, held)


def make_trainer(run_dir: Path, *, student: str = "lenet5", optim=None, compute=None, **kwargs):
    """An engine on :func:`tiny_image_splits` training ``student`` with cross-entropy and the
    crop/flip/rotation augmentation (so the data generator is exercised)."""
    from reffakd.config import ComputeConfig, OptimConfig
    from reffakd.data.augment import AugmentPolicy, BatchTransform
    from reffakd.kd.loss_objectives import CrossEntropy
    from reffakd.kd.task import Distiller
    from reffakd.models import build_model
    from reffakd.training.engine import Trainer
    from reffakd.training.rundir import RunDir

    torch.manual_seed(0)
    splits = tiny_image_splits()
    model = build_model(student, splits.num_classes, 1, 16)
    transform = BatchTransform(16, [0.3], [0.3], AugmentPolicy(2, True, 10.0))
    optim = optim or OptimConfig(epochs=3, batch_size=16, lr=0.05, milestones=[2])
    return Trainer(
        Distiller(model, None, CrossEntropy()),
        splits,
        transform,
        optim,
        RunDir(run_dir),
        progress=False,
        compute=compute or ComputeConfig(),
        **kwargs,
    )


class Interrupted(Exception):
    """Raised by :func:`stop_after` right after an epoch's checkpoint."""


def stop_after(trainer, epoch: int):
    """Make ``trainer`` stop (raise :class:`Interrupted`) once epoch ``epoch`` is saved."""
    save = trainer._save

    def save_then_stop(at: int, record, state) -> None:
        save(at, record, state)
        if at == epoch:
            raise Interrupted

    trainer._save = save_then_stop
    return trainer


def assert_resumes_identically(tmp_path: Path, make, stop: int = 1) -> dict:
    """A run interrupted after epoch ``stop`` and resumed in a fresh trainer (from ``make``)
    ends with the metrics and weights of an uninterrupted run; returns its last checkpoint."""
    from reffakd.training.checkpoint import load_checkpoint

    full = make(tmp_path / "full")
    full_result = full.fit()
    with pytest.raises(Interrupted):
        stop_after(make(tmp_path / "cut"), stop).fit()
    resumed = make(tmp_path / "cut")
    resumed.resume()
    cut_result = resumed.fit()

    def timeless(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in history]

    assert timeless(full_result.history) == timeless(cut_result.history)
    full_state = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    cut_state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key, value in full_state["model"].items():
        assert torch.equal(value, cut_state["model"][key]), key
    return full_state
