"""Drop-in criteria for a user's own loop: the engine's sources and objectives, checked against
hand-written formulas, and the very objects the Distiller trains with."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reffakd
from reffakd.aesl.loss import ReffAKDLoss
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.errors import UserError
from reffakd.kd.loss_criteria import (
    DistillationLoss,
    DISTLoss,
    DKDLoss,
    KDLoss,
    LabelSmoothingLoss,
    TfKDVirtualLoss,
)
from reffakd.kd.loss_objectives import DecoupledKD, DISTObjective, KnowledgeDistillation
from reffakd.kd.source_base import TeacherSignal
from reffakd.kd.source_teachers import ClassTableSource, NetworkSource
from reffakd.kd.task import Distiller

C = 4


def table() -> torch.Tensor:
    """A (C, C) soft-label table with distinct rows."""
    raw = torch.arange(C * C, dtype=torch.float32).reshape(C, C) / 7.0
    return torch.softmax(raw + 3 * torch.eye(C), dim=1)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, C, generator=g), torch.tensor([0, 1, 2, 3, 1, 0])


def kl(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL(p || q), written out."""
    return (p * (p.log() - log_q)).sum(dim=1).mean()


def test_public_names_resolve_to_the_classes() -> None:
    assert reffakd.ReffAKDLoss is ReffAKDLoss and reffakd.KDLoss is KDLoss
    assert reffakd.DistillationLoss is DistillationLoss and reffakd.DKDLoss is DKDLoss
    assert reffakd.AESL.load.__doc__


def test_reffakd_loss_is_the_formula_and_the_engine_objects() -> None:
    logits, labels = batch()
    criterion = ReffAKDLoss(SoftLabels(table()))
    loss = criterion(logits, labels)
    # preset reffakd: alpha 0.3, T 4, teacher side untouched (T_t = 1)
    target = table()[labels]
    expected_kd = 0.3 * 16 * kl(target, F.log_softmax(logits / 4, dim=1))
    expected_ce = 0.7 * F.cross_entropy(logits, labels)
    assert torch.allclose(loss, expected_ce + expected_kd, atol=1e-6)
    assert set(criterion.last_terms) == {"ce", "kd"}
    assert torch.allclose(criterion.last_terms["kd"], expected_kd, atol=1e-6)
    assert not criterion.last_terms["kd"].requires_grad
    assert type(criterion.source) is ClassTableSource
    assert type(criterion.objective) is KnowledgeDistillation


def test_reffakd_loss_options_and_inputs(tmp_path) -> None:
    logits, labels = batch()
    SoftLabels(table(), None, {}).save(tmp_path / "sl.pt")
    from_file = ReffAKDLoss(tmp_path / "sl.pt", alpha=1.0, temperature=1.0, reduction="mean")
    expected = (table()[labels] * (table()[labels].log() - F.log_softmax(logits, 1))).sum() / (
        6 * C
    )
    assert torch.allclose(from_file(logits, labels), expected, atol=1e-6)
    assert torch.allclose(
        ReffAKDLoss(table())(logits, labels), ReffAKDLoss(SoftLabels(table()))(logits, labels)
    )
    with pytest.raises(UserError, match="unknown option 'loss.nope'"):
        ReffAKDLoss(table(), nope=1)
    with pytest.raises(UserError, match="alpha must be in"):
        ReffAKDLoss(table(), alpha=2.0)
    with pytest.raises(UserError, match="probability distributions"):
        ReffAKDLoss(SoftLabels(torch.ones(C, C)))
    with pytest.raises(UserError, match="non-negative and sum to 1"):
        DKDLoss(soft_labels=torch.ones(C, C), warmup=0)


class Teacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(3, C)
        self.dropout = nn.Dropout(0.5)  # must be off: the teacher is in eval mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear(x))


def test_kd_loss_runs_the_frozen_teacher() -> None:
    teacher = Teacher()
    inputs = torch.randn(6, 3)
    logits, labels = batch()
    logits.requires_grad_(True)
    criterion = KDLoss(teacher).train()
    loss = criterion(logits, labels, inputs)
    with torch.no_grad():
        t = teacher.linear(inputs)
    expected = 0.1 * F.cross_entropy(logits, labels) + 0.9 * 16 * kl(
        F.softmax(t / 4, 1), F.log_softmax(logits / 4, 1)
    )
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert logits.grad is not None and teacher.linear.weight.grad is None
    assert not teacher.training and not teacher.linear.weight.requires_grad
    assert type(criterion.source) is NetworkSource and criterion.needs_inputs
    with pytest.raises(UserError, match=r"criterion\(logits, labels, inputs\)"):
        criterion(logits, labels)


def test_dkd_needs_the_epoch_when_it_warms_up() -> None:
    logits, labels = batch()
    criterion = DKDLoss(soft_labels=table())
    with pytest.raises(UserError, match="set_epoch"):
        criterion(logits, labels)
    with pytest.raises(UserError, match="counted from 1"):
        criterion.set_epoch(0)
    signal = TeacherSignal(table().log()[labels], class_level=True)
    for epoch in (1, 5, 30):
        criterion.set_epoch(epoch)
        expected = DecoupledKD(alpha=1.0, beta=8.0, temperature=4.0, warmup=20)(
            logits, labels, signal, epoch
        )
        loss = criterion(logits, labels)
        assert torch.allclose(loss, sum(expected.values()), atol=1e-5)
        assert set(criterion.last_terms) == {"ce", "tckd", "nckd"}
    assert torch.isfinite(DKDLoss(soft_labels=table(), warmup=0)(logits, labels))
    with pytest.raises(UserError, match="either a teacher network or soft_labels"):
        DKDLoss()
    with pytest.raises(UserError, match="either a teacher network or soft_labels"):
        DISTLoss(Teacher(), soft_labels=table())


def test_dist_loss_with_a_teacher_matches_the_objective() -> None:
    teacher = Teacher()
    inputs = torch.randn(6, 3)
    logits, labels = batch()
    loss = DISTLoss(teacher, beta=2.0)(logits, labels, inputs)
    with torch.no_grad():
        signal = TeacherSignal(teacher.linear(inputs), class_level=False)
    expected = DISTObjective(beta=2.0)(logits, labels, signal, 1)
    assert torch.allclose(loss, sum(expected.values()), atol=1e-6)


def test_label_smoothing_and_virtual_teacher_tables() -> None:
    logits, labels = batch()
    eps = 0.2
    smooth = torch.full((C, C), eps / (C - 1)).fill_diagonal_(1 - eps)
    expected = -(smooth[labels] * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(LabelSmoothingLoss(C, eps=eps)(logits, labels), expected, atol=1e-6)

    # Tf-KD virtual teacher: softmax(p_d / 20) with p_d = 0.99 on the label; alpha 0.1, T 1
    p_d = torch.full((C, C), 0.01 / (C - 1)).fill_diagonal_(0.99)
    virtual = torch.softmax(p_d / 20.0, dim=1)
    expected = 0.9 * F.cross_entropy(logits, labels) + 0.1 * kl(
        virtual[labels], F.log_softmax(logits, 1)
    )
    assert torch.allclose(TfKDVirtualLoss(C)(logits, labels), expected, atol=1e-6)
    with pytest.raises(UserError, match="needs num_classes"):
        LabelSmoothingLoss(1)


def test_from_method_covers_presets_and_refuses_run_only_sources() -> None:
    logits, labels = batch()
    criterion = DistillationLoss.from_method("reffakd+dist", soft_labels=table())
    assert set(criterion(logits, labels).shape) == set() and set(criterion.last_terms) == {
        "ce",
        "inter",
        "intra",
    }
    ce = DistillationLoss.from_method("ce")
    assert ce.source is None
    assert torch.allclose(ce(logits, labels), F.cross_entropy(logits, labels))
    with pytest.raises(UserError, match="source 'lwkd' has no drop-in form"):
        DistillationLoss.from_method("lwkd")
    with pytest.raises(UserError, match="needs soft labels"):
        DistillationLoss.from_method("reffakd")
    with pytest.raises(UserError, match="takes no options"):
        DistillationLoss.from_method("kd", teacher=Teacher(), source_options={"cache": True})


def test_the_distiller_trains_with_the_same_criterion() -> None:
    student = nn.Linear(3, C)
    source, objective = ClassTableSource(table()), KnowledgeDistillation(alpha=0.5)
    distiller = Distiller(student, source, objective)
    assert isinstance(distiller.criterion, DistillationLoss)
    assert distiller.source is source and distiller.objective is objective
    inputs, labels = torch.randn(6, 3), batch()[1]
    _, terms = distiller.forward_train(inputs, labels, torch.arange(6), epoch=3)
    by_hand = DistillationLoss(source, objective)
    by_hand.set_epoch(3)
    assert torch.allclose(sum(terms.values()), by_hand(student(inputs), labels))
    assert list(distiller.state_dict()) == ["weight", "bias"]  # only the student is saved
