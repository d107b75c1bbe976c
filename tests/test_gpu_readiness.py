"""What a first GPU run would trip over, checked on the CPU: every parameter gets a gradient
(DDP refuses unused ones), LOCAL_RANK beyond the GPUs, CUDA RNG states of other GPUs, FLOPs on
compiled networks, determinism, and ranks waiting for rank 0 (training/, models/hf.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
import torch
from conftest import make_trainer, train_args

from reffakd.cli import main
from reffakd.config import ComputeConfig
from reffakd.errors import UserError
from reffakd.models import build_model, is_text_model, list_models
from reffakd.runtime import capture_rng_state, restore_rng_state
from reffakd.training import distributed
from reffakd.training.distributed import DistContext

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- gradients
def assert_every_parameter_learns(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    model.train()
    output = model(inputs)
    output = output[0] if isinstance(output, tuple) else output
    output.float().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_of_every_registered_model_gets_a_gradient(name):
    torch.manual_seed(0)
    if is_text_model(name):
        model = build_model(name, 3, vocab_size=50, max_len=16)
        ids = torch.randint(4, 50, (3, 12))
        ids[1, 5:] = 0  # a padded row
        assert_every_parameter_learns(model, ids)
    else:
        size = 64 if name.endswith("_tin") else 32  # the Tiny ImageNet heads need 64x64
        model = build_model(name, 3, 3, size)
        assert_every_parameter_learns(model, torch.randn(2, 3, size, size))


def test_a_bert_encoder_has_no_pooler_and_every_parameter_learns(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        pad_token_id=0,
    )
    transformers.BertModel(config).save_pretrained(tmp_path / "bert")  # with its pooler
    model = build_model(f"hf:{tmp_path / 'bert'}", 3, vocab_size=64, max_len=16, pad_id=0)
    assert not any("pooler" in name for name, _ in model.named_parameters())
    ids = torch.randint(1, 64, (2, 8))
    ids[1, 4:] = 0
    assert_every_parameter_learns(model, ids)


# --------------------------------------------------------------------------- devices
def test_local_rank_beyond_the_gpus_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    context = DistContext(rank=3, world_size=4, local_rank=3)
    with pytest.raises(UserError, match="LOCAL_RANK 3, but the machine shows 2") as raised:
        context.device_for("cuda")
    assert "\n" not in str(raised.value)
    assert DistContext(rank=1, world_size=4, local_rank=1).device_for("cuda") == torch.device(
        "cuda", 1
    )


def test_the_test_runs_ask_for_the_cpu(tmp_path):
    args = train_args(tmp_path, tmp_path / "out")
    assert args[args.index("--device") + 1] == "cpu"


class FakeCuda:
    """Per-device CUDA generator states of a machine with ``count`` GPUs."""

    def __init__(self, monkeypatch, count: int) -> None:
        self.states = {i: torch.full((4,), i, dtype=torch.uint8) for i in range(count)}
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda index: self.states[index])
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_state)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    def set_state(self, state, index):
        if index >= len(self.states):
            raise IndexError(f"no GPU {index}")
        self.states[index] = state.clone()


def test_checkpoints_hold_the_run_devices_cuda_state_only(monkeypatch):
    cuda = FakeCuda(monkeypatch, 4)
    state = capture_rng_state(torch.device("cuda", 2))
    assert torch.equal(state["cuda"], torch.full((4,), 2, dtype=torch.uint8))
    assert "cuda" not in capture_rng_state(torch.device("cpu"))
    fewer = FakeCuda(monkeypatch, 1)  # resumed on a machine with one GPU
    restore_rng_state(state, torch.device("cuda", 0))
    assert torch.equal(fewer.states[0], cuda.states[2])


def test_older_checkpoints_with_every_gpus_state_still_load(monkeypatch):
    old = capture_rng_state()
    old["cuda"] = [torch.full((4,), 10 + i, dtype=torch.uint8) for i in range(4)]
    fewer = FakeCuda(monkeypatch, 1)
    restore_rng_state(old, torch.device("cuda", 0))
    assert torch.equal(fewer.states[0], old["cuda"][0])
    restore_rng_state(old, torch.device("cpu"))  # a CPU run ignores them


# --------------------------------------------------------------------------- FLOPs
def test_flops_are_counted_on_the_eager_networks_before_compiling(tiny_data, tmp_path, monkeypatch):
    """A --compile run counts the FLOPs of an eager run: on the networks before compiling."""
    from reffakd.distill import build as distill_build
    from reffakd.distill import train as distill_train

    counted = []
    input_flops = distill_train.input_flops

    def recording(network, model_input):
        counted.append(getattr(network, "_compiled_call_impl", None) is None)
        return input_flops(network, model_input)

    def fake_compile(self, *args, **kwargs):  # marks the module as compiled, runs it eagerly
        compiled.append(self)
        self._compiled_call_impl = self._call_impl

    monkeypatch.setattr(distill_train, "input_flops", recording)
    monkeypatch.setattr(distill_build, "check_compiler", lambda device: None)
    compiled: list[torch.nn.Module] = []
    monkeypatch.setattr(torch.nn.Module, "compile", fake_compile)
    summaries = []
    for name, extra in (("eager", ()), ("compiled", ("--compile",))):
        assert main(train_args(tiny_data, tmp_path / name, *extra)) == 0
        summaries.append(json.loads((tmp_path / name / "summary.json").read_text()))
    assert compiled and counted and all(counted)
    flops = [s["cost"]["phases"][-1]["networks"]["student"]["forward_flops"] for s in summaries]
    assert flops[0] == flops[1] > 0


# --------------------------------------------------------------------------- determinism
def test_deterministic_sets_the_flags_and_trains_alike(tmp_path, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # restored afterwards
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic
    try:
        compute = ComputeConfig(precision="fp32", deterministic=True)
        first = make_trainer(tmp_path / "a", compute=compute)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        first.fit()
        second = make_trainer(tmp_path / "b", compute=compute)
        second.fit()
        weights = first.task.state_dict(), second.task.state_dict()
        for a, b in zip(weights[0].values(), weights[1].values(), strict=True):
            assert torch.equal(a, b)
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic = saved[1]


@pytest.mark.cuda
def test_cuda_deterministic_runs_agree(tmp_path):
    compute = ComputeConfig(precision="bf16", channels_last=True, deterministic=True)
    runs = []
    for name in ("a", "b"):
        cuda = torch.device("cuda")
        trainer = make_trainer(tmp_path / name, student="resnet8", compute=compute, device=cuda)
        trainer.fit()
        runs.append(trainer.task.state_dict())
    for key, value in runs[0].items():
        torch.testing.assert_close(value.float(), runs[1][key].float(), atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- waiting ranks
def test_a_waiting_rank_ends_with_rank_zeros_one_line_error(monkeypatch):
    groups = []

    def gather(out, value, group=None):  # rank 0 failed while this rank waited
        groups.append(group)
        out[:] = [("UserError", "bad data in x"), value]

    monkeypatch.setattr(torch.distributed, "all_gather_object", gather)
    context = DistContext(rank=1, world_size=2, local_rank=1, wait_group="gloo-group")
    ran = []
    with pytest.raises(UserError, match="bad data in x"):
        context.main_first(lambda: ran.append(1))
    assert ran == [] and groups == ["gloo-group"]  # it waited in the gloo group, not NCCL


def test_a_failure_on_another_rank_ends_rank_zero_too(monkeypatch):
    monkeypatch.setattr(
        torch.distributed,
        "all_gather_object",
        lambda out, value, group=None: out.__setitem__(
            slice(None), [value, ("RuntimeError", "disk full") if value is None else None]
        ),
    )
    context = DistContext(rank=0, world_size=2)
    with pytest.raises(RuntimeError, match="rank 1 failed with RuntimeError: disk full"):
        context.main_first(lambda: 5)


def test_nccl_jobs_wait_in_a_gloo_group():
    source = Path(distributed.__file__).read_text()
    assert 'new_group(backend="gloo"' in source


# --------------------------------------------------------------------------- torch floor
def test_the_torch_floor_is_the_one_the_code_needs():
    """GradScaler(device), init_process_group(device_id=) and is_autocast_enabled(device) need
    torch 2.4; pyproject, the Makefile and the README say so."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "torch>=2.4" in project["project"]["dependencies"]
    assert "TORCH_SPEC ?= torch>=2.4" in (ROOT / "Makefile").read_text()
    assert "torch>=2.4" in (ROOT / "README.md").read_text()
