"""NKD and USKD: the normalized loss against hand-computed values and a naive per-sample
reference, what is detached, Zipf labels, the feature hook, the drop-in criteria, the weak head
in the engine (optimizer, checkpoint, bit-identical resume) and runs through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import epoch_records, source_context, tiny_image_splits, train_args
from torch import nn

import reffakd
from reffakd.cli import main
from reffakd.config import OptimConfig
from reffakd.data.augment import AugmentPolicy, BatchTransform
from reffakd.errors import UserError
from reffakd.kd import loss_functional
from reffakd.kd.loss_criteria import DistillationLoss, NKDLoss, USKDLoss
from reffakd.kd.loss_objectives import build_objective
from reffakd.kd.method_uskd import USKDSignal, USKDSource, pool_feature
from reffakd.kd.methods import PRESETS, resolve_method
from reffakd.kd.source_base import StudentOutputs, TeacherSignal, build_source
from reffakd.kd.task import Distiller
from reffakd.models import build_model
from reffakd.training.engine import Trainer
from reffakd.training.rundir import RunDir

# B = 4, C = 5
Z = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 2.0, 0.0, -1.0, 0.0],
        [0.5, 0.5, 0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 3.0, -1.0],
    ]
)
T_LOGITS = torch.tensor(
    [
        [2.0, 1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0, 2.0],
        [1.0, 0.0, 0.0, 2.0, 0.0],
    ]
)
Y = torch.tensor([0, 1, 4, 3])


# --------------------------------------------------------------------------- naive references
def softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def others(row: list[float], label: int) -> list[float]:
    return [v for c, v in enumerate(row) if c != label]


def naive_nkd(z, t, y, temperature=1.0, gamma=1.5, teacher_temperature=None):
    """Per sample: -t_y log s_y and -Σ_{c≠y} N(t/T_t)_c log N(s/T)_c, averaged."""
    t_t = teacher_temperature or temperature
    loss_t = loss_n = 0.0
    for zi, ti, yi in zip(z.tolist(), t.tolist(), y.tolist(), strict=True):
        loss_t -= softmax(ti)[yi] * math.log(softmax(zi)[yi])
        student = softmax(others(zi, yi), temperature)
        teacher = softmax(others(ti, yi), t_t)
        loss_n -= sum(p * math.log(q) for p, q in zip(teacher, student, strict=True))
    b = len(y)
    return loss_t / b, gamma * temperature**2 * loss_n / b


def naive_zipf(scores: list[float], label: int) -> list[float]:
    """Rank 1 = highest score, ties by class index; 1/rank, label dropped, renormalized."""
    order = sorted(range(len(scores)), key=lambda c: (-scores[c], c))
    weights = [0.0] * len(scores)
    for rank, c in enumerate(order, start=1):
        weights[c] = 0.0 if c == label else 1.0 / rank
    return [w / sum(weights) for w in weights]


def naive_uskd(z, w, y, ranking="log_prob", alpha=0.1, beta=0.1, mu=0.1, smoothing=0.1):
    """The whole USKD loss (CE + α L_t + β L_n + μ LS-CE of the weak head), sample by sample."""
    rows = list(zip(z.tolist(), w.tolist(), y.tolist(), strict=True))
    squared = [softmax(zi)[yi] ** 2 for zi, _, yi in rows]
    mean_sq = sum(squared) / len(rows)
    total = 0.0
    for (zi, wi, yi), sq in zip(rows, squared, strict=True):
        s, pw = softmax(zi), softmax(wi)
        s_rank = [math.log(v) for v in s] if ranking == "log_prob" else s
        scores = [
            pw[c] / (1 - pw[yi] + 1e-6) + s_rank[c] / (1 - s_rank[yi] + 1e-6)
            for c in range(len(zi))
        ]
        zipf = others(naive_zipf(scores, yi), yi)
        student_non = softmax(others(zi, yi))
        ce = -math.log(s[yi])
        target = -(sq + 1 - mean_sq) * math.log(s[yi])
        non = -sum(p * math.log(q) for p, q in zip(zipf, student_non, strict=True))
        c = len(zi)
        smooth = [smoothing / c + (1 - smoothing) * (k == yi) for k in range(c)]
        weak = -sum(p * math.log(q) for p, q in zip(smooth, pw, strict=True))
        total += ce + alpha * target + beta * non + mu * weak
    return total / len(rows)


# --------------------------------------------------------------------------- NKD loss
def test_nkd_golden_values_on_uniform_student():
    # z = 0: log s_y = -log 5 and the non-target student is uniform over 4 classes, so
    # L_t = log 5 · mean_i softmax(t_i)_y and L_n = log 4 whatever the teacher
    loss_t, loss_n = loss_functional.nkd(torch.zeros(4, 5), T_LOGITS, Y, temperature=2.0, gamma=3.0)
    t_y = F.softmax(T_LOGITS, dim=1)[torch.arange(4), Y]
    assert loss_t.item() == pytest.approx(math.log(5) * t_y.mean().item(), rel=1e-6)
    assert loss_n.item() == pytest.approx(3.0 * 4.0 * math.log(4), rel=1e-6)
    # sample 0: t = (2, 1, 0, 0, 0), y = 0: softmax(t)_0 = e² / (e² + e + 3)
    first = math.exp(2) / (math.exp(2) + math.exp(1) + 3)
    single_t, _ = loss_functional.nkd(torch.zeros(1, 5), T_LOGITS[:1], Y[:1])
    assert single_t.item() == pytest.approx(first * math.log(5), rel=1e-6)


def test_nkd_golden_values():
    # sample 0 by hand: s_0 = e / (e + 4), t_0 = e² / (e² + e + 3), so L_t,0 = 0.510116
    s0 = math.e / (math.e + 4)
    t0 = math.exp(2) / (math.exp(2) + math.e + 3)
    single, _ = loss_functional.nkd(Z[:1], T_LOGITS[:1], Y[:1])
    assert single.item() == pytest.approx(-t0 * math.log(s0), rel=1e-6)
    loss_t, loss_n = loss_functional.nkd(Z, T_LOGITS, Y, temperature=1.0, gamma=1.5)
    assert loss_t.item() == pytest.approx(0.3320254, abs=1e-6)
    assert loss_n.item() == pytest.approx(2.1213610, abs=1e-6)


@pytest.mark.parametrize(
    ("temperature", "gamma", "teacher_temperature"),
    [(1.0, 1.5, None), (3.0, 3.5, None), (4.0, 1.0, 1.0)],
)
def test_nkd_matches_the_naive_reference(temperature, gamma, teacher_temperature):
    g = torch.Generator().manual_seed(1)
    z, t = torch.randn(4, 5, generator=g) * 2, torch.randn(4, 5, generator=g) * 2
    y = torch.tensor([0, 4, 2, 2])
    got = loss_functional.nkd(
        z, t, y, temperature=temperature, gamma=gamma, teacher_temperature=teacher_temperature
    )
    want = naive_nkd(z, t, y, temperature, gamma, teacher_temperature)
    assert [v.item() for v in got] == pytest.approx(want, rel=1e-5)


def test_nkd_non_target_parts_each_sum_to_one_and_teacher_is_detached():
    z = Z.clone().requires_grad_(True)
    t = T_LOGITS.clone().requires_grad_(True)
    target, non_target = loss_functional.nkd_soft_targets(t, Y, 2.0)
    assert not target.requires_grad and not non_target.requires_grad
    assert torch.allclose(non_target.sum(1), torch.ones(4))
    assert torch.all(non_target[torch.arange(4), Y] == 0)
    student = loss_functional.non_target_log_softmax(Z, Y, 2.0).exp()
    student[torch.arange(4), Y] = 0
    assert torch.allclose(student.sum(1), torch.ones(4))
    sum(loss_functional.nkd(z, t, Y)).backward()
    assert t.grad is None and z.grad is not None and torch.isfinite(z.grad).all()


def test_nkd_objective_reads_every_kind_of_signal():
    objective = build_objective("nkd", {"temperature": 3.0, "gamma": 3.5})
    network = objective(Z, Y, TeacherSignal(T_LOGITS, class_level=False), 1)
    assert set(network) == {"ce", "nkd_target", "nkd_non_target"}
    want_t, want_n = naive_nkd(Z, T_LOGITS, Y, 3.0, 3.5)
    assert network["nkd_target"].item() == pytest.approx(want_t, rel=1e-5)
    assert network["nkd_non_target"].item() == pytest.approx(want_n, rel=1e-5)
    # a class table (log-probabilities): the row is the teacher's distribution
    table = torch.full((5, 5), 0.1).fill_diagonal_(0.6)
    rows = TeacherSignal(loss_functional.probs_to_logits(table[Y]), class_level=True)
    aesl = build_objective("nkd", {"teacher_temperature": 1.0})(Z, Y, rows, 1)
    log_s = F.log_softmax(Z, 1)[torch.arange(4), Y]
    assert aesl["nkd_target"].item() == pytest.approx(-(0.6 * log_s).mean().item(), rel=1e-6)
    with pytest.raises(UserError, match="temperature"):
        build_objective("nkd", {"temperature": 0.0})


# --------------------------------------------------------------------------- USKD pieces
def test_uskd_soft_target_is_the_smoothed_squared_probability_and_detached():
    z = Z.clone().requires_grad_(True)
    target = loss_functional.uskd_target(z, Y)
    assert not target.requires_grad
    s = F.softmax(Z, 1)[torch.arange(4), Y]
    assert torch.allclose(target, s**2 + 1 - (s**2).mean())
    assert loss_functional.uskd_target(torch.zeros(3, 5), torch.tensor([0, 1, 2])).tolist() == (
        pytest.approx([1.0, 1.0, 1.0])
    )


def test_zipf_weights_for_ties_and_for_a_target_ranked_first():
    h = sum(1 / r for r in range(2, 6))  # ranks 2..5 left once the target takes rank 1
    first = loss_functional.zipf_non_target(
        torch.tensor([[9.0, 4.0, 3.0, 2.0, 1.0]]), torch.tensor([0])
    )
    assert first[0].tolist() == pytest.approx([0.0, 1 / 2 / h, 1 / 3 / h, 1 / 4 / h, 1 / 5 / h])
    # all tied: classes rank in index order, so label 2 takes rank 3
    tied = loss_functional.zipf_non_target(torch.zeros(1, 5), torch.tensor([2]))
    h2 = 1 + 1 / 2 + 1 / 4 + 1 / 5
    assert tied[0].tolist() == pytest.approx([1 / h2, 1 / 2 / h2, 0.0, 1 / 4 / h2, 1 / 5 / h2])
    # a tie between two non-targets: the lower index ranks first, deterministically
    pair = loss_functional.zipf_non_target(
        torch.tensor([[0.0, 5.0, 5.0, 1.0, 9.0]]), torch.tensor([4])
    )
    assert pair[0, 1] > pair[0, 2] > pair[0, 3] > pair[0, 0]
    g = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 3, (4, 5), generator=g).float()  # many ties
    got = loss_functional.zipf_non_target(scores, Y)
    want = [naive_zipf(row, y) for row, y in zip(scores.tolist(), Y.tolist(), strict=True)]
    assert got.tolist() == [pytest.approx(row) for row in want]


def test_rank_scores_code_and_paper_forms_differ():
    weak = torch.zeros(4, 5)
    code = loss_functional.uskd_rank_scores(Z, weak, Y, "log_prob")
    paper = loss_functional.uskd_rank_scores(Z, weak, Y, "prob")
    s = F.softmax(Z, 1)
    s_y = s[torch.arange(4), Y].unsqueeze(1)
    assert torch.allclose(paper, 0.2 / (0.8 + 1e-6) + s / (1 - s_y + 1e-6))
    log_s, log_s_y = s.log(), s_y.log()
    assert torch.allclose(code, 0.2 / (0.8 + 1e-6) + log_s / (1 - log_s_y + 1e-6), atol=1e-6)
    with pytest.raises(ValueError, match="ranking"):
        loss_functional.uskd_rank_scores(Z, weak, Y, "rank")


class Staged(nn.Module):
    """A two-stage net naming its stages, for a direct check of the whole USKD loss."""

    feature_stages = ("stage1", "stage2")

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage2(self.stage1(x)).mean((2, 3)))


def test_uskd_golden_value_with_every_output_uniform():
    """All logits 0 (final and weak head): s_y = 1/5 so q = 1 and L_t = CE = log 5; the
    weak head's smoothed CE is log 5; the student's non-target part is uniform, so
    L_n = log 4 whatever the Zipf weights. Total: (1 + α + μ) log 5 + β log 4."""
    model = Staged()
    for p in model.parameters():
        nn.init.zeros_(p)
    criterion = USKDLoss(model, 5, feature_dim=3)
    for p in criterion.weak_head.parameters():
        nn.init.zeros_(p)
    loss = criterion(model(torch.randn(4, 1, 6, 6)), Y)
    assert loss.item() == pytest.approx(1.2 * math.log(5) + 0.1 * math.log(4), rel=1e-6)
    terms = criterion.last_terms
    assert terms["uskd_target"].item() == pytest.approx(0.1 * math.log(5), rel=1e-6)
    assert terms["weak"].item() == pytest.approx(0.1 * math.log(5), rel=1e-6)


@pytest.mark.parametrize("ranking", ["log_prob", "prob"])
def test_uskd_loss_matches_the_naive_reference(ranking):
    torch.manual_seed(0)
    model = Staged()
    criterion = USKDLoss(model, 5, example_input=torch.zeros(2, 1, 6, 6), ranking=ranking)
    assert criterion.weak_head.in_features == 3  # stage1, the last-but-one stage
    x = torch.randn(4, 1, 6, 6)
    logits = model(x)
    loss = criterion(logits, Y)
    weak = criterion.weak_head(model.stage1(x).mean((2, 3)))
    want = naive_uskd(logits.detach(), weak.detach(), Y, ranking)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert set(criterion.last_terms) == {"ce", "uskd_target", "uskd_non_target", "weak"}


def test_uskd_signal_detaches_soft_labels_and_trains_the_weak_head():
    torch.manual_seed(0)
    model = Staged()
    criterion = USKDLoss(model, 5, feature_dim=3)
    logits = model(torch.randn(4, 1, 6, 6))
    signal = criterion.source(None, Y, None, student=StudentOutputs(logits.detach()))
    assert isinstance(signal, USKDSignal)
    assert not signal.target.requires_grad and not signal.non_target.requires_grad
    assert not signal.logits.requires_grad and signal.weak_logits.requires_grad
    assert torch.allclose(signal.logits.exp().sum(1), torch.ones(4))
    model(torch.randn(4, 1, 6, 6))
    optimizer = torch.optim.SGD([*model.parameters(), *criterion.weak_head.parameters()], lr=0.1)
    before = criterion.weak_head.weight.detach().clone()
    criterion(model(torch.randn(4, 1, 6, 6)), Y).backward()
    assert criterion.weak_head.weight.grad.abs().sum() > 0
    assert model.stage1[0].weight.grad.abs().sum() > 0  # the weak term reaches the backbone
    optimizer.step()
    assert not torch.equal(before, criterion.weak_head.weight)
    assert {id(p) for p in criterion.weak_head.parameters()} <= {
        id(p) for p in criterion.parameters()
    }


def test_uskd_gradient_of_the_soft_target_term_treats_it_as_a_constant():
    """With alpha only: d/dz [-(1/B) Σ q_i log s_iy] = -(q_i / B)(onehot - s)."""
    model = Staged()
    criterion = USKDLoss(model, 5, feature_dim=3, beta=0.0, mu=0.0, ce_weight=0.0, alpha=1.0)
    z = Z.clone().requires_grad_(True)
    model(torch.zeros(4, 1, 6, 6))
    criterion(z, Y).backward()
    s = F.softmax(Z, 1)
    q = loss_functional.uskd_target(Z, Y).unsqueeze(1)
    want = -(q / 4) * (F.one_hot(Y, 5) - s)
    assert torch.allclose(z.grad, want, atol=1e-6)


# --------------------------------------------------------------------------- feature hook
def test_feature_layer_errors_are_one_line_user_errors():
    text = build_model("textcnn", 2, vocab_size=50, max_len=16)
    with pytest.raises(UserError, match="names no stages.*source.feature_layer") as caught:
        USKDLoss(text, 2, example_input=torch.ones(2, 8, dtype=torch.long))
    assert "\n" not in str(caught.value) and "convs" in str(caught.value)
    with pytest.raises(UserError, match="no layer of TextCNN"):
        USKDLoss(text, 2, feature_layer="layer9", example_input=torch.ones(2, 8, dtype=torch.long))
    with pytest.raises(UserError, match="feature_dim= or example_input="):
        USKDLoss(build_model("resnet8", 10), 10)
    with pytest.raises(UserError, match="not floating"):
        pool_feature(torch.ones(2, 3, dtype=torch.long), "channels")
    with pytest.raises(UserError, match="feature_pool"):
        USKDSource(2, feature_pool="max")


def test_named_layer_of_a_text_model_and_token_pooling():
    text = build_model("textcnn", 2, vocab_size=50, max_len=16)
    ids = torch.randint(1, 50, (4, 8))
    conv = USKDLoss(text, 2, feature_layer="convs.0", example_input=ids[:2])
    assert conv.weak_head.in_features == 100  # (B, 100, L') averaged over positions
    tokens = USKDLoss(text, 2, feature_layer="embedding", feature_pool="tokens", example_input=ids)
    assert tokens.weak_head.in_features == 300  # (B, L, 300) averaged over tokens
    loss = tokens(text(ids), torch.tensor([0, 1, 0, 1]))
    assert torch.isfinite(loss)


def test_registry_models_name_their_stages():
    cases = {
        "resnet20": "layer2",
        "resnet18": "layer3",
        "lenet5": "features.0",
        "wrn_16_2": "block2",
    }
    for name, layer in cases.items():
        model = build_model(name, 10, in_channels=1 if name == "lenet5" else 3)
        source = USKDSource(10, example=torch.zeros(2, 1 if name == "lenet5" else 3, 32, 32))
        source.attach(model)
        assert source.feature_layer == layer, name
    assert build_model("resnet18", 10).feature_stages[-2] == "layer3"


def test_criterion_without_a_student_forward_says_so():
    model = Staged()
    criterion = USKDLoss(model, 5, feature_dim=3)
    with pytest.raises(UserError, match="run the student on the batch"):
        criterion(torch.randn(4, 5), Y)
    with pytest.raises(UserError, match="USKDLoss"):
        DistillationLoss.from_method("uskd", num_classes=5)


# --------------------------------------------------------------------------- drop-in NKD
def test_nkd_drop_in_with_a_teacher_and_with_soft_labels():
    torch.manual_seed(0)
    teacher = nn.Linear(6, 5)
    x = torch.randn(4, 6)
    criterion = reffakd.NKDLoss(teacher)
    assert criterion.objective.temperature == 3.0 and criterion.objective.gamma == 3.5
    loss = criterion(Z, Y, x)
    want_t, want_n = naive_nkd(Z, teacher(x).detach(), Y, 3.0, 3.5)
    ce = F.cross_entropy(Z, Y).item()
    assert loss.item() == pytest.approx(ce + want_t + want_n, rel=1e-5)
    assert not any(p.requires_grad for p in teacher.parameters())
    table = torch.full((5, 5), 0.1).fill_diagonal_(0.6)
    aesl = NKDLoss(soft_labels=table, temperature=1.0)
    assert aesl.objective.teacher_temperature == 1.0
    assert torch.isfinite(aesl(Z, Y))
    with pytest.raises(UserError, match="not both or none"):
        NKDLoss()
    assert reffakd.USKDLoss is USKDLoss


# --------------------------------------------------------------------------- presets
def test_presets_and_their_official_defaults():
    assert (PRESETS.get("nkd").source, PRESETS.get("nkd").loss) == ("teacher", "nkd")
    assert (PRESETS.get("reffakd+nkd").source, PRESETS.get("reffakd+nkd").loss) == (
        "aesl",
        "nkd",
    )
    uskd = resolve_method("uskd")
    assert (uskd.source, uskd.loss) == ("uskd", "uskd")
    assert uskd.loss_options == {"alpha": 0.1, "beta": 0.1, "mu": 0.1}
    assert uskd.source_options == {"ranking": "log_prob"}
    paper = resolve_method("uskd", {"ranking": "prob"}, {"alpha": 1.0, "mu": 0.005})
    assert paper.loss_options == {"alpha": 1.0, "beta": 0.1, "mu": 0.005}
    assert resolve_method("reffakd+nkd").loss_options == {
        "temperature": 1.0,
        "gamma": 1.5,
        "teacher_temperature": 1.0,
    }


def test_uskd_loss_on_another_source_is_the_normalized_loss_without_weak_head():
    objective = build_objective("uskd", {"alpha": 1.0, "beta": 1.0})
    terms = objective(Z, Y, TeacherSignal(T_LOGITS, class_level=False), 1)
    assert "weak" not in terms
    want_t, want_n = naive_nkd(Z, T_LOGITS, Y, 1.0, 1.0)
    assert terms["uskd_target"].item() == pytest.approx(want_t, rel=1e-5)
    assert terms["uskd_non_target"].item() == pytest.approx(want_n, rel=1e-5)


def test_uskd_source_from_a_run_context(tmp_path):
    source = build_source("uskd", {"feature_layer": "features.1"}, source_context(tmp_path))
    assert isinstance(source, USKDSource)
    source.attach(build_model("lenet5", 10, in_channels=1))
    assert source.feature_dim == 16 and source.networks_per_batch() == {}
    with pytest.raises(UserError, match="unknown option 'source.alpha'"):
        build_source("uskd", {"alpha": 1.0}, source_context(tmp_path))


# --------------------------------------------------------------------------- engine
def uskd_trainer(run_dir: Path, epochs: int) -> Trainer:
    torch.manual_seed(0)
    splits = tiny_image_splits()
    student = build_model("lenet5", splits.num_classes, 1, 16)
    source = USKDSource(splits.num_classes, example=torch.zeros(2, 1, 16, 16))
    task = Distiller(student, source, build_objective("uskd", {}))
    transform = BatchTransform(16, [0.3], [0.3], AugmentPolicy(2, True, 10.0))
    optim = OptimConfig(epochs=epochs, batch_size=16, lr=0.05, milestones=[2])
    return Trainer(task, splits, transform, optim, RunDir(run_dir), progress=False)


def test_engine_trains_the_weak_head_and_checkpoints_it(tmp_path):
    trainer = uskd_trainer(tmp_path / "run", epochs=1)
    weak = trainer.task.source.weak_head
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in weak.parameters()} <= in_optimizer
    before = weak.weight.detach().clone()
    trainer.fit()
    assert not torch.equal(before, weak.weight)
    state = torch.load(trainer.run_dir.last_checkpoint, weights_only=True)
    assert torch.equal(state["extra"]["source"]["weak_head"]["weight"], weak.weight.detach())
    assert not any(key.startswith("weak") for key in state["model"])  # the student alone


def test_resume_is_bit_identical_with_the_weak_head(tiny_data, tmp_path):
    args = ["--method", "uskd", "--batch-size", "64"]
    assert main(train_args(tiny_data, tmp_path / "full", *args, epochs=2)) == 0
    assert main(train_args(tiny_data, tmp_path / "cut", *args, epochs=1)) == 0
    resume = ["train", "--resume", str(tmp_path / "cut"), "--epochs", "2", "--no-progress"]
    assert main(resume) == 0
    states = [
        torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True)
        for run in ("full", "cut")
    ]
    assert states[0]["epoch"] == states[1]["epoch"] == 2
    for key, value in states[0]["model"].items():
        assert torch.equal(value, states[1]["model"][key]), key
    heads = [s["extra"]["source"]["weak_head"] for s in states]
    assert heads[0].keys() == {"weight", "bias"}
    for key, value in heads[0].items():
        assert torch.equal(value, heads[1][key]), key
    records = [epoch_records(tmp_path / run) for run in ("full", "cut")]
    assert records[0] == records[1]


# --------------------------------------------------------------------------- CLI
def test_uskd_runs_from_the_cli_and_records_its_layer(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--method", "uskd", "--set", "source.ranking=prob")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"]["name"] == "uskd"
    assert summary["uskd"]["feature_layer"] == "features.0"
    assert summary["uskd"]["ranking"] == "prob"
    assert math.isfinite(summary["last"]["val_loss"])


def test_nkd_with_a_teacher_free_source_from_the_cli(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--method", "nkd", "--source", "virtual")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["method"]["source"], summary["method"]["loss"]) == ("virtual", "nkd")
    assert math.isfinite(summary["last"]["val_loss"])


def test_cli_refuses_a_missing_layer_in_one_line(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--method", "uskd", "--set", "source.feature_layer=nope"]
    assert main(train_args(tiny_data, out, *flags)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no layer of LeNet5" in err[0]
    assert not (out / "checkpoints").exists()


def test_list_methods_shows_the_new_presets(capsys):
    assert main(["list", "methods"]) == 0
    listed = capsys.readouterr().out
    for name in ("uskd", "nkd", "reffakd+nkd"):
        assert name in listed


@pytest.mark.slow
def test_uskd_trains_under_torchrun(tiny_data, tmp_path):
    """The weak head is part of the module DDP synchronises (an unused or unsynchronised
    parameter would fail the job); rank 0 checkpoints it."""
    from test_distributed import torchrun

    out = tmp_path / "ddp"
    done = torchrun(*train_args(tiny_data, out, "--method", "uskd", "--batch-size", "64"))
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["extra"]["source"]["weak_head"]["weight"].shape == (10, 6)
