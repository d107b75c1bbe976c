"""A user's nn.Module and data through train_student, and models named by import path."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
import yaml
from conftest import train_args
from torch import nn

from reffakd.cli import main
from reffakd.config import OptimConfig, TrainConfig
from reffakd.distill.train import train_student
from reffakd.errors import UserError
from reffakd.models import build_model, check_model_name


class TinyNet(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(12 * 12, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def user_data(n: int = 80):
    """4 classes of 12x12 images, class k bright in row band k: learnable in a few steps."""
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(n) % 4
    images = torch.randint(0, 50, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
    for k in range(4):
        images[labels == k, :, 3 * k : 3 * k + 3, :] = 220
    return images, labels


def config(epochs: int = 2, method: str = "ce") -> TrainConfig:
    return TrainConfig(
        method=method,
        optim=OptimConfig(epochs=epochs, batch_size=20, lr=0.1, milestones=[10]),
        device="cpu",
        progress=False,
    )


def test_a_user_module_trains_on_user_data(tmp_path) -> None:
    images, labels = user_data()
    student = TinyNet()
    before = student.net[1].weight.detach().clone()
    data = {"train": (images, labels), "test": (images[:20], labels[:20])}
    summary = train_student(config(), tmp_path / "run", student=student, data=data)
    assert summary.student == "<user module TinyNet>" and summary.dataset == "user data"
    assert summary.split_sizes == {"train": 72, "val": 8, "test": 20}
    assert summary.best["test_top1"] == 100.0  # the bands are easy
    assert not torch.equal(student.net[1].weight, before)  # trained in place
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["student"] == "<user module TinyNet>"
    assert recorded["data"]["name"] == "user data"
    # metrics.csv holds the same columns and values as metrics.jsonl
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    header, *rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert header.split(",") == list(records[0])
    assert [float(v) for v in rows[1].split(",")] == pytest.approx(list(records[1].values()))


def test_reffakd_with_a_user_module_makes_its_soft_labels_inline(tmp_path) -> None:
    images, labels = user_data()
    cfg = config(epochs=1, method="reffakd")
    cfg.ae.optim = OptimConfig(epochs=1, batch_size=40, milestones=[1])
    cfg.ae.samples_per_class = 4
    summary = train_student(cfg, tmp_path / "run", student=TinyNet(), data=(images, labels))
    assert summary.soft_labels["dataset"] == "user data"
    assert (tmp_path / "run" / "ae" / "soft_labels.pt").exists()
    assert set(summary.best) >= {"train_ce", "train_kd"}


def test_resuming_a_user_module_run(tmp_path, capsys) -> None:
    images, labels = user_data()
    out = tmp_path / "run"
    train_student(config(epochs=1), out, student=TinyNet(), data=(images, labels))
    first = (out / "metrics.jsonl").read_text()
    (out / "summary.json").unlink()  # as if it had stopped after epoch 1 of 2
    # The command line cannot rebuild a module or data passed in Python: one clear line.
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "resume it in Python" in err and "TinyNet" in err
    with pytest.raises(UserError, match="cannot be rebuilt from its name"):
        train_student(config(epochs=2), out, resume=True, data=(images, labels))
    with pytest.raises(UserError, match="pass the same data again"):
        train_student(config(epochs=2), out, resume=True, student=TinyNet())
    with pytest.raises(UserError, match="trained a <user module TinyNet>, not a <user module"):
        train_student(
            config(epochs=2), out, resume=True, student=nn.Flatten(), data=(images, labels)
        )
    summary = train_student(
        config(epochs=2), out, resume=True, student=TinyNet(), data=(images, labels)
    )
    assert summary.epochs == 2
    assert (out / "metrics.jsonl").read_text().startswith(first)


def test_student_must_be_a_module(tmp_path) -> None:
    with pytest.raises(UserError, match="student must be a torch nn.Module, got str"):
        train_student(config(), tmp_path / "run", student="lenet5", data=user_data())


# ---------------------------------------------------------------------------- import paths
@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A package ``userpkg.nets`` on sys.path, with factories of several signatures."""
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def only_classes(num_classes):
                return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

            def everything(**shape):
                everything.seen = shape
                return nn.Sequential(nn.Flatten(), nn.LazyLinear(shape["num_classes"]))

            class Net(nn.Module):
                def __init__(self, num_classes=10, in_channels=3):
                    super().__init__()
                    self.conv = nn.Conv2d(in_channels, num_classes, 3)

            def not_a_module(num_classes):
                return "a string"

            VALUE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userpkg.nets"
    for name in ("userpkg", "userpkg.nets"):
        sys.modules.pop(name, None)


def test_import_path_factories_get_the_arguments_they_name(user_package) -> None:
    model = build_model(f"{user_package}:only_classes", num_classes=7, in_channels=1)
    assert model(torch.zeros(2, 1, 4, 4)).shape == (2, 7)
    build_model(f"{user_package}:everything", num_classes=5, in_channels=2, image_size=9)
    everything = sys.modules[user_package].everything
    assert everything.seen == {"num_classes": 5, "in_channels": 2, "image_size": 9}
    net = build_model(f"{user_package}:Net", num_classes=6, in_channels=2)
    assert net.conv.in_channels == 2 and net.conv.out_channels == 6
    check_model_name(f"{user_package}:Net")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuchpkg.mod:f", "cannot import module 'nosuchpkg.mod'"),
        ("userpkg.nets:missing", "has no attribute 'missing'"),
        ("userpkg.nets:VALUE", "'VALUE' is not callable"),
        ("userpkg.nets:not_a_module", "returned a str, not a torch nn.Module"),
        ("userpkg.nets:", "not an import path"),
    ],
)
def test_import_path_errors(user_package, name, message) -> None:
    with pytest.raises(UserError, match=message):
        build_model(name, num_classes=3)


def test_cli_refuses_a_bad_import_path_before_reading_data(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(train_args(tmp_path / "nodata", out, "--student", "nosuchpkg.mod:f")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot import module 'nosuchpkg.mod'" in err
    assert not out.exists()


def test_the_current_folder_is_searched_last(tmp_path, monkeypatch) -> None:
    (tmp_path / "here_models.py").write_text(
        "from torch import nn\n\ndef net(num_classes):\n    return nn.Linear(4, num_classes)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert build_model("here_models:net", num_classes=3).out_features == 3
    finally:
        sys.modules.pop("here_models", None)
