"""Mixed precision, channels-last, compile, and the engine's host syncs (training/precision.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_resumes_identically, make_trainer, train_args

from reffakd.cli import main
from reffakd.config import ComputeConfig, OptimConfig
from reffakd.errors import UserError
from reffakd.kd.source_base import TeacherSignal, TeacherSource
from reffakd.kd.task import Distiller
from reffakd.models import build_model
from reffakd.training import precision
from reffakd.training.precision import check_compiler

NATIVE_BF16 = precision.native_bf16  # read at import, before the suite's fixture patches it


def fp16_autocast_works_on_cpu() -> bool:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            model(torch.randn(2, 1, 6, 6)).float().sum().backward()
    except RuntimeError:
        return False
    return True


def output_dtypes(trainer) -> list[torch.dtype]:
    """Records the dtype of every student output during training."""
    seen: list[torch.dtype] = []
    trainer.task.student.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    return seen


def test_bf16_autocast_trains_and_resumes_bit_identically(tmp_path):
    compute = ComputeConfig(precision="bf16")

    def make(run_dir):
        return make_trainer(run_dir, compute=compute)

    probe = make(tmp_path / "probe")
    dtypes = output_dtypes(probe)
    history = probe.fit().history
    assert torch.bfloat16 in dtypes  # the student really ran in bf16
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["train_top1"] > 50.0  # 3 classes: it learned
    assert_resumes_identically(tmp_path, make)


@pytest.mark.skipif(not fp16_autocast_works_on_cpu(), reason="this torch has no CPU fp16 autocast")
def test_fp16_with_grad_scaler_trains_and_resumes(tmp_path):
    compute = ComputeConfig(precision="fp16")
    state = assert_resumes_identically(tmp_path, lambda d: make_trainer(d, compute=compute))
    assert state["scaler"]["scale"] > 0  # the scaler's state is checkpointed
    history = make_trainer(tmp_path / "again", compute=compute).fit().history
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_loss_maths_runs_in_fp32_under_autocast():
    class HalfTeacher(TeacherSource):
        def forward(self, inputs, labels, indices):
            return TeacherSignal(torch.randn(len(labels), 3).to(torch.bfloat16), False)

    received = {}

    def objective(logits, labels, signal, epoch):
        received.update(student=logits.dtype, teacher=signal.logits.dtype)
        received["autocast"] = torch.is_autocast_enabled("cpu")
        return {"ce": torch.nn.functional.cross_entropy(logits, labels)}

    task = Distiller(build_model("lenet5", 3, 1, 16), HalfTeacher(), objective)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, losses = task.forward_train(
            torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0]), torch.arange(4), 1
        )
    assert received == {"student": torch.float32, "teacher": torch.float32, "autocast": False}
    assert logits.dtype == torch.float32 and losses["ce"].dtype == torch.float32


def test_channels_last_trains_like_contiguous(tmp_path):
    plain = make_trainer(tmp_path / "plain", optim=OptimConfig(epochs=1, batch_size=16, lr=0.05))
    nhwc = make_trainer(
        tmp_path / "nhwc",
        optim=OptimConfig(epochs=1, batch_size=16, lr=0.05),
        compute=ComputeConfig(channels_last=True),
    )
    conv = nhwc.task.student.features[1][0].weight  # 6 input channels
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    plain.fit()
    nhwc.fit()
    for a, b in zip(plain.task.state_dict().values(), nhwc.task.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-4)


def test_engine_syncs_with_the_host_only_at_checks(tmp_path, monkeypatch):
    """48 samples, batch 4: 12 steps; with a check every 5 steps the host reads device values
    at steps 5 and 10 and at the epoch end, not once per step."""
    trainer = make_trainer(
        tmp_path,
        student="mlp",
        optim=OptimConfig(epochs=1, batch_size=4, lr=0.05, milestones=[]),
        compute=ComputeConfig(check_every=5),
    )
    syncs = {"count": 0}

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            syncs["count"] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)

    loader = _train_loader(trainer)
    for name in ("item", "__float__", "__bool__", "__int__", "tolist"):
        counting(name)
    trainer.train_one_epoch(1, loader)
    monkeypatch.undo()
    # 3 checks (one .item() each) and the epoch means of loss, ce and top1 (one float() each)
    assert syncs["count"] == 3 + 3


def _train_loader(trainer):
    from reffakd.data.loader import BatchLoader

    return BatchLoader(trainer.splits.train, 4, shuffle=True, generator=trainer.data_generator)


def test_bad_precision_is_a_one_line_error(tiny_data, tmp_path, capsys):
    code = main(train_args(tiny_data, tmp_path / "x", "--precision", "fp8"))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compute.precision" in err[0] and "fp8" in err[0]


def test_compile_without_a_working_compiler_is_a_one_line_error(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(UserError, match="--compile needs a working") as raised:
        check_compiler(torch.device("cpu"))
    assert "\n" not in str(raised.value) and "No working C++ compiler" in str(raised.value)


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_autocast_channels_last_compile(tmp_path, precision):
    compute = ComputeConfig(precision=precision, channels_last=True, compile=True)
    check_compiler(torch.device("cuda"))
    trainer = make_trainer(tmp_path, compute=compute, device=torch.device("cuda"))
    dtypes = output_dtypes(trainer)
    history = trainer.fit().history
    assert {torch.bfloat16, torch.float16} & set(dtypes)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(torch.isfinite(v).all() for v in trainer.task.state_dict().values())


# --------------------------------------------------------------------------- precision auto
def with_bf16_units(monkeypatch, present: bool) -> None:
    """The capability check mocked: the CPU has (or lacks) bf16 matrix units."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: present)


@pytest.mark.parametrize(
    ("present", "expected"), [(True, ("bf16", True)), (False, ("fp32", False))]
)
def test_auto_resolves_from_the_devices_bf16_units(monkeypatch, present, expected):
    with_bf16_units(monkeypatch, present)
    resolved = precision.resolve_compute(ComputeConfig(), torch.device("cpu"))
    assert (resolved.precision, resolved.channels_last) == expected
    for explicit in ("fp32", "bf16", "fp16"):  # explicit choices are kept as they are
        given = ComputeConfig(precision=explicit)
        assert precision.resolve_compute(given, torch.device("cpu")) == given


def test_cpu_bf16_units_come_from_torchs_capabilities(monkeypatch):
    capabilities = {"amx_bf16": False, "avx512_bf16": True, "avx2": True}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities, raising=False)
    assert precision.cpu_bf16_units() == ["avx512_bf16"]
    capabilities["avx512_bf16"] = False  # an AVX2 or plain AVX512 CPU
    assert precision.cpu_bf16_units() == []


def test_native_bf16_reads_cuda_and_cpu(monkeypatch):
    real = NATIVE_BF16  # the check itself, not the suite's fp32 pinning
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: ["amx_bf16"])
    assert real(torch.device("cpu"))
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: [])
    assert not real(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert real(torch.device("cuda"))
    assert not real(torch.device("mps"))


@pytest.mark.parametrize(("present", "expected"), [(True, "bf16"), (False, "fp32")])
def test_a_run_records_the_concrete_precision(
    tiny_data, tmp_path, monkeypatch, capsys, present, expected
):
    import json

    import yaml

    with_bf16_units(monkeypatch, present)
    args = [a for a in train_args(tiny_data, tmp_path / "run") if a not in ("--precision", "fp32")]
    assert main(args) == 0
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["compute"]["precision"] == expected
    assert config["compute"]["channels_last"] is present
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == expected and "cpu_bf16_units" in summary
    capsys.readouterr()
    assert main(["show", str(tmp_path / "run")]) == 0
    shown = "bf16, channels-last" if present else "fp32 (CPU bf16 units"
    assert any(
        line.startswith("compute") and shown in line
        for line in capsys.readouterr().out.splitlines()
    )
    # --resume keeps the recorded value even where auto would now resolve otherwise
    with_bf16_units(monkeypatch, not present)
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2", "--no-progress"]) == 0
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["compute"]["precision"] == expected


def test_api_resume_with_auto_keeps_the_recorded_precision(tmp_path, monkeypatch):
    from reffakd.config import TrainConfig, dump_yaml
    from reffakd.distill.train import check_resume
    from reffakd.files import atomic_write_text

    recorded = TrainConfig(compute=ComputeConfig(precision="bf16", channels_last=True))
    (tmp_path / "run").mkdir()
    atomic_write_text(tmp_path / "run" / "config.yaml", dump_yaml(recorded))
    config = TrainConfig()  # precision auto
    assert check_resume(config, tmp_path / "run") is None
    assert (config.compute.precision, config.compute.channels_last) == ("bf16", True)


def test_fp32_is_bit_identical_to_no_autocast(tmp_path):
    """fp32 (what auto gives without bf16 units) runs no autocast: the weights equal those of
    a plain loop written without any precision code."""
    trainer = make_trainer(tmp_path / "fp32", compute=ComputeConfig(precision="fp32"))
    assert trainer.precision.dtype is None and trainer.precision.scaler is None
    assert not trainer.compute.channels_last
    seen = []
    trainer.task.student.register_forward_hook(
        lambda m, i, out: seen.append(torch.is_autocast_enabled("cpu"))
    )
    trainer.fit()
    assert seen and not any(seen)
    auto = make_trainer(tmp_path / "auto")  # auto, resolved to fp32 by the suite's pinning
    auto.fit()
    for a, b in zip(
        trainer.task.state_dict().values(), auto.task.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_a_run_recorded_before_precision_existed_resumes_in_fp32(tiny_data, tmp_path, monkeypatch):
    import yaml

    args = train_args(tiny_data, tmp_path / "run")
    assert main(args) == 0
    path = tmp_path / "run" / "config.yaml"
    values = yaml.safe_load(path.read_text())
    del values["compute"]  # as written before the section existed
    path.write_text(yaml.safe_dump(values))
    with_bf16_units(monkeypatch, True)  # auto would now choose bf16
    resume = ["train", "--resume", str(tmp_path / "run"), "--epochs", "2", "--no-progress"]
    assert main(resume) == 0
    assert yaml.safe_load(path.read_text())["compute"]["precision"] == "fp32"
