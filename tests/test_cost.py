"""Cost accounting: FLOP/MAC counts against hand counts, phase records and ``reffakd cost``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from reffakd.cli import main
from reffakd.errors import UserError
from reffakd.experiments.cost import dataset_input, train_split_size
from reffakd.models import build_model
from reffakd.training.cost import (
    PhaseMeter,
    aggregate_costs,
    count_parameters,
    count_trainable_parameters,
    forward_flops,
    inference_flops,
    phase_cost,
    reset_peak_rss,
    training_flops,
)


def hand_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of every Conv2d, ConvTranspose2d and Linear, from shapes recorded by hooks.

    A conv does ``C_in/groups x k x k`` multiply-adds per output element; a transposed conv
    spreads each *input* element over ``C_out/groups x k x k`` outputs; biases are not counted.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        x = inputs[0]
        if isinstance(module, nn.Linear):
            total += x[0].numel() // module.in_features * module.in_features * module.out_features
        elif isinstance(module, nn.ConvTranspose2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            total += x[0].numel() * module.out_channels // module.groups * kernel
        elif isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * module.in_channels // module.groups * kernel

    layers = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for handle in handles:
        handle.remove()
    return total


# ---------------------------------------------------------------------------------------------
# Counting


@pytest.mark.parametrize("bias", [True, False])
def test_conv_flops_match_hand_count_and_ignore_bias(bias):
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=bias)
    counted = forward_flops(conv, (1, 8, 8))
    assert counted["macs"] == 4 * 1 * 3 * 3 * 8 * 8 == 2304
    assert counted["flops"] == 2 * 2304  # a multiply-add is 2 FLOPs; the bias adds nothing
    assert counted["input_shape"] == [1, 8, 8]
    assert sum(counted["by_op"].values()) == counted["flops"]


@pytest.mark.parametrize("bias", [True, False])
def test_linear_flops_match_hand_count(bias):
    counted = forward_flops(nn.Linear(10, 5, bias=bias), (10,))
    assert counted["macs"] == 50
    assert counted["flops"] == 100


def test_transposed_conv_counts_input_positions():
    deconv = nn.ConvTranspose2d(4, 2, kernel_size=4, stride=2, padding=1)
    counted = forward_flops(deconv, (4, 4, 4))
    assert counted["macs"] == 4 * 2 * 4 * 4 * 4 * 4  # C_in C_out k k H_in W_in
    assert counted["macs"] == hand_macs(deconv, (4, 4, 4))


def test_per_sample_count_is_batch_independent_and_mode_is_restored():
    net = build_model("lenet5", 10, 1, 32)
    net.train()
    bn = net.features[0][1]
    before = bn.running_mean.clone()
    single = forward_flops(net, (1, 32, 32))
    batched = forward_flops(net, (1, 32, 32), batch_size=4)
    assert single["flops"] == batched["flops"]
    assert net.training
    assert torch.equal(bn.running_mean, before)  # counted in eval mode: BN stats untouched
    with pytest.raises(ValueError):
        forward_flops(net, (1, 32, 32), batch_size=0)


def test_lenet5_macs_match_layer_shapes():
    conv1 = 6 * 1 * 25 * 28 * 28
    conv2 = 16 * 6 * 25 * 10 * 10
    fc = 400 * 120 + 120 * 84 + 84 * 10
    net = build_model("lenet5", 10, 1, 32)
    counted = forward_flops(net, (1, 32, 32))
    assert counted["macs"] == conv1 + conv2 + fc == 416_520
    assert counted["macs"] == hand_macs(net, (1, 32, 32))


def test_cae_macs_and_params_match_methods():
    encoder = 12 * 3 * 16 * 16 * 16 + 24 * 12 * 16 * 8 * 8 + 48 * 24 * 16 * 4 * 4
    decoder = 48 * 24 * 16 * 4 * 4 + 24 * 12 * 16 * 8 * 8 + 12 * 3 * 16 * 16 * 16
    cae = build_model("cae", 0, 3, 32)
    counted = forward_flops(cae, (3, 32, 32))
    assert counted["macs"] == encoder + decoder == 1_474_560  # docs/methods.md §2.1
    assert counted["macs"] == hand_macs(cae, (3, 32, 32))
    assert forward_flops(cae.encoder, (3, 32, 32))["macs"] == encoder
    assert 45_000 < count_parameters(cae) < 50_000  # docs/methods.md §2.1: 47,355


def test_parameter_counts():
    net = nn.Sequential(nn.Linear(10, 5), nn.Linear(5, 2))
    assert count_parameters(net) == 55 + 12
    net[0].weight.requires_grad_(False)
    assert count_parameters(net) == 67
    assert count_trainable_parameters(net) == 67 - 50
    assert count_parameters(net, trainable_only=True) == 17


def test_training_and_inference_flops_arithmetic():
    assert training_flops(1000, 50) == 150_000.0
    assert inference_flops(1000, 50) == 50_000.0
    assert training_flops(0, 10) == 0.0
    assert isinstance(training_flops(3, 7), float)


# ---------------------------------------------------------------------------------------------
# Measuring phases


def test_phase_meter_reports_time_and_memory():
    with PhaseMeter("student", device="cpu") as meter:
        block = torch.ones(2_000_000)
        del block
    result = meter.result
    assert set(result) == {
        "phase",
        "seconds",
        "peak_rss_mb",
        "peak_rss_scope",
        "rss_increase_mb",
        "cuda_peak_mb",
    }
    assert result["phase"] == "student"
    assert result["seconds"] >= 0
    assert result["peak_rss_mb"] > 0
    assert result["rss_increase_mb"] >= 0
    assert result["cuda_peak_mb"] is None
    assert result["peak_rss_scope"] in {"phase", "process"}


needs_peak_reset = pytest.mark.skipif(
    not reset_peak_rss(), reason="the kernel's peak-RSS mark cannot be reset here"
)


@needs_peak_reset
def test_phase_peak_is_the_phases_own_not_an_earlier_phases():
    mib = 2**20
    with PhaseMeter("big") as big:
        block = torch.ones(200 * mib // 4)  # 200 MiB, touched
        del block
    with PhaseMeter("small") as small:
        small_block = torch.ones(20 * mib // 4)
        del small_block
    assert big.result["peak_rss_scope"] == small.result["peak_rss_scope"] == "phase"
    assert big.result["rss_increase_mb"] >= 190
    assert small.result["rss_increase_mb"] < 100
    assert small.result["peak_rss_mb"] < big.result["peak_rss_mb"] - 100


@needs_peak_reset
def test_nested_phase_does_not_hide_its_peak_from_the_outer_phase():
    mib = 2**20
    with PhaseMeter("outer") as outer:
        with PhaseMeter("inner") as inner:
            block = torch.ones(150 * mib // 4)
            del block
        with PhaseMeter("after"):
            pass
    assert inner.result["rss_increase_mb"] >= 140
    assert outer.result["peak_rss_mb"] >= inner.result["peak_rss_mb"]
    assert outer.result["rss_increase_mb"] >= 140


def test_phase_meter_start_stop_and_misuse():
    meter = PhaseMeter("ae")
    with pytest.raises(RuntimeError):
        meter.stop()
    assert meter.start() is meter
    assert meter.stop()["seconds"] >= 0


def test_phase_cost_counts_trained_and_frozen_networks():
    student = build_model("lenet5", 10, 1, 32)
    teacher = build_model("lenet5", 10, 1, 32)
    for p in teacher.parameters():
        p.requires_grad_(False)
    meter = {"phase": "student", "seconds": 1.5, "peak_rss_mb": 100.0, "rss_increase_mb": 2.0}
    cost = phase_cost("student", {"student": student, "teacher": teacher}, (1, 32, 32), 1000, meter)
    f = 833_040
    assert cost["networks"]["student"]["trained"]
    assert not cost["networks"]["teacher"]["trained"]
    assert cost["networks"]["teacher"]["trainable_params"] == 0
    assert cost["training_flops"] == 3 * f * 1000
    assert cost["inference_flops"] == f * 1000
    assert cost["total_flops"] == 4 * f * 1000
    assert cost["params_trained"] == 61_750
    assert cost["seconds"] == 1.5 and cost["cuda_peak_mb"] is None
    assert json.loads(json.dumps(cost)) == cost


def test_phase_cost_per_network_values_and_explicit_trained():
    ae = build_model("cae", 0, 3, 32)
    cost = phase_cost(
        "soft-labels", {"encoder": ae.encoder}, {"encoder": (3, 32, 32)}, {"encoder": 400}, None,
        trained=(),
    )  # fmt: skip
    assert cost["training_flops"] == 0.0
    assert cost["inference_flops"] == 2 * 737_280 * 400
    assert cost["seconds"] is None
    with pytest.raises(ValueError):
        phase_cost("x", {"a": ae.encoder}, (3, 32, 32), {"b": 1})
    with pytest.raises(ValueError):
        phase_cost("x", {"a": ae.encoder}, (3, 32, 32), 1, trained=["b"])


def test_aggregate_costs_sums_phases():
    phases = [
        {"phase": "ae", "seconds": 2.0, "peak_rss_mb": 50.0, "cuda_peak_mb": None,
         "params_trained": 10, "training_flops": 30.0, "inference_flops": 0.0,
         "total_flops": 30.0},
        {"phase": "student", "seconds": 3.0, "peak_rss_mb": 80.0, "cuda_peak_mb": None,
         "params_trained": 20, "training_flops": 60.0, "inference_flops": 5.0,
         "total_flops": 65.0},
    ]  # fmt: skip
    total = aggregate_costs(phases)
    assert total["phases"] == ["ae", "student"]
    assert total["seconds"] == 5.0
    assert total["peak_rss_mb"] == 80.0
    assert total["cuda_peak_mb"] is None
    assert total["params_trained"] == 30
    assert total["total_flops"] == 95.0
    assert total["training_flops"] == 90.0 and total["inference_flops"] == 5.0


# ---------------------------------------------------------------------------------------------
# Dataset facts and the CLI


def test_train_split_sizes_follow_the_hold_out():
    assert train_split_size("fashion-mnist", 0.1) == 54_000
    assert train_split_size("cifar100", 0.1) == 45_000
    assert train_split_size("tiny-imagenet", 0.1) == 90_000
    assert train_split_size("mnist", 0.0) == 60_000
    assert train_split_size("imagefolder", 0.1) is None


def test_dataset_input_uses_spec_and_overrides():
    assert dataset_input("fashion-mnist") == ((1, 32, 32), 10)
    assert dataset_input("cifar100", image_size=64) == ((3, 64, 64), 100)
    assert dataset_input("imagefolder", 48, 3, 7) == ((3, 48, 48), 7)
    with pytest.raises(UserError, match="--image-size"):
        dataset_input("imagefolder")
    with pytest.raises(UserError):
        dataset_input("fashion-mnist", image_size=0)


def test_cli_cost_prints_lenet5_on_fashion_mnist(capsys):
    assert main(["cost", "lenet5", "--dataset", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert "61,750" in out
    assert "416,520 MACs" in out
    assert "54,000 samples" in out


def test_cli_cost_json(capsys):
    assert main(["cost", "lenet5", "--dataset", "fashion-mnist", "--json", "--epochs", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["forward_macs"] == 416_520
    assert report["train_samples_per_epoch"] == 54_000
    assert report["training_flops_per_epoch"] == 3 * 833_040 * 54_000
    assert report["training_flops_total"] == 2 * report["training_flops_per_epoch"]
    assert report["steps_per_epoch"] == 422


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-model", "--dataset", "fashion-mnist"],
        ["lenet5", "--dataset", "no-such-data"],
        ["lenet5", "--dataset", "imagefolder"],
        ["lenet5", "--dataset", "fashion-mnist", "--image-size", "8"],
        ["lenet5", "--dataset", "fashion-mnist", "--batch-size", "0"],
    ],
)
def test_cli_cost_bad_input_is_one_line_exit_2(args, capsys):
    assert main(["cost", *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("reffakd: error:"), err
