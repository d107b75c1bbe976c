"""LW-KD: the synthesized digits, the light teacher, the per-instance source, the adversarial
loss, and both presets end to end (tiny data, CPU)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import epoch_records, source_context, write_idx_images, write_idx_labels
from conftest import train_args as shared_train_args

from reffakd.cli import main
from reffakd.errors import UserError
from reffakd.kd.loss_objectives import OBJECTIVES, build_objective
from reffakd.kd.methods import PRESETS, resolve_method
from reffakd.kd.source_base import SOURCES, SourceContext, TeacherSignal, build_source
from reffakd.kd.task import Distiller
from reffakd.lwkd.adversarial import AdversarialKD
from reffakd.lwkd.glyphs import CELL, NO_JITTER, digit_templates, render_digits
from reffakd.lwkd.source import LWKDSource, pool_per_class_for
from reffakd.lwkd.synth import (
    TRIM,
    SplitSizes,
    class_digits,
    class_names,
    find_mnist,
    num_digits,
    synthesize,
)
from reffakd.lwkd.teacher import LightTeacherConfig, load_light_teacher, train_light_teacher
from reffakd.models import build_model

# Read before conftest's autouse fixture removes it: the real-data test needs the real MNIST.
REAL_DATA = os.environ.get("REFFAKD_DATA", "")
HAS_MNIST = bool(REAL_DATA) and any(
    (Path(root) / "mnist").is_dir() for root in REAL_DATA.split(os.pathsep) if root
)
TINY_TEACHER = ["source.teacher_epochs=1", "source.per_class=20", "source.pool_per_class=4"]


# --------------------------------------------------------------------------- helpers
def decode(images: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, d) digits read back from images: each of the d cells is matched to the nearest
    procedural glyph template (normalised correlation after a 3×3 blur)."""
    d, width = num_digits(num_classes), CELL - 2 * TRIM
    x = images[:, :1].to(torch.float32) / 255.0
    cells = F.interpolate(x, size=(CELL, d * width), mode="bilinear", antialias=True)
    cells = cells.view(len(x), CELL, d, width).permute(0, 2, 1, 3).reshape(-1, 1, CELL, width)
    templates = digit_templates()[..., TRIM : CELL - TRIM].reshape(-1, 1, CELL, width)

    def features(v: torch.Tensor) -> torch.Tensor:
        v = F.avg_pool2d(v, 3, 1, 1).flatten(1)
        return F.normalize(v - v.mean(dim=1, keepdim=True), dim=1)

    nearest = (features(cells) @ features(templates).T).argmax(dim=1) % 10
    return nearest.view(len(x), d)


def make_context(run_dir: Path, num_classes: int = 10) -> SourceContext:
    return source_context(run_dir, num_classes=num_classes)


def write_fake_mnist(root: Path) -> Path:
    """An MNIST folder whose "handwritten" digits are the un-jittered procedural glyphs."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    for prefix, n, seed in (("train", 600, 0), ("t10k", 200, 1)):
        labels = torch.arange(n) % 10
        cells = render_digits(labels, torch.Generator().manual_seed(seed), NO_JITTER)
        images = (cells * 255).round().to(torch.uint8)
        write_idx_images(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_labels(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    teacher = [arg for item in TINY_TEACHER for arg in ("--set", item)]
    return shared_train_args(data, out, *teacher, *extra)


@pytest.fixture(scope="module")
def light_run(tmp_path_factory, module_env) -> Path:
    """A tiny light teacher (procedural digits, 20 images per class, 1 epoch)."""
    out = tmp_path_factory.mktemp("light") / "light_teacher"
    config = LightTeacherConfig(10, 1, 32, epochs=1, per_class=20, digits="procedural")
    train_light_teacher(out, config, progress=False)
    return out


# --------------------------------------------------------------------------- the dataset
def test_digit_count_and_class_names():
    assert [num_digits(c) for c in (2, 9, 10, 11, 100, 101, 200, 1000, 1001)] == [
        1,
        1,
        1,
        2,
        2,
        3,
        3,
        3,
        4,
    ]
    assert class_names(10) == [str(k) for k in range(10)]
    assert class_names(100)[7] == "07" and class_names(200)[42] == "042"
    assert class_digits(torch.tensor([0, 7, 42, 199]), 3).tolist() == [
        [0, 0, 0],
        [0, 0, 7],
        [0, 4, 2],
        [1, 9, 9],
    ]
    with pytest.raises(UserError, match="at least 2"):
        num_digits(1)


@pytest.mark.parametrize(
    ("num_classes", "shape"), [(10, (1, 32, 32)), (100, (3, 32, 32)), (200, (3, 64, 64))]
)
def test_images_decode_back_to_their_class(num_classes, shape):
    sizes = SplitSizes(3, 1, 1)
    plain = synthesize(num_classes, shape, sizes=sizes, digits="procedural", jitter=NO_JITTER)
    truth = class_digits(plain.train.labels, num_digits(num_classes))
    assert torch.equal(decode(plain.train.images, num_classes), truth)
    assert plain.train.class_names == class_names(num_classes)
    # With the default jitter the digits stay readable by a crude template matcher.
    jittered = synthesize(num_classes, shape, sizes=sizes, digits="procedural")
    hits = decode(jittered.train.images, num_classes) == truth
    assert hits.float().mean() > 0.6


def test_shape_range_and_determinism():
    sizes = SplitSizes(4, 2, 3)
    splits = synthesize(12, (3, 20, 36), sizes=sizes, seed=5, digits="procedural")
    for split, per_class in ((splits.train, 4), (splits.val, 2), (splits.test, 3)):
        assert split.images.shape == (12 * per_class, 3, 20, 36)
        assert split.images.dtype == torch.uint8
        assert torch.equal(split.labels, torch.arange(12).repeat_interleave(per_class))
    images = splits.train.images
    assert torch.equal(images[:, 0], images[:, 2])  # grey digits replicated to every channel
    assert int(images.max()) > 200 and int(images.min()) == 0
    again = synthesize(12, (3, 20, 36), sizes=sizes, seed=5, digits="procedural")
    other = synthesize(12, (3, 20, 36), sizes=sizes, seed=6, digits="procedural")
    assert torch.equal(again.train.images, images) and torch.equal(
        again.test.images, splits.test.images
    )
    assert not torch.equal(other.train.images, images)
    assert not torch.equal(splits.train.images[:12], splits.test.images[:12])
    assert SplitSizes.default(10) == SplitSizes(500, 50, 100)
    assert SplitSizes.default(200).train == 250 and SplitSizes.default(1000).train == 50


def test_procedural_digits_without_any_data():
    assert find_mnist() is None  # conftest removed REFFAKD_DATA and disabled downloads
    splits = synthesize(10, (1, 28, 28), sizes=SplitSizes(2, 1, 1))
    assert splits.source == "synthesized (procedural)"
    with pytest.raises(UserError, match="digits=mnist"):
        synthesize(10, sizes=SplitSizes(2, 1, 1), digits="mnist")
    with pytest.raises(UserError, match="digits must be"):
        synthesize(10, sizes=SplitSizes(2, 1, 1), digits="fonts")


def test_mnist_digits_are_used_when_found(tmp_path):
    root = write_fake_mnist(tmp_path / "data")
    splits = synthesize(100, (1, 32, 32), sizes=SplitSizes(2, 1, 1), data_dir=root)
    assert splits.source.startswith("synthesized (mnist digits from ")
    truth = class_digits(splits.train.labels, 2)
    assert torch.equal(decode(splits.train.images, 100), truth)
    assert torch.equal(decode(splits.test.images, 100), class_digits(splits.test.labels, 2))
    # A --data-dir pointing straight at other 28×28 IDX images (bright: not digits) is refused.
    bright = tmp_path / "fashion"
    bright.mkdir()
    for prefix, n in (("train", 60), ("t10k", 20)):
        write_idx_images(
            bright / f"{prefix}-images-idx3-ubyte.gz",
            torch.full((n, 28, 28), 90, dtype=torch.uint8),
        )
        write_idx_labels(bright / f"{prefix}-labels-idx1-ubyte.gz", torch.arange(n) % 10)
    assert find_mnist(bright) is None


# --------------------------------------------------------------------------- the light teacher
@pytest.mark.skipif(not HAS_MNIST, reason="needs REFFAKD_DATA with mnist/ (real data)")
def test_light_teacher_learns_the_mnist_digits(tmp_path):
    config = LightTeacherConfig(10, 1, 32, epochs=4, digits="mnist")
    teacher = train_light_teacher(
        tmp_path / "lt", config, progress=False, data_dir=REAL_DATA.split(os.pathsep)[0]
    )
    assert teacher.config.digits_used == "mnist"
    assert teacher.info["test_top1"] >= 95.0, teacher.info


def test_light_teacher_run_is_reused_and_checked(light_run, tmp_path):
    best = light_run / "checkpoints" / "best.pt"
    stamp = best.stat().st_mtime_ns
    config = LightTeacherConfig(10, 1, 32, epochs=1, per_class=20, digits="procedural")
    again = train_light_teacher(light_run, config, progress=False)
    assert best.stat().st_mtime_ns == stamp  # reused, not retrained
    assert again.info["split_sizes"] == {"train": 200, "val": 20, "test": 40}
    assert 0.0 <= again.info["test_top1"] <= 100.0
    summary = json.loads((light_run / "summary.json").read_text())
    assert [p["phase"] for p in summary["cost"]["phases"]] == ["synthesis", "teacher_training"]
    with pytest.raises(UserError, match="100 classes"):
        train_light_teacher(light_run, LightTeacherConfig(100, 1, 32), progress=False)
    # An unfinished light teacher (no summary yet) continues from its own checkpoint.
    cut = tmp_path / "cut"
    shutil.copytree(light_run, cut)
    (cut / "summary.json").unlink()
    with pytest.raises(UserError, match="unfinished"):
        load_light_teacher(cut)
    resumed = train_light_teacher(cut, config, progress=False)
    for key, value in again.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    with pytest.raises(UserError, match="not an LW-KD light-teacher"):
        load_light_teacher(tmp_path)


# --------------------------------------------------------------------------- the source
def test_source_gives_per_instance_targets(light_run, tmp_path, capsys):
    context = make_context(tmp_path)
    source = build_source("lwkd", {"run": str(light_run), "pool_per_class": 8}, context)
    source.setup()
    assert source.pool.shape == (10, 8, 10)
    labels = torch.full((32,), 3)
    signal = source(torch.zeros(32, 1, 32, 32), labels, torch.arange(32))
    assert not signal.class_level and signal.logits.shape == (32, 10)
    distinct = {tuple(row.tolist()) for row in signal.logits}
    assert len(distinct) > 1  # two samples of one class get different targets
    rows = {tuple(row.tolist()) for row in source.pool[3]}
    assert distinct <= rows  # every target is the teacher's output on a class-3 sample
    assert torch.allclose(signal.logits.exp().sum(dim=1), torch.ones(32))
    record = source.record()
    assert record.key == "light_teacher" and source.networks_per_batch() == {}
    assert record.info["pool_per_class"] == 8 and record.info["temperature"] == 4.0
    assert "light teacher lenet5 on synthesized digits (procedural)" in capsys.readouterr().out
    assert all(not p.requires_grad for p in source.teacher.model.parameters())


def test_source_temperature_softens_the_pool(light_run, tmp_path):
    sharp = build_source(
        "lwkd", {"run": str(light_run), "temperature": 1.0}, make_context(tmp_path)
    )
    soft = build_source("lwkd", {"run": str(light_run), "temperature": 8.0}, make_context(tmp_path))
    sharp.setup()
    soft.setup()
    entropy = [-(s.pool.exp() * s.pool).sum(-1).mean() for s in (sharp, soft)]
    assert entropy[1] > entropy[0]
    assert pool_per_class_for(1000, 100) == 16 and pool_per_class_for(10, 100) == 100


def test_bad_source_options(light_run, tmp_path):
    with pytest.raises(UserError, match="temperature"):
        build_source("lwkd", {"run": str(light_run), "temperature": 0}, make_context(tmp_path))
    with pytest.raises(UserError, match="has 10 classes, this run has 100"):
        build_source("lwkd", {"run": str(light_run)}, make_context(tmp_path, num_classes=100))
    with pytest.raises(UserError, match="unknown option 'source.teacher'"):
        build_source("lwkd", {"teacher": str(light_run)}, make_context(tmp_path))


# --------------------------------------------------------------------------- the adversarial loss
def tiny_source(tmp_path: Path, num_classes: int = 10) -> LWKDSource:
    """An lwkd source whose pool holds random teacher logits (no light teacher trained)."""
    torch.manual_seed(0)
    source = build_source("lwkd", {}, make_context(tmp_path, num_classes))
    source.set_pool(torch.randn(num_classes, 4, num_classes) * 3)
    return source


def test_one_adversarial_step_moves_student_and_discriminator_only(tmp_path):
    source = tiny_source(tmp_path)
    pool = source.pool.clone()
    student = build_model("lenet5", 10, 1, 32)
    objective = build_objective("kd_adv", {"adv_weight": 0.5})
    distiller = Distiller(student, source, objective).train()
    images, labels = torch.randn(16, 1, 32, 32), torch.arange(16) % 10
    optimizer = torch.optim.SGD(distiller.learnable_parameters(), lr=0.1)
    _, terms = distiller.forward_train(images, labels, torch.arange(16), epoch=1)
    assert set(terms) == {"ce", "kd", "adv"} and all(t.requires_grad for t in terms.values())
    assert isinstance(objective, AdversarialKD) and objective.discriminator is not None
    before = {
        name: [p.detach().clone() for p in module.parameters()]
        for name, module in (("student", student), ("discriminator", objective.discriminator))
    }
    sum(terms.values()).backward()
    assert all(p.grad is None for p in objective.discriminator.parameters())  # D used detached
    optimizer.step()
    distiller.after_step(student(images), labels, 1)
    assert objective.last_disc_loss is not None and math.isfinite(objective.last_disc_loss)
    for name, module in (("student", student), ("discriminator", objective.discriminator)):
        pairs = zip(before[name], module.parameters(), strict=True)
        assert any(not torch.equal(a, b) for a, b in pairs), name
    assert torch.equal(source.pool, pool)  # the teacher's side never changes


def test_adversarial_term_is_the_non_saturating_gan_loss():
    objective = AdversarialKD(adv_weight=2.0, num_classes=5)
    logits, teacher = torch.randn(8, 5), torch.randn(8, 5).log_softmax(1)
    terms = objective(logits, torch.arange(8) % 5, TeacherSignal(teacher, False), 1)
    kd = build_objective("kd", {})(logits, torch.arange(8) % 5, TeacherSignal(teacher, False), 1)
    assert torch.allclose(terms["kd"], kd["kd"]) and torch.allclose(terms["ce"], kd["ce"])
    p_student = (logits / 4.0).softmax(1)
    d_out = objective.discriminator(p_student)
    expected = 2.0 * -torch.log(torch.sigmoid(d_out)).mean()
    assert torch.allclose(terms["adv"], expected, atol=1e-6)


def test_discriminator_state_round_trips():
    objective = AdversarialKD()
    logits, teacher = torch.randn(8, 10), torch.randn(8, 10)
    for _ in range(2):
        objective(logits, torch.arange(8) % 10, TeacherSignal(teacher, False), 1)
        objective.after_step(logits, torch.arange(8) % 10, 1)
    state = objective.extra_state()
    copy = AdversarialKD()
    assert copy.extra_state() == {}
    copy.load_extra_state(state)
    for a, b in zip(
        objective.discriminator.parameters(), copy.discriminator.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    assert copy.disc_optimizer.state_dict()["state"].keys() == state["optimizer"]["state"].keys()
    assert copy.last_disc_loss == objective.last_disc_loss
    assert AdversarialKD(num_classes=10).discriminator is not None
    with pytest.raises(UserError, match="adv_weight"):
        AdversarialKD(adv_weight=-1)


# --------------------------------------------------------------------------- presets and CLI
def test_presets_and_registration():
    assert "lwkd" in SOURCES and "kd_adv" in OBJECTIVES
    assert (PRESETS.get("lwkd").source, PRESETS.get("lwkd").loss) == ("lwkd", "kd_adv")
    assert (PRESETS.get("lwkd-noadv").source, PRESETS.get("lwkd-noadv").loss) == ("lwkd", "kd")
    method = resolve_method("lwkd", {"run": "x"})
    assert method.source_options == {"temperature": 4.0, "run": "x"}
    assert method.loss_options["teacher_temperature"] == 1.0
    assert method.loss_options["adv_weight"] == 0.1


@pytest.mark.parametrize("method", ["lwkd", "lwkd-noadv"])
def test_preset_runs_an_epoch_and_caches_the_light_teacher(tiny_data, tmp_path, capsys, method):
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--method", method)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary["best"]["val_top1"]) and summary["method"]["name"] == method
    assert ("train_adv" in summary["last"]) == (method == "lwkd")
    light = json.loads((out / "light_teacher" / "summary.json").read_text())
    assert light["split_sizes"]["train"] == 200 and light["epochs"] == 1
    assert "light teacher lenet5 on synthesized digits" in capsys.readouterr().out
    phases = [p["phase"] for p in summary["cost"]["phases"]]
    assert "light_teacher:teacher_training" in phases


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reffakd", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_interrupted_lwkd_run_resumes_bit_identically(tiny_data, tmp_path, light_run):
    args = train_args(tiny_data, tmp_path / "x", "--method", "lwkd", "--teacher", str(light_run))
    args = args[: args.index("--out")] + args[args.index("--out") + 2 :]
    args[args.index("--epochs") + 1] = "2"
    full = run_cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    killed = run_cli(*args, "--out", str(tmp_path / "cut"), env={"REFFAKD_FAULT_AFTER_EPOCH": "1"})
    assert killed.returncode == -9, killed.stderr
    resumed = run_cli("train", "--resume", str(tmp_path / "cut"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    records = [epoch_records(tmp_path / run) for run in ("full", "cut")]
    assert records[0] == records[1]
    states = [
        torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True)
        for run in ("full", "cut")
    ]
    for key, value in states[0]["model"].items():
        assert torch.equal(value, states[1]["model"][key]), key
    discriminators = [s["extra"]["objective"]["discriminator"] for s in states]
    for key, value in discriminators[0].items():
        assert torch.equal(value, discriminators[1][key]), key
