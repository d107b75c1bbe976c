"""The KD family: network teachers (``teacher``, ``self``), their per-sample cache, and every
method preset and source × loss pair end to end on tiny data."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import one_line_error, preset_signal, source_context, train_args
from torch import nn

from reffakd.aesl.soft_labels import SoftLabels
from reffakd.cli import main
from reffakd.config import AugmentConfig
from reffakd.data.augment import AugmentPolicy, BatchTransform
from reffakd.errors import UserError
from reffakd.kd.loss_objectives import OBJECTIVES, build_objective
from reffakd.kd.methods import PRESETS, resolve_method
from reffakd.kd.source_base import (
    SOURCES,
    StudentOutputs,
    TeacherSignal,
    attach_student,
    build_source,
)
from reffakd.kd.source_teachers import NetworkSource
from reffakd.kd.task import Distiller
from reffakd.models import build_model


@pytest.fixture(scope="module")
def teacher_run(tiny_data, tmp_path_factory, module_env) -> Path:
    """A LeNet-5 trained with plain CE for one epoch: the teacher of every network source.

    Its data record is removed: these tests pair it with small synthetic splits of the same
    shape (the data check has its own tests in test_bad_inputs.py)."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    assert main(train_args(tiny_data, out, "--method", "ce")) == 0
    (out / "data.json").unlink()
    return out


def augmented_batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised, augmented (crop, flip, rotation) images and the un-augmented ones."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    transform = BatchTransform(32, [0.3], [0.3], AugmentPolicy(4, True, 15.0))
    return transform(raw, train=True, generator=g), transform(raw, train=False)


def teacher_of(tmp_path: Path, run: Path, **options) -> NetworkSource:
    return build_source("teacher", {"run": str(run), **options}, source_context(tmp_path))


def assert_finite_summary(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    for record in ("best", "last"):
        assert math.isfinite(summary[record]["val_top1"]), summary
    return summary


# --------------------------------------------------------------------------- the teacher network
def test_teacher_loads_the_run_and_reports_its_accuracy(tmp_path, teacher_run, capsys):
    source = build_source("teacher", {"run": str(teacher_run)}, source_context(tmp_path))
    summary = json.loads((teacher_run / "summary.json").read_text())
    best = torch.load(teacher_run / "checkpoints" / "best.pt", weights_only=True)["model"]
    for key, value in source.teacher.state_dict().items():
        assert torch.equal(value, best[key]), key
    record = source.record()
    assert record.key == "teacher" and record.phases[0]["phase"] == "teacher:teacher_training"
    assert source.networks_per_batch() == {"teacher": source.teacher}
    info = record.info
    assert info["val_top1"] == summary["best"]["val_top1"]
    assert info["test_top1"] == summary["best"]["test_top1"]
    assert info["epoch"] == summary["best_epoch"] and info["student"] == "lenet5"
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"teacher lenet5 from {teacher_run}: val ")
    assert "test" in line and "(best epoch 1)" in line
    last = teacher_of(tmp_path, teacher_run / "checkpoints" / "last.pt")
    weights = torch.load(teacher_run / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key, value in last.teacher.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert last.record().info["checkpoint"] == "last"


def test_teacher_stays_frozen_in_train_mode(tmp_path, teacher_run):
    source = teacher_of(tmp_path, teacher_run)
    student = build_model("lenet5", 10, 1, 32)
    distiller = Distiller(student, source, build_objective("kd", {}))
    distiller.train()
    assert student.training
    assert not any(m.training for m in source.teacher.modules())
    source.train()  # even asked directly, the network stays in eval mode
    assert not any(m.training for m in source.teacher.modules())
    images, _ = augmented_batch()
    labels = torch.arange(len(images)) % 10
    _, losses = distiller.forward_train(images, labels, torch.arange(len(images)), epoch=1)
    sum(losses.values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in source.teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert {id(p) for p in distiller.learnable_parameters()} == {
        id(p) for p in student.parameters()
    }


def test_teacher_and_student_see_the_same_augmented_batch(tmp_path, teacher_run):
    source = teacher_of(tmp_path, teacher_run)
    student = build_model("lenet5", 10, 1, 32)
    distiller = Distiller(student, source, build_objective("kd", {})).train()
    seen: dict[str, torch.Tensor] = {}

    def spy(name: str):
        def hook(module, inputs, output):
            seen[name] = inputs[0].detach().clone()

        return hook

    handles = [
        student.register_forward_hook(spy("student")),
        source.teacher.register_forward_hook(spy("teacher")),
    ]
    images, plain = augmented_batch()
    labels = torch.arange(len(images)) % 10
    distiller.forward_train(images, labels, torch.arange(len(images)), epoch=1)
    for handle in handles:
        handle.remove()
    assert torch.equal(seen["teacher"], seen["student"])
    assert torch.equal(seen["teacher"], images)
    assert not torch.equal(seen["teacher"], plain)  # the batch really was augmented


# --------------------------------------------------------------------------- the cache
def test_cache_is_filled_at_setup_and_keyed_by_sample_index(tmp_path, teacher_run):
    context = source_context(tmp_path, augmented=False)
    train = context.data.splits.train
    g = torch.Generator().manual_seed(1)
    train.images.copy_(torch.randint(0, 256, train.images.shape, generator=g, dtype=torch.uint8))
    source = build_source("teacher", {"run": str(teacher_run), "cache": True}, context)
    transform = context.data.batch_transform(AugmentConfig(enabled=False))
    with torch.no_grad():
        direct = source.teacher(transform(train.images))
    calls: list[int] = []
    source.teacher.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    source.setup()
    assert sum(calls) == len(train) == 40 and len(source.cache) == 40
    labels = torch.arange(40) % 10
    for seed, size in ((1, 8), (2, 16)):
        order = torch.randperm(40, generator=torch.Generator().manual_seed(seed))
        for batch in order.split(size):
            signal = source(transform(train.images[batch]), labels[batch], batch)
            assert not signal.class_level
            torch.testing.assert_close(signal.logits, direct[batch])
    assert sum(calls) == 40  # every step read the cache; the teacher never ran again


@pytest.mark.parametrize("name", ["teacher", "self"])
def test_cache_is_refused_with_augmentation(tmp_path, teacher_run, name):
    context = source_context(tmp_path, augmented=True)
    with pytest.raises(UserError, match="un-augmented"):
        build_source(name, {"run": str(teacher_run), "cache": True}, context)


def test_cached_teacher_trains_like_the_live_one(tiny_data, tmp_path, teacher_run):
    """Without augmentation, a cached teacher (epoch 2 reads the cache) changes nothing."""
    losses = []
    for name, cache in (("live", "false"), ("cached", "true")):
        out = tmp_path / name
        flags = ["--method", "kd", "--teacher", str(teacher_run), "--epochs", "2"]
        flags += ["--set", "augment.enabled=false", "--set", f"source.cache={cache}"]
        assert main(train_args(tiny_data, out, *flags)) == 0
        records = (out / "metrics.jsonl").read_text().splitlines()
        losses.append([json.loads(line)["train_loss"] for line in records])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


# --------------------------------------------------------------------------- bad teachers
def edited_run(teacher_run: Path, target: Path, **data: object) -> Path:
    """A copy of the teacher run whose config claims other data settings."""
    shutil.copytree(teacher_run, target)
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["data"].update(data)
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    return target


@pytest.mark.parametrize(
    ("dataset", "patterns"),
    [("cifar100", ["100 classes", "has 10 classes"]), ("cifar10", ["3 input channels"])],
)
def test_mismatched_teacher_is_a_one_line_cli_error(
    tiny_data, tmp_path, teacher_run, capsys, dataset, patterns
):
    bad = edited_run(teacher_run, tmp_path / "bad", name=dataset)
    args = train_args(tiny_data, tmp_path / "out", "--method", "kd", "--teacher", str(bad))
    assert main(args) == 2
    one_line_error(capsys, *patterns, dataset, "fashion-mnist")


def test_other_bad_teachers(tmp_path, teacher_run):
    context = source_context(tmp_path, val_fraction=0.2)
    with pytest.raises(UserError, match="validation"):
        build_source("teacher", {"run": str(teacher_run)}, context)
    with pytest.raises(UserError, match="trained on mnist"):
        teacher_of(tmp_path, edited_run(teacher_run, tmp_path / "mnist", name="mnist"))
    with pytest.raises(UserError, match="not found"):
        teacher_of(tmp_path, tmp_path / "missing")
    no_config = tmp_path / "no-config"
    shutil.copytree(teacher_run, no_config)
    (no_config / "config.yaml").unlink()
    with pytest.raises(UserError, match="config.yaml"):
        teacher_of(tmp_path, no_config)
    unfinished = tmp_path / "unfinished"  # a training run without checkpoints yet
    (unfinished / "checkpoints").mkdir(parents=True)
    shutil.copy(teacher_run / "config.yaml", unfinished)
    with pytest.raises(UserError, match=r"unfinished: it has no checkpoints/last\.pt"):
        teacher_of(tmp_path, unfinished, checkpoint="last")
    plain = tmp_path / "plain"  # a folder that is no run at all: no --resume suggested
    plain.mkdir()
    with pytest.raises(UserError, match="not a run directory") as refused:
        teacher_of(tmp_path, plain)
    assert "--resume" not in str(refused.value)
    with pytest.raises(UserError, match="--teacher"):
        build_source("teacher", {}, source_context(tmp_path))
    context = source_context(tmp_path, student="resnet8")
    with pytest.raises(UserError, match="architecture"):
        build_source("self", {"run": str(teacher_run)}, context)


# --------------------------------------------------------------------------- presets end to end
def preset_flags(name: str, teacher_run: Path, soft_labels_file: Path) -> list[str]:
    source = preset_signal(name)
    if source in ("teacher", "self"):
        return ["--teacher", str(teacher_run)]
    if source == "aesl":
        return ["--soft-labels", str(soft_labels_file)]
    if source == "lwkd":
        return [
            "--set",
            "source.teacher_epochs=1",
            "--set",
            "source.per_class=20",
            "--set",
            "source.pool_per_class=4",
        ]
    return []


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_runs_an_epoch(
    tiny_data, tmp_path, teacher_run, soft_labels_file, capsys, name
):
    out = tmp_path / "run"
    flags = preset_flags(name, teacher_run, soft_labels_file)
    assert main(train_args(tiny_data, out, "--method", name, *flags)) == 0
    summary = assert_finite_summary(out)
    assert summary["method"]["name"] == name
    if "--teacher" in flags:
        assert f"teacher lenet5 from {teacher_run}: val" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "pair"),
    [
        (["--method", "ce", "--source", "smooth", "--loss", "kd"], ("smooth", "kd")),
        (["--method", "kd", "--loss", "dist"], ("teacher", "dist")),
    ],
)
def test_explicit_source_and_loss(tiny_data, tmp_path, teacher_run, flags, pair):
    out = tmp_path / "run"
    extra = ["--teacher", str(teacher_run)] if pair[0] == "teacher" else []
    assert main(train_args(tiny_data, out, *flags, *extra)) == 0
    method = assert_finite_summary(out)["method"]
    assert (method["source"], method["loss"]) == pair


def all_sources(tmp_path: Path, teacher_run: Path, student: nn.Module) -> dict[str, object]:
    """One built and set-up instance of every registered source."""
    table = torch.full((10, 10), 0.05).fill_diagonal_(0.55)
    context = source_context(tmp_path)
    SoftLabels(table, meta={"class_names": context.class_names}).save(tmp_path / "sl.pt")
    options = {
        "aesl": {"soft_labels": str(tmp_path / "sl.pt")},
        "teacher": {"run": str(teacher_run)},
        "self": {"run": str(teacher_run)},
        "lwkd": {"teacher_epochs": 1, "per_class": 20, "pool_per_class": 4},
    }
    sources = {name: build_source(name, options.get(name, {}), context) for name in SOURCES}
    for source in sources.values():
        source.setup()
        attach_student(source, student)  # USKD's source reads the student's own forward
    return sources


def _signal(source, images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor):
    """The source's signal; self-distillation sources see the student's logits (and DLB one
    earlier batch, so that its signal covers the repeated rows)."""
    indices = torch.arange(len(labels))
    if not source.needs_student_logits:
        return source(images, labels, indices)
    seen = StudentOutputs(logits, extra=logits)
    signal = source(images, labels, indices, student=seen)
    if signal.rows is not None:  # DLB: the second batch brings back half of the first
        back = source.extra_indices(indices, labels)
        joined = torch.cat([indices, back])
        rows = torch.cat([logits, logits[back]])
        signal = source(None, labels[joined], joined, student=StudentOutputs(rows))
        signal.rows = slice(0, len(back))  # aligned with the first rows of these logits
    return signal


def test_every_source_and_loss_pair_resolves_and_runs(tmp_path, teacher_run):
    student = build_model("lenet5", 10, in_channels=1)
    sources = all_sources(tmp_path, teacher_run, student)
    images, _ = augmented_batch(8)
    labels = torch.arange(8) % 10
    logits = torch.randn(8, 10)
    signals = {}
    for name, source in sources.items():
        if source.needs_student_logits:
            student(images)  # the student's forward feeds USKD's feature hook
        signals[name] = _signal(source, images, labels, logits)
    checked: set[str] = set()
    for preset in PRESETS:
        for source_name in SOURCES:
            for loss_name in OBJECTIVES:
                method = resolve_method(preset, {"name": source_name}, {"name": loss_name})
                assert (method.source, method.loss) == (source_name, loss_name)
                key = repr((source_name, loss_name, sorted(method.loss_options.items())))
                if key in checked:
                    continue  # the same options were already run (only the loss's half matters)
                if signals[source_name].rows is not None and loss_name != "self_kd":
                    continue  # a signal for some rows only (DLB) is read by self_kd alone
                checked.add(key)
                objective = build_objective(loss_name, method.loss_options)
                signal = signals[source_name]
                if signal.rows is not None and not objective.covers_rows:
                    if loss_name != "ce":  # ce ignores any signal
                        with pytest.raises(UserError, match="use the self_kd loss"):
                            objective(logits, labels, signal, 1)
                    continue
                terms = objective(logits, labels, signal, 1)
                assert all(torch.isfinite(v) for v in terms.values()), (preset, method)
                if loss_name == "ce":
                    assert torch.equal(terms["ce"], objective(logits, labels, None, 1)["ce"])


def test_preset_table():
    expected = {
        "ce": (None, "ce"),
        "ls": ("smooth", "soft_ce"),
        "tfkd-reg": ("virtual", "kd"),
        "tfkd-self": ("self", "kd"),
        "kd": ("teacher", "kd"),
        "reffakd": ("aesl", "kd"),
        "reffakd+dkd": ("aesl", "dkd"),
        "reffakd+dist": ("aesl", "dist"),
        "kd+dkd": ("teacher", "dkd"),
        "kd+dist": ("teacher", "dist"),
        "lwkd": ("lwkd", "kd_adv"),
        "lwkd-noadv": ("lwkd", "kd"),
        "pskd": ("pskd", "soft_ce"),
        "reffakd+pskd": ("pskd", "soft_ce"),
        "cskd": ("cskd", "self_kd"),
        "ols": ("ols", "soft_ce"),
        "reffakd+ols": ("ols", "soft_ce"),
        "dlb": ("dlb", "self_kd"),
        "zipf-ls": ("zipf", "self_kd"),
        "nkd": ("teacher", "nkd"),
        "reffakd+nkd": ("aesl", "nkd"),
        "uskd": ("uskd", "uskd"),
    }
    assert {name: (PRESETS.get(name).source, PRESETS.get(name).loss) for name in PRESETS} == (
        expected
    )
    kd = resolve_method("kd", {"run": "x"})
    assert kd.loss_options == {"alpha": 0.9, "temperature": 4.0, "teacher_temperature": None}
    assert kd.source_options == {"run": "x"}
    with pytest.raises(UserError, match="no teacher signal"):
        resolve_method("ce", {"run": "x"})


@pytest.mark.parametrize("loss", ["kd", "dkd", "dist"])
def test_standardize_option_makes_losses_invariant_to_logit_scale(loss):
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 10), torch.randn(6, 10)
    labels = torch.arange(6)
    objective = build_objective(loss, {"standardize": True})

    def kd_terms(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        terms = objective(s, labels, TeacherSignal(t, class_level=False), epoch=100)
        return sum(v for k, v in terms.items() if k != "ce")

    base = kd_terms(student, teacher)
    assert torch.allclose(base, kd_terms(3 * student + 1, 0.5 * teacher - 2), atol=1e-5)
    plain = build_objective(loss, {})
    plain_terms = plain(student, labels, TeacherSignal(teacher, class_level=False), epoch=100)
    assert not torch.allclose(base, sum(v for k, v in plain_terms.items() if k != "ce"))
