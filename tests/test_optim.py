"""Optimizers, parameter groups, schedules and gradient clipping (training/optim.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_resumes_identically, make_trainer

from reffakd.config import OptimConfig, TrainConfig, from_dict
from reffakd.errors import UserError
from reffakd.models import build_model
from reffakd.training.optim import (
    EpochMultiStep,
    StepSchedule,
    build_optimizer,
    build_schedule,
    parameter_groups,
)


def schedule_factors(config: OptimConfig, steps_per_epoch: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    schedule = build_schedule(optimizer, config, steps_per_epoch)
    assert isinstance(schedule, StepSchedule)
    return [schedule.factor(s) for s in range(config.epochs * steps_per_epoch)]


def test_cosine_with_warmup_per_step_hand_values():
    # 4 epochs of 2 steps, warm-up 1 epoch = 2 steps, then cosine over the remaining 6 steps.
    config = OptimConfig(epochs=4, schedule="cosine", warmup_epochs=1)
    half = 0.5 * (1 + math.cos(math.pi / 6))
    expected = [0.5, 1.0, 1.0, half, 0.75, 0.5, 0.25, 1 - half]
    assert schedule_factors(config, 2) == pytest.approx(expected)


def test_multistep_with_warmup_keeps_per_epoch_decay():
    config = OptimConfig(epochs=4, milestones=[2, 3], gamma=0.1, warmup_epochs=1.5)
    # W = 3 steps: 1/3, 2/3, 1; decay x0.1 from epoch 3 and x0.01 from epoch 4.
    expected = [1 / 3, 2 / 3, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    assert schedule_factors(config, 2) == pytest.approx(expected)


def test_cosine_without_warmup_starts_at_lr_and_ends_near_zero():
    factors = schedule_factors(OptimConfig(epochs=3, schedule="cosine"), 4)
    assert factors[0] == 1.0 and 0 < factors[-1] < 0.02
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))
    # 12 steps, no warm-up: 0.5 (1 + cos(pi s / 12)) for s = 0..11
    expected = [1.0, 0.98296, 0.93301, 0.85355, 0.75, 0.62941, 0.5, 0.37059, 0.25, 0.14645]
    expected += [0.06699, 0.01704]
    assert factors == pytest.approx(expected, abs=1e-5)


def test_multistep_warmup_longer_than_an_epoch_crosses_a_milestone() -> None:
    # S = 2, W = 4 steps; milestone 1: x0.5 from epoch 2 on, while the warm-up still runs.
    config = OptimConfig(epochs=3, milestones=[1], gamma=0.5, warmup_epochs=2)
    expected = [0.25, 0.5, 0.75 * 0.5, 1.0 * 0.5, 0.5, 0.5]
    assert schedule_factors(config, 2) == pytest.approx(expected)


def test_step_schedule_sets_every_group_and_keeps_weight_decay() -> None:
    model = build_model("lenet5", 10, 1, 32)
    config = OptimConfig(lr=0.2, epochs=2, schedule="cosine", no_decay_norm_bias=True)
    optimizer = build_optimizer(model.parameters(), config)
    schedule = build_schedule(optimizer, config, steps_per_epoch=2)
    # 4 steps: 0.5 (1 + cos(pi s / 4)) for s = 0..3
    for (epoch, step), factor in zip(
        [(1, 0), (1, 1), (2, 0), (2, 1)], [1.0, 0.85355, 0.5, 0.14645], strict=True
    ):
        schedule.at_step(epoch, step)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
            [0.2 * factor] * 2, rel=1e-4
        )
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]


def test_default_schedule_is_the_reference_multisteplr():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = build_schedule(optimizer, OptimConfig(), 10)
    assert isinstance(schedule, EpochMultiStep)
    # lr 0.1, x0.2 after epochs 60, 120 and 160 (epochs from 1); steps within an epoch keep it
    rates = []
    for epoch in range(1, 201):
        for step in range(10):
            schedule.at_step(epoch, step)
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # no gradients: moves nothing
        schedule.end_epoch()
    expected = [0.1] * 60 + [0.02] * 60 + [0.004] * 40 + [0.0008] * 40
    assert rates == pytest.approx([lr for lr in expected for _ in range(10)])


def test_epoch_learning_rates_recorded_by_the_engine(tmp_path):
    # 48 samples, batch 16: 3 steps per epoch; warm-up 1 epoch (3 steps), cosine over 9.
    optim = OptimConfig(
        epochs=4, batch_size=16, lr=0.1, schedule="cosine", warmup_epochs=1, milestones=[]
    )
    history = make_trainer(tmp_path, student="mlp", optim=optim).fit().history
    # the first steps of the epochs are 0, 3, 6, 9: cosine progress 0, 0, 1/3, 2/3
    expected = [0.1 / 3, 0.1, 0.1 * 0.5 * (1 + math.cos(math.pi / 3)), 0.1 * 0.25]
    assert [r["lr"] for r in history] == pytest.approx(expected)


def test_no_decay_groups_hold_biases_and_norm_weights():
    model = build_model("lenet5", 10, 1, 32)
    norms = {
        id(p)
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
        for p in m.parameters()
    }
    groups = parameter_groups(model.parameters(), OptimConfig(no_decay_norm_bias=True))
    decay, no_decay = ({id(p) for p in g["params"]} for g in groups)
    for name, param in model.named_parameters():
        expected = name.endswith("bias") or id(param) in norms
        assert (id(param) in no_decay) == expected, name
        assert (id(param) in decay) != expected, name
    assert len(norms) == 4 and len(decay) == 5  # 2 BatchNorms; 2 conv + 3 linear weights
    optimizer = build_optimizer(model.parameters(), OptimConfig(no_decay_norm_bias=True))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]


def group_names(model: torch.nn.Module, config: OptimConfig) -> list[list[str]]:
    names = {id(p): name for name, p in model.named_parameters()}
    return [
        [names[id(p)] for p in g["params"]]
        for g in build_optimizer(model.parameters(), config).param_groups
    ]


def test_no_decay_groups_of_lenet5_by_name() -> None:
    decay, no_decay = group_names(
        build_model("lenet5", 10, 1, 32), OptimConfig(no_decay_norm_bias=True)
    )
    assert decay == [
        "features.0.0.weight",
        "features.1.0.weight",
        "classifier.0.weight",
        "classifier.2.weight",
        "classifier.4.weight",
    ]
    assert no_decay == [
        "features.0.0.bias",
        "features.0.1.weight",
        "features.0.1.bias",
        "features.1.0.bias",
        "features.1.1.weight",
        "features.1.1.bias",
        "classifier.0.bias",
        "classifier.2.bias",
        "classifier.4.bias",
    ]


def test_no_decay_groups_hold_layernorm_and_keep_embeddings_decayed() -> None:
    model = torch.nn.Sequential(
        torch.nn.Embedding(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2, bias=False)
    )
    config = OptimConfig(no_decay_norm_bias=True)
    assert group_names(model, config) == [["0.weight", "2.weight"], ["1.weight", "1.bias"]]
    # nothing to exempt: a single group, with weight decay
    bare = torch.nn.Linear(3, 2, bias=False)
    optimizer = build_optimizer(bare.parameters(), config)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4]


def test_no_decay_group_is_not_decayed_by_a_step() -> None:
    # zero gradients, plain SGD: a step moves a decayed weight by -lr * wd * w and nothing else
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0]]))
        layer.bias.fill_(3.0)
    config = OptimConfig(lr=0.5, momentum=0.0, weight_decay=0.1, no_decay_norm_bias=True)
    optimizer = build_optimizer(layer.parameters(), config)
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert layer.weight.flatten().tolist() == pytest.approx([0.95, -1.9])
    assert layer.bias.tolist() == [3.0]


def test_default_is_one_group_of_all_parameters():
    model = build_model("lenet5", 10, 1, 32)
    optimizer = build_optimizer(model.parameters(), OptimConfig())
    assert isinstance(optimizer, torch.optim.SGD) and len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == len(list(model.parameters()))


def test_adamw_first_step_moves_every_weight_by_lr():
    # Adam's first step is lr * m / (sqrt(v) + eps) = lr * sign(g) (bias-corrected), and
    # decoupled weight decay multiplies the weight by (1 - lr * wd) first.
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    config = OptimConfig(name="adamw", lr=0.01, weight_decay=0.1, eps=1e-12)
    optimizer = build_optimizer([weight], config)
    weight.grad = torch.tensor([0.5, -3.0, 1e-3])
    optimizer.step()
    start = torch.tensor([1.0, -2.0, 3.0])
    expected = start * (1 - 0.01 * 0.1) - 0.01 * torch.tensor([1.0, -1.0, 1.0])
    assert torch.allclose(weight.detach(), expected, atol=1e-6)


def test_clipping_bounds_the_update_of_one_plain_sgd_step(tmp_path):
    def step_size(clip: float | None) -> float:
        optim = OptimConfig(
            epochs=1,
            batch_size=48,
            lr=1.0,
            momentum=0.0,
            weight_decay=0.0,
            milestones=[],
            clip_grad_norm=clip,
        )
        trainer = make_trainer(tmp_path / str(clip), student="mlp", optim=optim)
        before = [p.detach().clone() for p in trainer.task.learnable_parameters()]
        trainer.fit()
        after = [p.detach() for p in trainer.task.learnable_parameters()]
        moved = sum(float((a - b).pow(2).sum()) for a, b in zip(after, before, strict=True))
        return math.sqrt(moved)

    assert step_size(None) > 0.1
    assert step_size(1e-3) == pytest.approx(1e-3, rel=1e-3)


def test_adamw_cosine_warmup_resumes_bit_identically(tmp_path):
    optim = OptimConfig(
        epochs=3,
        batch_size=16,
        lr=3e-3,
        name="adamw",
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=1,
        clip_grad_norm=1.0,
        no_decay_norm_bias=True,
    )
    state = assert_resumes_identically(tmp_path, lambda d: make_trainer(d, optim=optim))
    assert state["optimizer"]["param_groups"][1]["weight_decay"] == 0.0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("name", "lamb", "optim.name"),
        ("schedule", "linear", "optim.schedule"),
        ("warmup_epochs", 300, "optim.warmup_epochs"),
        ("clip_grad_norm", 0, "optim.clip_grad_norm"),
        ("betas", [0.9], "optim.betas"),
        ("eps", 0, "optim.eps"),
    ],
)
def test_bad_optim_values_name_their_key(key, value, message):
    with pytest.raises(UserError, match=message) as raised:
        from_dict(TrainConfig, {"optim": {key: value}})
    assert "\n" not in str(raised.value)


def test_nesterov_needs_sgd_with_momentum():
    with pytest.raises(UserError, match="optim.nesterov"):
        OptimConfig(name="adamw", nesterov=True)
