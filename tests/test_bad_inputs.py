"""Bad input never corrupts data, never blocks a retry and never ends in a traceback.

The table below feeds the CLI one bad input per case and checks, for every case:

* exit code 2;
* a message of at most two lines that names the bad value;
* no traceback;
* the ``--out`` folder exactly as it was found (absent, empty, or the run it held);
* the same command, corrected, then succeeds in that same ``--out`` folder.

Families: names, numbers, soft-label files, teachers (another kind of run, another split, other
data), config files and ``--set``, image folders and IDX files, ``--out`` and ``--resume``
(options, other data, a checkpoint that does not fit), text files and their labels, readers
(pipes, dangling symlinks, CIFAR types), and the OS refusing a read (no permission, a name too
long), each case naming the message it expects. Runs use a tiny Fashion-MNIST (60 training
images) and one epoch, so a corrected run costs well under a second. After the table: the kill,
interrupt and full-disk behaviour, the run record, ``bench`` and ``tune`` (checked before
writing) and the Python API (``ValueError``/``TypeError``, the drop-in losses).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import importlib
import io
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import dump, epoch_records, write_idx_labels, write_tiny_idx_dataset
from PIL import Image
from torch import nn

from reffakd.aesl.soft_labels import SoftLabels
from reffakd.cli import main
from reffakd.config import TrainConfig, from_dict
from reffakd.data.fingerprint import fingerprint_difference
from reffakd.data.spec import get_spec
from reffakd.distill.train import train_student
from reffakd.files import os_error_message
from reffakd.kd.loss_criteria import KDLoss, LabelSmoothingLoss
from reffakd.training import engine

FMNIST_CLASSES = list(get_spec("fashion-mnist").class_names or [])
SPEED = ["--no-progress", "--set", "optim.milestones=[1]", "--set", "optim.eval_batch_size=200"]


# --------------------------------------------------------------------------- shared inputs
@dataclass
class Inputs:
    """Good inputs made once per module, and the per-test folders a case works in."""

    data: Path  # tiny Fashion-MNIST in IDX files
    images: Path  # an image folder: train/ and test/, 2 classes, 28x28
    soft_labels: Path  # a valid soft-label file for Fashion-MNIST
    teacher: Path  # a finished 2-epoch lenet5 run on the tiny data
    soft_label_run: Path  # a finished `reffakd soft-labels` run on the tiny data
    out: Path = Path()  # the case's --out
    files: Path = Path()  # where a case writes its bad files
    lock_fd: int = -1  # a lock a case holds, as another process running there would

    def train(self, *extra: str, out: Path | None = None, data: Path | None = None) -> list[str]:
        """A one-epoch lenet5 run on the tiny Fashion-MNIST."""
        return [
            "train",
            "--dataset",
            "fashion-mnist",
            "--data-dir",
            str(data or self.data),
            "--student",
            "lenet5",
            "--out",
            str(out or self.out),
            "--epochs",
            "1",
            "--batch-size",
            "64",
            *SPEED,
            *extra,
        ]

    def folder(self, *extra: str, data: Path | None = None) -> list[str]:
        """A one-epoch lenet5 run on an image folder."""
        return [
            "train",
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(data or self.images),
            "--student",
            "lenet5",
            "--out",
            str(self.out),
            "--epochs",
            "1",
            *SPEED,
            *extra,
        ]

    def soft(
        self, *extra: str, data: Path | None = None, dataset: str = "fashion-mnist"
    ) -> list[str]:
        """A one-epoch autoencoder on the tiny Fashion-MNIST (or ``dataset``), 2 samples per
        class."""
        return [
            "soft-labels",
            "--dataset",
            dataset,
            "--data-dir",
            str(data or self.data),
            "--out",
            str(self.out),
            "--epochs",
            "1",
            "-k",
            "2",
            *SPEED,
            *extra,
        ]

    def bad_data(self) -> Path:
        """A copy of the tiny IDX files to break; pass ``self.files / "data"`` as --data-dir."""
        target = self.files / "data" / "fashion-mnist"
        if not target.exists():
            shutil.copytree(self.data / "fashion-mnist", target)
        return target

    def bad_images(self) -> Path:
        """A copy of the image folder to break."""
        target = self.files / "images"
        if not target.exists():
            shutil.copytree(self.images, target)
        return target


def write_png_folder(root: Path, size: int, classes: dict[str, tuple[int, int]]) -> Path:
    """``root/{train,test}/<class>/*.png``: ``classes`` maps a class to (train, test) counts.

    Each class is a bright square at its own place on noise, so a model can learn it.
    """
    rng = np.random.default_rng(size)
    for index, (name, counts) in enumerate(classes.items()):
        for split, count in zip(("train", "test"), counts, strict=True):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (size, size), dtype=np.uint8)
                at = 2 + 5 * index
                pixels[at : at + 5, at : at + 5] = 230
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def save_soft_labels(path: Path, table: object, class_names: list[str] | None = None) -> Path:
    torch.save({"soft_labels": table, "meta": {"class_names": class_names}}, path)
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory, module_env) -> Inputs:
    root = tmp_path_factory.mktemp("bad-inputs")
    data = root / "data"
    write_tiny_idx_dataset(data / "fashion-mnist", n_train=60, n_test=20)
    images = write_png_folder(root / "images", 28, {"a": (6, 2), "b": (6, 2)})
    table = torch.softmax(4 * torch.eye(10), dim=1)
    soft_labels = root / "aesl.pt"
    SoftLabels(table, None, {"class_names": FMNIST_CLASSES}).save(soft_labels)
    inputs = Inputs(data, images, soft_labels, root / "teacher", root / "soft-label-run")
    args = inputs.train(out=inputs.teacher)
    args[args.index("--epochs") + 1] = "2"
    assert main(args) == 0
    inputs.out = inputs.soft_label_run
    assert main(inputs.soft()) == 0
    return inputs


@pytest.fixture
def inputs(shared, tmp_path) -> Inputs:
    (tmp_path / "files").mkdir()
    return Inputs(
        shared.data,
        shared.images,
        shared.soft_labels,
        shared.teacher,
        shared.soft_label_run,
        out=tmp_path / "out",
        files=tmp_path / "files",
    )


# --------------------------------------------------------------------------- simulated OS refusals
@contextlib.contextmanager
def refused(name: str, under: Path, code: int) -> Iterator[None]:
    """``os.<name>`` raises OSError(code) for paths under ``under``: a read-only mount, no
    permission, or a full disk, without needing one (the tests run as root, where chmod does
    not stop writes)."""
    real = getattr(os, name)

    def fake(path, *args, **kwargs):
        if str(path).startswith(str(under)):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, name, fake)
        yield


@contextlib.contextmanager
def unreadable(path: Path, code: int = errno.EACCES) -> Iterator[None]:
    """Opening ``path`` (or anything under it) for reading fails with OSError(code), as
    without read permission (chmod does not stop root, who runs the tests)."""
    real = io.open

    def fake(file, *args, **kwargs):
        if str(file).startswith(str(path)):
            raise OSError(code, os.strerror(code), str(file))
        return real(file, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(io, "open", fake)
        yield


@contextlib.contextmanager
def unlistable(folder: Path) -> Iterator[None]:
    """Listing ``folder`` (or a folder under it) fails with EACCES, as without read permission."""
    real = os.scandir

    def fake(path=".", *args, **kwargs):
        if str(path).startswith(str(folder)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "scandir", fake)
        yield


@contextlib.contextmanager
def unsearchable(folder: Path, dataset: str = "fashion-mnist") -> Iterator[None]:
    """Looking for ``dataset`` in ``folder`` fails with EACCES, as in a folder without read
    permission."""
    spec = get_spec(dataset)
    real = spec.probe

    def fake(path, dedicated):
        if str(path).startswith(str(folder)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, dedicated)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spec, "probe", fake)
        yield


# --------------------------------------------------------------------------- the table
Args = Callable[[Inputs], list[str]]


@dataclass
class Case:
    """One bad input. ``names`` is what the message must contain (usually the bad value).

    ``prepare`` writes the bad files (or the --out state) before the bad command; ``simulate``
    wraps the bad command only (an OS refusal); ``repair`` is what the user then fixes outside
    the command; ``fixed`` is the corrected command, run in the same folder.
    """

    id: str
    bad: Args
    fixed: Args
    names: Callable[[Inputs], str] | str
    prepare: Callable[[Inputs], object] | None = None
    simulate: Callable[[Inputs], contextlib.AbstractContextManager] | None = None
    repair: Callable[[Inputs], object] | None = None


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _config(i: Inputs, text: bytes | str) -> str:
    return str(_write(i.files / "config.yaml", text))


def _copy_run(source: Path, target: Path) -> None:
    shutil.copytree(source, target)


def _idx(i: Inputs, labels: torch.Tensor | None = None, test: torch.Tensor | None = None) -> None:
    """Rewrite the copy's train (and test) labels, keeping the images."""
    root = i.bad_data()
    if labels is not None:
        write_idx_labels(root / "train-labels-idx1-ubyte.gz", labels)
    if test is not None:
        write_idx_labels(root / "t10k-labels-idx1-ubyte.gz", test)


def _torch_file(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bad_image(i: Inputs, name: str, image: Image.Image, **save) -> None:
    image.save(i.bad_images() / "train" / "a" / name, **save)


N = torch.arange(60) % 10  # the tiny data's training labels

NAME_CASES = [
    Case(
        "dataset-name",
        lambda i: i.train("--dataset", "fashion-mnistt"),
        lambda i: i.train(),
        "fashion-mnistt",
    ),
    Case("student-name", lambda i: i.train("--student", "lenet6"), lambda i: i.train(), "lenet6"),
    Case("method-name", lambda i: i.train("--method", "refakd"), lambda i: i.train(), "refakd"),
    Case("source-name", lambda i: i.train("--source", "aesll"), lambda i: i.train(), "aesll"),
    Case("loss-name", lambda i: i.train("--loss", "kdd"), lambda i: i.train(), "kdd"),
    Case("device-name", lambda i: i.train("--device", "gpu0"), lambda i: i.train(), "gpu0"),
    Case(
        "kl-reduction-choice",
        lambda i: i.train("--kl-reduction", "sum"),
        lambda i: i.train(),
        "'sum'",
    ),
]

NUMBER_CASES = [
    Case(
        "alpha-above-1",
        lambda i: i.train(
            "--method", "reffakd", "--soft-labels", str(i.soft_labels), "--alpha", "1.5"
        ),
        lambda i: i.train(
            "--method", "reffakd", "--soft-labels", str(i.soft_labels), "--alpha", "0.5"
        ),
        "1.5",
    ),
    Case(
        "temperature-0",
        lambda i: i.train(
            "--method", "reffakd", "--soft-labels", str(i.soft_labels), "--temperature", "0"
        ),
        lambda i: i.train("--method", "reffakd", "--soft-labels", str(i.soft_labels)),
        "temperature must be > 0, got 0",
    ),
    Case(
        "temperature-nan",
        lambda i: i.train("--method", "ls", "--loss", "kd", "--temperature", "nan"),
        lambda i: i.train("--method", "ls", "--loss", "kd", "--temperature", "2"),
        "nan",
    ),
    Case(
        "epochs-0",
        lambda i: i.train("--epochs", "0"),
        lambda i: i.train(),
        "optim.epochs must be >= 1, got 0",
    ),
    Case("epochs-text", lambda i: i.train("--epochs", "abc"), lambda i: i.train(), "'abc'"),
    Case(
        "batch-size-0",
        lambda i: i.train("--batch-size", "0"),
        lambda i: i.train(),
        "optim.batch_size must be >= 1, got 0",
    ),
    Case(
        "lr-negative",
        lambda i: i.train("--lr", "-1"),
        lambda i: i.train(),
        "optim.lr must be >= 0, got -1.0",
    ),
    Case("lr-infinite", lambda i: i.train("--lr", "inf"), lambda i: i.train(), "inf"),
    Case(
        "seed-negative", lambda i: i.train("--seed", "-1"), lambda i: i.train("--seed", "1"), "-1"
    ),
    Case(
        "seed-2**64",
        lambda i: i.train("--seed", str(2**64)),
        lambda i: i.train("--seed", str(2**63 - 1)),
        str(2**64),
    ),
    Case(
        "label-smoothing-eps",
        lambda i: i.train("--method", "ls", "--set", "source.eps=1.5"),
        lambda i: i.train("--method", "ls", "--set", "source.eps=0.2"),
        "1.5",
    ),
    Case(
        "ae-samples-per-class",
        lambda i: i.soft("-k", "1"),
        lambda i: i.soft(),
        "samples_per_class must be >= 2, got 1",
    ),
    Case("ae-boost-nan", lambda i: i.soft("--boost", "nan"), lambda i: i.soft(), "nan"),
    Case("ae-seed", lambda i: i.soft("--seed", "-3"), lambda i: i.soft(), "-3"),
]

SOFT_LABEL_FILE_CASES = [
    Case(
        f"soft-label-file-{name}",
        lambda i, make=make: i.train("--method", "reffakd", "--soft-labels", str(make(i))),
        lambda i: i.train("--method", "reffakd", "--soft-labels", str(i.soft_labels)),
        lambda i: str(i.files / "labels.pt"),
    )
    for name, make in (
        ("list", lambda i: _torch_file(i.files / "labels.pt", [torch.eye(10)])),
        ("shape", lambda i: save_soft_labels(i.files / "labels.pt", torch.full((4, 4), 0.25))),
        ("rows", lambda i: save_soft_labels(i.files / "labels.pt", torch.rand(10, 10) + 0.5)),
        (
            "integers",
            lambda i: save_soft_labels(i.files / "labels.pt", torch.eye(10, dtype=torch.int64)),
        ),
        (
            "classes",
            lambda i: save_soft_labels(
                i.files / "labels.pt", torch.eye(10), [str(k) for k in range(10)]
            ),
        ),
        ("not-torch", lambda i: _write(i.files / "labels.pt", "soft labels\n")),
        ("missing", lambda i: i.files / "labels.pt"),
    )
]

TEACHER_CASES = [
    Case(
        "teacher-missing",
        lambda i: i.train("--method", "kd"),
        lambda i: i.train("--method", "kd", "--teacher", str(i.teacher)),
        "--teacher",
    ),
    Case(
        "teacher-not-found",
        lambda i: i.train("--method", "kd", "--teacher", str(i.files / "nope")),
        lambda i: i.train("--method", "kd", "--teacher", str(i.teacher)),
        lambda i: str(i.files / "nope"),
    ),
    Case(
        "teacher-not-a-run",
        lambda i: i.train("--method", "kd", "--teacher", str(i.data)),
        lambda i: i.train("--method", "kd", "--teacher", str(i.teacher)),
        lambda i: f"{i.data} is not a run directory",
    ),
    Case(
        "teacher-is-soft-labels-run",
        lambda i: i.train("--method", "kd", "--teacher", str(i.soft_label_run)),
        lambda i: i.train(
            "--method", "reffakd", "--soft-labels", str(i.soft_label_run / "soft_labels.pt")
        ),
        "is a soft-labels run, not a training run; pass its soft_labels.pt with --soft-labels",
    ),
    Case(
        "teacher-unfinished",
        lambda i: i.train("--method", "kd", "--teacher", str(i.files / "run")),
        lambda i: i.train("--method", "kd", "--teacher", str(i.teacher)),
        "unfinished",
        prepare=lambda i: _write(
            i.files / "run" / "config.yaml", (i.teacher / "config.yaml").read_text()
        ),
    ),
    Case(
        "teacher-other-split",
        lambda i: i.train(
            "--method", "kd", "--teacher", str(i.teacher), "--set", "data.val_fraction=0.2"
        ),
        lambda i: i.train("--method", "kd", "--teacher", str(i.teacher)),
        "validation split",
    ),
    Case(
        "teacher-checkpoint-name",
        lambda i: i.train(
            "--method", "kd", "--teacher", str(i.teacher), "--set", "source.checkpoint=final"
        ),
        lambda i: i.train(
            "--method", "kd", "--teacher", str(i.teacher), "--set", "source.checkpoint=last"
        ),
        "'final'",
    ),
]

CONFIG_CASES = [
    Case(
        "config-missing",
        lambda i: i.train("--config", str(i.files / "none.yaml")),
        lambda i: i.train(),
        lambda i: str(i.files / "none.yaml"),
    ),
    Case(
        "config-not-utf8",
        lambda i: i.train(
            "--config", _config(i, "optim:\n  lr: 0.05 # caf\xe9\n".encode("latin-1"))
        ),
        lambda i: i.train("--config", _config(i, "optim:\n  lr: 0.05\n")),
        "not UTF-8",
    ),
    Case(
        "config-not-yaml",
        lambda i: i.train("--config", _config(i, "optim: [1\n")),
        lambda i: i.train("--config", _config(i, "optim: {lr: 0.05}\n")),
        "not valid YAML",
    ),
    Case(
        "config-a-list",
        lambda i: i.train("--config", _config(i, "- 1\n- 2\n")),
        lambda i: i.train("--config", _config(i, "seed: 2\n")),
        "must hold a mapping",
    ),
    Case(
        "config-section-a-number",
        lambda i: i.train("--config", _config(i, "optim: 5\n")),
        lambda i: i.train("--config", _config(i, "optim: {lr: 0.05}\n")),
        "'optim' must be a mapping",
    ),
    Case(
        "config-section-empty",
        lambda i: i.train("--config", _config(i, "loss:\n")),
        lambda i: i.train("--config", _config(i, "loss: {}\n")),
        "'loss' must be a mapping",
    ),
    Case(
        "config-unknown-key",
        lambda i: i.train("--config", _config(i, "optim: {lr: 0.05, lrr: 1}\n")),
        lambda i: i.train("--config", _config(i, "optim: {lr: 0.05}\n")),
        "optim.lrr",
    ),
    Case(
        "config-wrong-type",
        lambda i: i.train("--config", _config(i, "seed: one\n")),
        lambda i: i.train("--config", _config(i, "seed: 1\n")),
        "'one'",
    ),
]

SET_CASES = [
    Case("set-no-equals", lambda i: i.train("--set", "optim.lr"), lambda i: i.train(), "optim.lr"),
    Case(
        "set-into-a-value", lambda i: i.train("--set", "optim.lr.x=1"), lambda i: i.train(), "'lr'"
    ),
    Case("set-section", lambda i: i.train("--set", "optim=5"), lambda i: i.train(), "optim"),
    Case(
        "set-unknown-loss-option",
        lambda i: i.train("--set", "loss.alpah=0.1", "--method", "ls", "--loss", "kd"),
        lambda i: i.train("--set", "loss.alpha=0.1", "--method", "ls", "--loss", "kd"),
        "loss.alpah",
    ),
    Case(
        "set-val-fraction",
        lambda i: i.train("--set", "data.val_fraction=1.5"),
        lambda i: i.train("--set", "data.val_fraction=0.5"),
        "data.val_fraction must be in [0, 1), got 1.5",
    ),
    Case(
        "set-rotation",
        lambda i: i.train("--set", "augment.rotation=400"),
        lambda i: i.train("--set", "augment.rotation=10"),
        "augment.rotation must be in [0, 180] degrees, got 400",
    ),
    Case(
        "set-milestones",
        lambda i: i.train("--set", "optim.milestones=5"),
        lambda i: i.train(),
        "milestones",
    ),
]

IMAGE_FOLDER_CASES = [
    Case(
        "images-one-class",
        lambda i: i.folder(data=write_png_folder(i.files / "one", 28, {"a": (6, 2)})),
        lambda i: i.folder(),
        "1 class",
    ),
    Case(
        "images-one-class-label-smoothing",
        lambda i: i.folder(
            "--method", "ls", data=write_png_folder(i.files / "one", 28, {"a": (6, 2)})
        ),
        lambda i: i.folder("--method", "ls"),
        "1 class",
    ),
    Case(
        "images-one-sample-per-class-soft-labels",
        lambda i: i.soft(
            "--set",
            "data.val_fraction=0.5",
            dataset="imagefolder",
            data=write_png_folder(i.files / "k", 28, {"a": (2, 2), "b": (3, 2)}),
        ),
        lambda i: i.soft(dataset="imagefolder", data=i.images),
        "'a', 'b'",
    ),
    Case(
        "images-class-only-in-test",
        lambda i: i.folder(
            data=write_png_folder(i.files / "t", 28, {"a": (6, 2), "b": (6, 2), "c": (0, 2)})
        ),
        lambda i: i.folder(),
        "class 'c'",
    ),
    Case(
        "images-class-all-held-out",
        lambda i: i.folder(
            "--set",
            "data.val_fraction=0.9",
            data=write_png_folder(i.files / "h", 28, {"a": (6, 2), "b": (1, 2)}),
        ),
        lambda i: i.folder(),
        "class 'b'",
    ),
    Case(
        "images-one-per-class-for-aesl",
        lambda i: i.folder(
            "--method",
            "reffakd",
            "--set",
            "data.val_fraction=0.5",
            "--ae-epochs",
            "1",
            data=write_png_folder(i.files / "k", 28, {"a": (2, 2), "b": (3, 2)}),
        ),
        lambda i: i.folder("--method", "reffakd", "--ae-epochs", "1"),
        "'a'",
    ),
    Case(
        "images-mixed-sizes",
        lambda i: i.folder(data=i.files / "images"),
        lambda i: i.folder(),
        "30x30",
        prepare=lambda i: _bad_image(i, "odd.png", Image.new("L", (30, 30))),
    ),
    Case(
        "images-corrupt-file",
        lambda i: i.folder(data=i.files / "images"),
        lambda i: i.folder(),
        "broken.png",
        prepare=lambda i: _write(
            i.bad_images() / "train" / "a" / "broken.png", b"\x89PNG not really"
        ),
    ),
    Case(
        "images-int32-tiff",
        lambda i: i.folder(data=i.files / "images"),
        lambda i: i.folder(),
        "wide.tif",
        prepare=lambda i: _bad_image(
            i, "wide.tif", Image.fromarray(np.full((28, 28), 70000, np.int32))
        ),
    ),
    Case(
        "images-float-tiff-out-of-range",
        lambda i: i.folder(data=i.files / "images"),
        lambda i: i.folder(),
        "float.tif",
        prepare=lambda i: _bad_image(
            i, "float.tif", Image.fromarray(np.full((28, 28), 3.0, np.float32))
        ),
    ),
    Case(
        "images-lab",
        lambda i: i.folder(data=i.files / "images"),
        lambda i: i.folder(),
        "LAB",
        prepare=lambda i: _bad_image(i, "lab.tif", Image.new("LAB", (28, 28))),
    ),
]

IDX_CASES = [
    Case(
        "idx-truncated",
        lambda i: i.train(data=i.files / "data"),
        lambda i: i.train(),
        "train-images",
        prepare=lambda i: _truncate(i.bad_data() / "train-images-idx3-ubyte.gz"),
    ),
    Case(
        "idx-count-mismatch",
        lambda i: i.train(data=i.files / "data"),
        lambda i: i.train(),
        "holds 7 labels",
        prepare=lambda i: _idx(i, test=torch.arange(7) % 10),
    ),
    Case(
        "idx-label-out-of-range",
        lambda i: i.train(data=i.files / "data"),
        lambda i: i.train(),
        "12",
        prepare=lambda i: _idx(i, labels=torch.where(N == 3, 12, N)),
    ),
    Case(
        "idx-one-class",
        lambda i: i.train(data=i.files / "data"),
        lambda i: i.train(),
        f"class {FMNIST_CLASSES[1]!r}",
        prepare=lambda i: _idx(i, labels=torch.zeros(60, dtype=torch.int64)),
    ),
    Case(
        "idx-class-only-in-test",
        lambda i: i.train(data=i.files / "data"),
        lambda i: i.train(),
        f"class {FMNIST_CLASSES[9]!r} of fashion-mnist has test images",
        prepare=lambda i: _idx(i, labels=torch.where(N == 9, 0, N)),
    ),
    Case(
        "idx-bad-magic",
        lambda i: i.train(data=i.files / "data"),
        lambda i: i.train(),
        "t10k-images",
        prepare=lambda i: _write(
            i.bad_data() / "t10k-images-idx3-ubyte.gz",
            gzip.compress(struct.pack(">IIII", 2049, 20, 28, 28) + bytes(20 * 28 * 28)),
        ),
    ),
]


def _run_in(i: Inputs) -> None:
    _copy_run(i.teacher, i.out)


OUT_AND_RESUME_CASES = [
    Case(
        "out-is-a-file",
        lambda i: i.train(),
        lambda i: i.train(),
        lambda i: f"{i.out} is a file",
        prepare=lambda i: _write(i.out, "notes\n"),
        repair=lambda i: i.out.unlink(),
    ),
    Case(
        "out-under-a-file",
        lambda i: i.train(out=i.out / "run"),
        lambda i: i.train(out=i.out / "run"),
        lambda i: str(i.out / "run"),
        prepare=lambda i: _write(i.out, "notes\n"),
        repair=lambda i: i.out.unlink(),
    ),
    Case(
        "out-on-read-only-mount",
        lambda i: i.train(),
        lambda i: i.train(),
        lambda i: f"{i.out}: Read-only file system",
        simulate=lambda i: refused("mkdir", i.out, errno.EROFS),
    ),
    Case(
        "out-without-permission",
        lambda i: i.train(),
        lambda i: i.train(),
        lambda i: f"{i.out}: Permission denied",
        prepare=lambda i: i.out.mkdir(),
        simulate=lambda i: refused("open", i.out, errno.EACCES),
    ),
    Case(
        "out-disk-full",
        lambda i: i.train(),
        lambda i: i.train(),
        lambda i: f"{i.out / 'config.yaml'}: No space left on device",
        simulate=lambda i: full_disk(i.out / "config.yaml"),
    ),
    Case(
        "out-holds-a-run",
        lambda i: i.train(),
        lambda i: ["train", "--resume", str(i.out), "--no-progress"],
        lambda i: f"{i.out} already holds",
        prepare=_run_in,
    ),
    Case(
        "resume-not-found",
        lambda i: ["train", "--resume", str(i.out)],
        lambda i: i.train(),
        lambda i: str(i.out),
    ),
    Case(
        "resume-changes-lr",
        lambda i: ["train", "--resume", str(i.out), "--lr", "0.2"],
        lambda i: ["train", "--resume", str(i.out)],
        "--lr 0.05 -> 0.2",
        prepare=_run_in,
    ),
    Case(
        "resume-changes-method",
        lambda i: ["train", "--resume", str(i.out), "--method", "ls"],
        lambda i: ["train", "--resume", str(i.out), "--method", "ce", "--no-progress"],
        "--method 'ce' -> 'ls'",
        prepare=_run_in,
    ),
    Case(
        "resume-fewer-epochs",
        lambda i: ["train", "--resume", str(i.out), "--epochs", "1"],
        lambda i: ["train", "--resume", str(i.out), "--epochs", "2"],
        "--epochs 1",
        prepare=_run_in,
    ),
    Case(
        "resume-other-out",
        lambda i: ["train", "--resume", str(i.out), "--out", str(i.files / "elsewhere")],
        lambda i: ["train", "--resume", str(i.out), "--out", str(i.out)],
        lambda i: f"drop --out {i.files / 'elsewhere'}",
        prepare=_run_in,
    ),
    Case(
        "resume-a-soft-labels-run",
        lambda i: ["train", "--resume", str(i.out)],
        lambda i: ["soft-labels", "--out", str(i.out), "--resume"],
        "is a soft-labels run",
        prepare=lambda i: _copy_run(i.soft_label_run, i.out),
    ),
    Case(
        "soft-labels-resume-a-training-run",
        lambda i: ["soft-labels", "--out", str(i.out), "--resume"],
        lambda i: ["train", "--resume", str(i.out)],
        lambda i: f"continue it with `reffakd train --resume {i.out}`",
        prepare=_run_in,
    ),
    Case(
        "soft-labels-resume-changes-epochs",
        lambda i: ["soft-labels", "--out", str(i.out), "--resume", "--epochs", "3"],
        lambda i: ["soft-labels", "--out", str(i.out), "--resume", "--epochs", "1"],
        "--epochs 1 -> 3",
        prepare=lambda i: _copy_run(i.soft_label_run, i.out),
    ),
]

# Text datasets join here when they land: bad encodings, a missing label column, empty lines.
WORDS = {"pos": "good great fine lovely", "neg": "bad awful poor dull"}


def write_textfile(path: Path, broken: str | None = None) -> Path:
    """A TSV with a header (``text<TAB>label``), 16 texts per class; ``broken`` (a raw line)
    replaces the fifth row."""
    rows = [f"{WORDS[label]} number {i}\t{label}" for i in range(16) for label in ("pos", "neg")]
    if broken is not None:
        rows[4] = broken
    return _write(path, "text\tlabel\n" + "\n".join(rows) + "\n")


def text_train(i: Inputs, *extra: str, data: Path | None = None) -> list[str]:
    """A one-epoch textcnn run on a tiny TSV of the user's own (``textfile``)."""
    data = data or write_textfile(i.files / "good.tsv")
    return [
        "train",
        "--dataset",
        "textfile",
        "--data-dir",
        str(data),
        "--student",
        "textcnn",
        "--out",
        str(i.out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        *SPEED,
        *extra,
    ]


TEXT_CASES = [
    Case(
        "text-not-utf8",
        lambda i: text_train(
            i,
            data=_write(i.files / "latin1.tsv", "text\tlabel\ncaf\xe9 ok\tpos\n".encode("latin-1")),
        ),
        lambda i: text_train(i),
        "latin1.tsv",
    ),
    Case(
        "text-missing-label-column",
        lambda i: text_train(i, "--set", "data.textfile.label_column=stars"),
        lambda i: text_train(i),
        "'stars'",
    ),
    Case(
        "text-empty-text",
        lambda i: text_train(i, data=write_textfile(i.files / "empty.tsv", broken="   \tpos")),
        lambda i: text_train(i),
        "empty text",
    ),
    Case(
        "text-too-many-columns",
        lambda i: text_train(i, data=write_textfile(i.files / "wide.tsv", broken="a\tb\tpos")),
        lambda i: text_train(i),
        "wide.tsv",
    ),
    Case(
        "text-one-class",
        lambda i: text_train(
            i, data=_write(i.files / "one.tsv", "text\tlabel\n" + "good words\tpos\n" * 20)
        ),
        lambda i: text_train(i),
        "1 class",
    ),
    Case(
        "text-model-on-images",
        lambda i: i.train("--student", "textcnn"),
        lambda i: i.train(),
        "textcnn",
    ),
]


# Round two: every family below once more, one row per mechanism.
def _fifo(i: Inputs) -> None:
    os.mkfifo(i.bad_images() / "train" / "a" / "pipe.png")


def _dangling(i: Inputs) -> None:
    (i.bad_images() / "train" / "a" / "gone.png").symlink_to(i.files / "nowhere.png")


def _other_folder(i: Inputs, classes: dict[str, tuple[int, int]]) -> Path:
    """Another image folder of the same shape (28x28 grayscale) and class count."""
    return write_png_folder(i.files / "other", 28, classes)


def _folder_run(i: Inputs, out: Path, data: Path, *extra: str) -> list[str]:
    args = i.folder(*extra, data=data)
    args[args.index("--out") + 1] = str(out)
    return args


def _folder_teacher(i: Inputs, data: Path) -> None:
    assert main(_folder_run(i, i.files / "teacher", data)) == 0


READER_CASES = [
    Case(
        "images-fifo-named-like-an-image",
        lambda i: i.folder(data=i.files / "images"),
        lambda i: i.folder(),
        "pipe.png is not a regular file",
        prepare=_fifo,
    ),
    Case(
        "images-dangling-symlink",
        lambda i: i.folder(data=i.files / "images"),
        lambda i: i.folder(),
        "gone.png is a dangling symlink",
        prepare=_dangling,
    ),
    Case(
        "images-folder-unreadable",
        lambda i: i.folder(data=i.files / "images"),
        lambda i: i.folder(),
        "Permission denied",
        prepare=lambda i: i.bad_images(),
        simulate=lambda i: unlistable(i.files / "images" / "train"),
    ),
    Case(
        "data-dir-is-a-file",
        lambda i: i.train(data=_write(i.files / "fashion.gz", b"not a folder")),
        lambda i: i.train(),
        "is a file, not a folder",
    ),
    Case(
        "cifar-labels-not-integers",
        lambda i: i.train("--dataset", "cifar10", "--student", "resnet8", data=i.files / "cifar"),
        lambda i: i.train(),
        "should hold integer labels",
        prepare=lambda i: _cifar(i.files / "cifar" / "cifar-10-batches-py", labels="floats"),
    ),
    Case(
        "cifar-label-names-not-a-list",
        lambda i: i.train("--dataset", "cifar10", "--student", "resnet8", data=i.files / "cifar"),
        lambda i: i.train(),
        "should be a list of class names",
        prepare=lambda i: _cifar(i.files / "cifar" / "cifar-10-batches-py", names="text"),
    ),
]


def _cifar(folder: Path, labels: str = "ints", names: str = "list") -> None:
    """A tiny ``cifar-10-batches-py`` whose labels or label names are of the wrong type."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for rel in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        values = [k % 10 for k in range(10)]
        batch = {
            b"data": rng.integers(0, 255, (10, 3072), dtype=np.uint8),
            b"labels": [float(v) + 0.5 for v in values] if labels == "floats" else values,
        }
        dump(folder / rel, batch)
    label_names = [f"c{k}".encode() for k in range(10)]
    dump(folder / "batches.meta", {b"label_names": b"c0 c1" if names == "text" else label_names})


def _sst2(folder: Path, header: bool) -> Path:
    """GLUE's SST-2 files, 12 sentences per class, with or without their header line."""
    rows = "".join(f"{WORDS[('neg', 'pos')[k % 2]]} {k}\t{k % 2}\n" for k in range(24))
    for name in ("train.tsv", "dev.tsv"):
        _write(folder / name, ("sentence\tlabel\n" if header else "") + rows)
    return folder


TEXT_LABEL_CASES = [
    Case(
        "text-integer-labels-skip-values",
        lambda i: text_train(
            i,
            data=_write(
                i.files / "gaps.tsv",
                "text\tlabel\n" + "".join(f"word {k}\t{(0, 3)[k % 2]}\n" for k in range(32)),
            ),
        ),
        lambda i: text_train(i),
        "the integer labels skip 1, 2",
    ),
    Case(
        "text-labels-mix-integers-and-names",
        lambda i: text_train(
            i,
            data=_write(
                i.files / "mixed.tsv",
                "text\tlabel\n"
                + "".join(f"word {k}\t{('0', '1', 'neg', 'pos')[k % 4]}\n" for k in range(32)),
            ),
        ),
        lambda i: text_train(i),
        "label 'neg' is a name, but line 2 has the integer label 0",
    ),
    Case(
        "sst2-without-header",
        lambda i: text_train(i, "--dataset", "sst2", data=_sst2(i.files / "sst2", False)),
        lambda i: text_train(i, "--dataset", "sst2", data=_sst2(i.files / "sst2-ok", True)),
        "lacks 'sentence' and 'label'",
    ),
]

ROUND_TWO_TEACHER_CASES = [
    Case(
        "teacher-other-class-names",
        lambda i: i.folder("--method", "kd", "--teacher", str(i.files / "teacher")),
        lambda i: i.folder("--method", "kd", "--teacher", str(i.files / "own-teacher")),
        "made on other data than this run's (class names ['c', 'd'] -> ['a', 'b'])",
        prepare=lambda i: (
            _folder_teacher(i, _other_folder(i, {"c": (6, 2), "d": (6, 2)})),
            main(_folder_run(i, i.files / "own-teacher", i.images)),
        ),
    ),
    Case(
        "teacher-same-classes-other-images",
        lambda i: i.folder("--method", "kd", "--teacher", str(i.files / "teacher")),
        lambda i: i.folder("--method", "kd", "--teacher", str(i.files / "own-teacher")),
        "split sizes train 11 -> 10",
        prepare=lambda i: (
            _folder_teacher(i, _other_folder(i, {"a": (7, 2), "b": (5, 2)})),
            main(_folder_run(i, i.files / "own-teacher", i.images)),
        ),
    ),
    Case(
        "teacher-config-unreadable",
        lambda i: i.train("--method", "kd", "--teacher", str(i.files / "teacher")),
        lambda i: i.train("--method", "kd", "--teacher", str(i.teacher)),
        lambda i: f"{i.files / 'teacher' / 'config.yaml'}: Permission denied",
        prepare=lambda i: _copy_run(i.teacher, i.files / "teacher"),
        simulate=lambda i: unreadable(i.files / "teacher" / "config.yaml"),
    ),
    Case(
        "teacher-loss-option-a-list",
        lambda i: i.train(
            "--method", "kd", "--teacher", str(i.teacher), "--set", "loss.alpha=[0.5]"
        ),
        lambda i: i.train("--method", "kd", "--teacher", str(i.teacher), "--set", "loss.alpha=0.5"),
        "option 'loss.alpha' of loss 'kd' must be a number, got [0.5]",
    ),
]


def _unfinished_run(i: Inputs, edit: Callable[[dict], object]) -> None:
    """The 2-epoch teacher as an unfinished run in --out, its last.pt changed by ``edit`` (the
    original is kept beside it for the repair)."""
    _copy_run(i.teacher, i.out)
    (i.out / "summary.json").unlink()
    last = i.out / "checkpoints" / "last.pt"
    shutil.copy(last, i.files / "last.pt")
    state = torch.load(last, weights_only=True)
    edit(state)
    torch.save(state, last)


def _restore_last(i: Inputs) -> None:
    shutil.copy(i.files / "last.pt", i.out / "checkpoints" / "last.pt")


def _extend(i: Inputs) -> list[str]:
    """Resume the finished 2-epoch run in --out for a third epoch."""
    return ["train", "--resume", str(i.out), "--epochs", "3", "--no-progress"]


RESUME_CASES = [
    Case(
        "resume-on-other-labels",
        lambda i: [*_extend(i), "--data-dir", str(i.files / "data")],
        lambda i: _extend(i),
        "made on other data than this run's (other labels in the train/val splits",
        prepare=lambda i: (_run_in(i), _idx(i, labels=torch.roll(N, 1))),
    ),
    Case(
        "resume-on-other-class-counts",
        lambda i: [*_extend(i), "--data-dir", str(i.files / "data")],
        lambda i: _extend(i),
        "split sizes train",
        prepare=lambda i: (_run_in(i), _idx(i, labels=torch.where(torch.arange(60) == 3, 4, N))),
    ),
    Case(
        "soft-labels-resume-on-other-labels",
        lambda i: [
            *["soft-labels", "--out", str(i.out), "--resume", "--no-progress"],
            *["--data-dir", str(i.files / "data")],
        ],
        lambda i: ["soft-labels", "--out", str(i.out), "--resume", "--no-progress"],
        "made on other data than this run's (other labels in the train/val splits",
        prepare=lambda i: (
            _copy_run(i.soft_label_run, i.out),
            (i.out / "summary.json").unlink(),
            _idx(i, labels=torch.roll(N, 1)),
        ),
    ),
    Case(
        "resume-checkpoint-without-history",
        lambda i: ["train", "--resume", str(i.out)],
        lambda i: ["train", "--resume", str(i.out), "--no-progress"],
        "does not match this run (it has no history)",
        prepare=lambda i: _unfinished_run(i, lambda state: state.pop("history")),
        repair=_restore_last,
    ),
    Case(
        "resume-checkpoint-of-another-model",
        lambda i: ["train", "--resume", str(i.out)],
        lambda i: ["train", "--resume", str(i.out), "--no-progress"],
        "does not match this run (no weights for",
        prepare=lambda i: _unfinished_run(i, lambda state: state.update(model={})),
        repair=_restore_last,
    ),
]

OS_ERROR_CASES = [
    Case(
        "data-dir-unreadable",
        lambda i: i.train(data=i.files / "data"),
        lambda i: i.train(),
        "(Permission denied); check the permissions of --data-dir",
        prepare=lambda i: i.bad_data(),
        simulate=lambda i: unsearchable(i.files / "data"),
    ),
    Case(
        "config-unreadable",
        lambda i: i.train("--config", _config(i, "seed: 1\n")),
        lambda i: i.train("--config", _config(i, "seed: 1\n")),
        lambda i: f"{i.files / 'config.yaml'}: Permission denied",
        simulate=lambda i: unreadable(i.files / "config.yaml"),
    ),
    Case(
        "config-name-too-long",
        lambda i: i.train("--config", str(i.files / ("c" * 300 + ".yaml"))),
        lambda i: i.train(),
        "File name too long",
    ),
    Case(
        "data-file-unreadable",
        lambda i: i.train(data=i.files / "data"),
        lambda i: i.train(),
        "Permission denied",
        prepare=lambda i: i.bad_data(),
        simulate=lambda i: unreadable(i.files / "data" / "fashion-mnist"),
    ),
]


def _hold_lock(i: Inputs) -> None:
    """``i.out`` holds a run that another process is still running (its lock is taken)."""
    _copy_run(i.teacher, i.out)
    fd = os.open(i.out / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": 4242, "host": "elsewhere"}).encode())
    i.lock_fd = fd


def _release_lock(i: Inputs) -> None:
    os.close(i.lock_fd)
    (i.out / ".lock").unlink()


@contextlib.contextmanager
def broken_package(name: str) -> Iterator[None]:
    """Importing ``name`` fails inside the package, as a broken install does."""
    real = importlib.import_module

    def fake(module, *args, **kwargs):
        if module == name:
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(importlib, "import_module", fake)
        yield


def _flat_images(i: Inputs) -> Path:
    """Images straight in the folder, no class folders."""
    flat = i.files / "flat"
    flat.mkdir()
    for number in range(4):
        Image.new("L", (28, 28), 40 * number).save(flat / f"{number}.png")
    return flat


# First-run frictions: what a new user typed, and what the message now says.
FIRST_RUN_CASES = [
    Case(
        "set-key-typo",
        lambda i: i.train("--set", "optim.lrr=0.05"),
        lambda i: i.train("--set", "optim.lr=0.05"),
        "did you mean 'optim.lr'?",
    ),
    Case(
        "set-loss-option-typo",
        lambda i: i.train("--method", "ls", "--loss", "kd", "--set", "loss.temprature=2"),
        lambda i: i.train("--method", "ls", "--loss", "kd", "--set", "loss.temperature=2"),
        "did you mean 'loss.temperature'?",
    ),
    Case(
        "soft-labels-folder-without-them",
        lambda i: i.train("--method", "reffakd", "--soft-labels", str(i.files)),
        lambda i: i.train("--method", "reffakd", "--soft-labels", str(i.soft_label_run)),
        lambda i: f"folder {i.files} holds no soft_labels.pt",
    ),
    Case(
        "images-without-class-folders",
        lambda i: i.folder(data=_flat_images(i)),
        lambda i: i.folder(),
        "holds images but no class folders; imagefolder takes one folder per class",
    ),
    Case(
        "train-limit-keeps-no-class",
        lambda i: i.train("--set", "data.train_limit=2"),
        lambda i: i.train("--set", "data.train_limit=30"),
        "data.train_limit=2 keeps no training image of class",
    ),
    Case(
        "out-holds-a-running-run",
        lambda i: i.train(),
        lambda i: ["train", "--resume", str(i.out), "--no-progress"],
        "still running (process 4242 on elsewhere)",
        prepare=_hold_lock,
        repair=_release_lock,
    ),
    Case(
        "timm-install-broken",
        lambda i: i.train("--student", "timm:resnet18"),
        lambda i: i.train(),
        "importing timm failed (RuntimeError: operator torchvision::nms does not exist)",
        simulate=lambda i: broken_package("timm"),
    ),
]

CASES = (
    NAME_CASES
    + NUMBER_CASES
    + SOFT_LABEL_FILE_CASES
    + TEACHER_CASES
    + CONFIG_CASES
    + SET_CASES
    + IMAGE_FOLDER_CASES
    + IDX_CASES
    + OUT_AND_RESUME_CASES
    + TEXT_CASES
    + READER_CASES
    + TEXT_LABEL_CASES
    + ROUND_TWO_TEACHER_CASES
    + RESUME_CASES
    + OS_ERROR_CASES
    + FIRST_RUN_CASES
)


def snapshot(path: Path) -> object:
    """Everything under ``path``: None when absent, the bytes of a file, or {relative: bytes}."""
    if not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else "dir")
        for p in sorted(path.rglob("*"))
    }


def _run_folder(argv: list[str]) -> Path:
    """The run directory a command works in: ``train --resume``'s, else ``--out``."""
    if argv[0] == "train" and "--resume" in argv:
        return Path(argv[argv.index("--resume") + 1])
    return Path(argv[argv.index("--out") + 1])


def run_main(argv: list[str]) -> int:
    """``main``, with argparse's exit turned into its code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_the_table_is_large_enough():
    assert len(CASES) >= 75
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_bad_input_is_refused_cleanly_and_the_fix_succeeds(case: Case, inputs: Inputs, capsys):
    if case.prepare is not None:
        case.prepare(inputs)
        capsys.readouterr()  # what the preparing runs printed (their warnings) is not checked
    bad = case.bad(inputs)
    out = _run_folder(bad)
    before = snapshot(out)
    simulate = case.simulate(inputs) if case.simulate else contextlib.nullcontext()
    with simulate:
        code = run_main(bad)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("reffakd: error:"), err
    names = case.names(inputs) if callable(case.names) else case.names
    assert names.lower() in err.lower(), err
    assert snapshot(out) == before, "the refused command changed its folder"

    if case.repair is not None:
        case.repair(inputs)
    fixed = case.fixed(inputs)
    assert run_main(fixed) == 0, capsys.readouterr().err
    assert _run_folder(fixed) == out  # the same folder the refused command was given
    summary = json.loads((out / "summary.json").read_text())
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert summary["epochs"] == config["optim"]["epochs"]


# --------------------------------------------------------------------------- was refused, now works
@pytest.mark.parametrize("size", [28, 40, 64])
def test_the_autoencoder_takes_any_image_size(size, tmp_path, capsys):
    """The CAE needs a multiple of 8: other sizes are resized up to the next one."""
    folder = write_png_folder(tmp_path / "images", size, {"a": (6, 2), "b": (6, 2), "c": (6, 2)})
    common = ["--dataset", "imagefolder", "--data-dir", str(folder), "--epochs", "1", *SPEED]
    labels = tmp_path / "aesl"
    assert main(["soft-labels", *common, "--out", str(labels), "-k", "3"]) == 0
    side = -(-size // 8) * 8
    summary = json.loads((labels / "summary.json").read_text())
    cae = summary["cost"]["phases"][0]["networks"]["cae"]
    assert list(cae["input_shape"]) == [1, side, side]
    table = torch.load(labels / "soft_labels.pt", weights_only=True)["soft_labels"]
    assert table.shape == (3, 3) and torch.allclose(table.sum(1), torch.ones(3))
    student = ["train", *common, "--student", "lenet5", "--method", "reffakd"]
    assert (
        main(
            [
                *student,
                "--soft-labels",
                str(labels / "soft_labels.pt"),
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    if size == 28:  # the case: the autoencoder trained inside a 28x28 student run
        assert main([*student, "--ae-epochs", "1", "--out", str(tmp_path / "inline")]) == 0
        made = torch.load(tmp_path / "inline" / "ae" / "soft_labels.pt", weights_only=True)
        assert made["soft_labels"].shape == (3, 3)


def test_resume_with_more_epochs_is_bit_identical_to_asking_for_them(inputs, capsys):
    """--resume RUN --epochs N extends a finished run: the same as N epochs from the start."""
    args = inputs.train("--set", "optim.milestones=[1]")
    args[args.index("--epochs") + 1] = "3"
    whole = inputs.files / "whole"
    args[args.index("--out") + 1] = str(whole)
    assert main(args) == 0
    assert main(inputs.train()) == 0  # one epoch, finished
    assert main(["train", "--resume", str(inputs.out), "--epochs", "3", "--no-progress"]) == 0
    assert _final_state(inputs.out) == _final_state(whole)


def _final_state(run: Path) -> tuple[list[dict], dict[str, list]]:
    records = epoch_records(run)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    summary = json.loads((run / "summary.json").read_text())
    return records, {k: v.tolist() for k, v in state.items()}, summary["epochs"]


# ---------------------------------------------------------------- kills, interrupts, full disks
@contextlib.contextmanager
def full_disk(target: Path, after: int = 0) -> Iterator[None]:
    """Writes of ``target`` through files.atomic_write_bytes fail with ENOSPC (at fsync, as on
    a real full disk) after ``after`` successful ones."""
    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync
    temps: dict[int, str] = {}
    done = [0]

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        temps[fd] = name
        return fd, name

    def fsync(fd):
        name = temps.get(fd, "")
        if Path(name).parent == target.parent and Path(name).name.startswith(f".{target.name}."):
            done[0] += 1
            if done[0] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", mkstemp)
        patch.setattr(os, "fsync", fsync)
        yield


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(inputs, capsys):
    args = inputs.train()
    args[args.index("--epochs") + 1] = "2"
    last = inputs.out / "checkpoints" / "last.pt"
    with full_disk(last, after=1):
        assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{last}: No space left on device" in lines[0]
    assert f"reffakd train --resume {inputs.out}" in lines[0]
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the previous checkpoint, intact
    assert not list(inputs.out.rglob("*.tmp"))  # the half-written temp file was removed
    assert main(["train", "--resume", str(inputs.out), "--no-progress"]) == 0
    whole = inputs.files / "whole"
    args[args.index("--out") + 1] = str(whole)
    assert main(args) == 0
    assert _final_state(inputs.out) == _final_state(whole)


def test_an_interrupt_names_the_run_and_how_to_continue(inputs, capsys, monkeypatch):
    real = engine.Trainer.run_epoch

    def interrupted(self, epoch, *args):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, epoch, *args)

    args = inputs.train()
    args[args.index("--epochs") + 1] = "2"
    monkeypatch.setattr(engine.Trainer, "run_epoch", interrupted)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert (
        err.strip() == f"reffakd: interrupted; continue with `reffakd train --resume {inputs.out}`."
    )
    monkeypatch.setattr(engine.Trainer, "run_epoch", real)
    assert main(["train", "--resume", str(inputs.out), "--no-progress"]) == 0

    soft = inputs.soft()
    soft[soft.index("--out") + 1] = str(inputs.files / "aesl")
    soft[soft.index("--epochs") + 1] = "2"
    monkeypatch.setattr(engine.Trainer, "run_epoch", interrupted)
    assert main(soft) == 130
    err = capsys.readouterr().err
    assert f"`reffakd soft-labels --out {inputs.files / 'aesl'} --resume`" in err


def test_orphan_temp_files_are_removed_when_a_run_continues(inputs):
    assert main(inputs.train()) == 0
    (inputs.out / "summary.json").unlink()
    orphans = [
        _write(inputs.out / "checkpoints" / ".last.pt.k2j4h5g6.tmp", b"half a checkpoint"),
        _write(inputs.out / ".metrics.jsonl.a1b2c3d4.tmp", b"{"),
    ]
    keep = _write(inputs.out / "notes.tmp", b"the user's own file")
    assert main(["train", "--resume", str(inputs.out), "--no-progress"]) == 0
    assert not any(orphan.exists() for orphan in orphans)
    assert keep.read_bytes() == b"the user's own file"


@pytest.mark.parametrize(
    "case_id",
    [
        "out-under-a-file",
        "config-not-utf8",
        "seed-2**64",
        "images-fifo-named-like-an-image",  # no hang: the reader never opens the pipe
        "config-name-too-long",
        "resume-checkpoint-without-history",
    ],
)
def test_errors_through_the_real_entry_point_have_no_traceback(case_id, inputs):
    """The table's cases in-process, a few of them again as ``python -m reffakd``."""
    case = next(case for case in CASES if case.id == case_id)
    if case.prepare is not None:
        case.prepare(inputs)
    result = subprocess.run(
        [sys.executable, "-m", "reffakd", *case.bad(inputs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    names = case.names(inputs) if callable(case.names) else case.names
    assert len(lines) == 1 and names.lower() in lines[0].lower(), result.stderr


# --------------------------------------------------------------------------- the run record
def test_the_command_is_recorded_before_the_autoencoder_phase(inputs, capsys, monkeypatch):
    """A run killed while its autoencoder trains (its first work) still names its command."""

    def killed(self, epoch, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.Trainer, "run_epoch", killed)
    args = inputs.train("--method", "reffakd", "--ae-epochs", "1")
    assert main(args) == 130
    capsys.readouterr()
    assert (inputs.out / "config.yaml").is_file() and (inputs.out / "data.json").is_file()
    assert (inputs.out / "command.txt").read_text() == shlex.join(["reffakd", *args]) + "\n"


def test_a_run_without_a_data_record_resumes(inputs, capsys):
    """Runs made before data.json existed have nothing to compare, and are accepted."""
    _run_in(inputs)
    (inputs.out / "data.json").unlink()
    assert main(_extend(inputs)) == 0
    assert json.loads((inputs.out / "data.json").read_text())["split_sizes"]["train"] == 50


# --------------------------------------------------------------------------- bench
def _suite_file(i: Inputs, student: str) -> str:
    suite = {
        "name": "tiny",
        "datasets": ["fashion-mnist"],
        "methods": ["ce"],
        "student": {"student": student, "optim": {"epochs": 1, "milestones": [1]}},
    }
    return str(_write(i.files / "suite.yaml", yaml.safe_dump(suite)))


def _bench(i: Inputs, student: str = "lenet5") -> list[str]:
    return ["bench", _suite_file(i, student), "--out", str(i.out), "--data-dir", str(i.data)]


@pytest.mark.parametrize(
    ("bad", "names", "prepare", "simulate"),
    [
        (lambda i: _bench(i, "lenet6"), "lenet6", None, None),
        (_bench, lambda i: f"{i.out} is a file", lambda i: _write(i.out, "notes\n"), None),
        (
            _bench,
            lambda i: f"{i.out}: Read-only file system",
            None,
            lambda i: refused("mkdir", i.out, errno.EROFS),
        ),
    ],
    ids=["bench-suite-refused", "bench-out-is-a-file", "bench-out-read-only"],
)
def test_bench_checks_the_whole_suite_before_writing(inputs, capsys, bad, names, prepare, simulate):
    """A refused suite leaves --out as it was: no suite.yaml, no command.txt."""
    if prepare is not None:
        prepare(inputs)
    before = snapshot(inputs.out)
    with simulate(inputs) if simulate else contextlib.nullcontext():
        assert run_main(bad(inputs)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert (names(inputs) if callable(names) else names) in err
    assert snapshot(inputs.out) == before
    if inputs.out.is_file():
        inputs.out.unlink()
    assert run_main(_bench(inputs)) == 0
    assert (inputs.out / "results.md").is_file()


def test_tune_refuses_a_grid_value_before_writing(inputs, capsys):
    args = ["tune", "--dataset", "fashion-mnist", "--data-dir", str(inputs.data)]
    args += ["--student", "lenet5", "--method", "ls", "--set", "loss.name=kd", "--epochs", "1"]
    args += ["--grid", "loss.alpha=[0.5", "--out", str(inputs.out), "--no-progress"]
    assert run_main(args) == 2
    err = capsys.readouterr().err
    assert "option 'loss.alpha' of loss 'kd' must be a number, got '[0.5'" in err, err
    assert not inputs.out.exists()


# --------------------------------------------------------------------------- the Python API
def test_input_errors_of_the_api_are_value_and_type_errors(inputs):
    config = TrainConfig(student="lenet6")
    config.data.name, config.data.data_dir = "fashion-mnist", str(inputs.data)
    with pytest.raises(ValueError, match="lenet6"):
        train_student(config, inputs.out)
    with pytest.raises(TypeError, match="'seed' must be an integer"):
        from_dict(TrainConfig, {"seed": "one"})
    with pytest.raises(TypeError, match="student must be a torch nn.Module, got str"):
        train_student(TrainConfig(), inputs.out, student="lenet5")
    with pytest.raises(TypeError, match="cannot read samples from a object"):
        train_student(TrainConfig(student="lenet5"), inputs.out, data=object())
    with pytest.raises(ValueError, match="1 class"):
        train_student(
            TrainConfig(student="lenet5"),
            inputs.out,
            data={"train": (torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.int64))},
        )
    assert not inputs.out.exists()


def test_a_huge_label_is_refused_before_classes_are_built(inputs):
    labels = torch.tensor([0, 10**12] * 4)
    with pytest.raises(ValueError, match="would make 1,000,000,000,001 classes"):
        train_student(
            TrainConfig(student="lenet5"), inputs.out, data=(torch.zeros(8, 28, 28), labels)
        )


@pytest.mark.parametrize(
    ("logits", "labels", "error", "message"),
    [
        (
            torch.randn(4, 3),
            torch.tensor([0.0, 1.0, 2.0, 0.0]),
            TypeError,
            "labels must be integer",
        ),
        (torch.randn(4, 3), [0, 1, 2, 0], TypeError, "labels must be a torch.Tensor, got list"),
        (torch.randn(4, 3).tolist(), torch.tensor([0, 1, 2, 0]), TypeError, "logits must be a"),
        (torch.randn(4, 3), torch.tensor([0, 1, 3, 0]), ValueError, r"lie in \[0, 3\)"),
        (torch.randn(4, 3), torch.tensor([0, -1, 2, 0]), ValueError, r"found \[-1, 2\]"),
        (torch.randn(4, 3), torch.tensor([0, 1]), ValueError, r"shape \(4,\)"),
    ],
    ids=["float-labels", "list-labels", "list-logits", "label-too-large", "negative", "count"],
)
def test_drop_in_losses_name_the_bad_argument(logits, labels, error, message):
    criterion = LabelSmoothingLoss(3)
    with pytest.raises(error, match=message):
        criterion(logits, labels)


def test_drop_in_losses_give_nan_for_nan_logits_as_torch_does():
    logits = torch.full((2, 3), float("nan"))
    assert torch.isnan(LabelSmoothingLoss(3)(logits, torch.tensor([0, 1])))


# --------------------------------------------------------------------------- OS errors, one place
def test_an_out_name_longer_than_the_file_system_allows_is_one_line(inputs, capsys):
    assert run_main(inputs.train(out=inputs.files / ("o" * 300))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "File name too long; fix the path." in err
    assert list(inputs.files.iterdir()) == []


def test_only_the_users_os_errors_become_messages():
    """Errors of the user's files are worded; others (a bug) keep their traceback."""
    refused = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/x.yaml")
    message = os_error_message(refused)
    assert (
        message
        == "/data/x.yaml: Permission denied; check the permissions of the file and its folders"
    )
    assert os_error_message(OSError(errno.EBADF, os.strerror(errno.EBADF))) is None


def test_the_fingerprint_names_what_differs(inputs):
    recorded = {
        "class_names": ["a", "b"],
        "split_sizes": {"train": 10, "val": 2, "test": 4},
        "labels_sha256": {"train": "1", "val": "2", "test": "3"},
    }
    assert fingerprint_difference(recorded, recorded) is None
    other = {**recorded, "labels_sha256": {"train": "1", "val": "2", "test": "9"}}
    assert (
        fingerprint_difference(recorded, other)
        == "other labels in the test split at the same sizes"
    )
    names = [f"c{k}" for k in range(10)]
    assert fingerprint_difference(recorded, {**recorded, "class_names": names}) == (
        "class names ['a', 'b'] -> ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', ...] (10 classes)"
    )


def test_loss_options_take_any_number_and_refuse_other_types():
    assert KDLoss(nn.Linear(2, 3), alpha=np.float32(0.5), temperature=np.int64(4)) is not None
    with pytest.raises(TypeError, match="option 'loss.alpha' of loss 'kd' must be a number"):
        KDLoss(nn.Linear(2, 3), alpha=[0.5])
    with pytest.raises(TypeError, match="option 'loss.temperature' of loss 'kd' must be a number"):
        KDLoss(nn.Linear(2, 3), temperature="4")
