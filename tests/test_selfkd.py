"""The teacher-free family made from the student itself: PS-KD, CS-KD, OLS, DLB, Zipf's LS.

Golden values are worked out by hand from the formulas in docs/methods.md; the engine-level
tests run each preset on tiny data, resume it bit-identically and check its cost record.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import epoch_records, source_context, train_args

from reffakd import PSKD
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.cli import main
from reffakd.errors import UserError
from reffakd.kd import loss_functional
from reffakd.kd.loss_objectives import build_objective
from reffakd.kd.source_base import StudentOutputs, TeacherSignal, build_source
from reffakd.kd.task import Distiller
from reffakd.training.task import ExtraSamples


# --------------------------------------------------------------------------- pure functions
def test_pskd_targets_golden():
    labels = torch.tensor([0, 2])
    previous = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    # (1 - 0.4) onehot + 0.4 prev
    expected = torch.tensor([[0.6 + 0.2, 0.12, 0.08], [0.04, 0.04, 0.6 + 0.32]])
    torch.testing.assert_close(loss_functional.pskd_targets(labels, previous, 0.4), expected)


def test_zipf_distribution_ranks_label_first_and_breaks_ties_by_index():
    logits = torch.tensor([[3.0, 1.0, 1.0, 2.0]])  # label 1: ranks 1 (label), then 0, 3, 2
    p = loss_functional.zipf_distribution(logits, torch.tensor([1]))
    weights = torch.tensor([1 / 2, 1 / 1, 1 / 4, 1 / 3])
    torch.testing.assert_close(p, (weights / weights.sum()).unsqueeze(0))
    ties = loss_functional.zipf_distribution(torch.zeros(1, 4), torch.tensor([2]))  # all tied
    weights = torch.tensor([1 / 2, 1 / 3, 1 / 1, 1 / 4])
    torch.testing.assert_close(ties, (weights / weights.sum()).unsqueeze(0))


def test_zipf_distribution_matches_a_per_sample_reference():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(6, 7, generator=g), torch.randint(0, 7, (6,), generator=g)
    got = loss_functional.zipf_distribution(logits, labels, power=1.5)
    for row, label in enumerate(labels.tolist()):
        others = sorted((c for c in range(7) if c != label), key=lambda c: -logits[row, c])
        ranked = [label, *others]
        w = torch.zeros(7)
        for r, c in enumerate(ranked, start=1):
            w[c] = r**-1.5
        torch.testing.assert_close(got[row], w / w.sum())


def test_self_kd_kl_covers_the_signal_rows_only():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]], requires_grad=True)
    t = torch.tensor([[0.0, 1.0]])
    got = loss_functional.self_kd_kl(z, t, 2.0, rows=slice(2, None))
    p = torch.softmax(t / 2, dim=1)
    q = torch.softmax(z[2:].detach() / 2, dim=1)
    expected = 4.0 * (p * (p.log() - q.log())).sum()
    torch.testing.assert_close(got, expected)
    got.backward()
    assert z.grad[:2].abs().sum() == 0 and z.grad[2].abs().sum() > 0
    empty = loss_functional.self_kd_kl(z, t[:0], 2.0, rows=slice(3, None))
    assert float(empty.detach()) == 0.0


def test_soft_ce_hard_weight_mixes_in_the_labels():
    z, y = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([0])
    signal = TeacherSignal(torch.log(torch.tensor([[0.5, 0.25, 0.25]])), class_level=True)
    terms = build_objective("soft_ce", {"hard_weight": 0.5})(z, y, signal, 1)
    log_q = F.log_softmax(z, dim=1)[0]
    torch.testing.assert_close(terms["ce"], -0.5 * log_q[0])
    soft = -(0.5 * log_q[0] + 0.25 * log_q[1] + 0.25 * log_q[2])
    torch.testing.assert_close(terms["soft_ce"], 0.5 * soft)
    assert set(build_objective("soft_ce", {})(z, y, signal, 1)) == {"soft_ce"}


# --------------------------------------------------------------------------- PS-KD
def test_pskd_alpha_grows_linearly_and_first_epoch_target_is_the_label():
    pskd = PSKD(4, 3, epochs=5, alpha_T=0.8, labels=torch.tensor([0, 1, 2, 0]))
    assert [pskd.alpha(t) for t in (1, 5)] == pytest.approx([0.16, 0.8])
    idx = torch.tensor([0, 2])
    torch.testing.assert_close(pskd.targets(idx, 1), F.one_hot(torch.tensor([0, 2]), 3).float())
    logits = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    pskd.update(idx, logits)
    a = 0.8 * 2 / 5
    expected = (1 - a) * F.one_hot(torch.tensor([0, 2]), 3).float() + a * logits.softmax(1)
    torch.testing.assert_close(pskd.targets(idx, 2), expected)
    with pytest.raises(UserError, match="epoch must be in"):
        pskd.targets(idx, 6)


def test_pskd_drop_in_trains_in_a_users_loop():
    """The README's own-loop example: targets before the step, update after."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 5), torch.arange(32) % 3
    model = torch.nn.Linear(5, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    pskd = PSKD(len(x), 3, epochs=3, labels=y)
    for epoch in (1, 2, 3):
        for idx in torch.arange(32).split(8):
            logits = model(x[idx])
            loss = F.cross_entropy(logits, pskd.targets(idx, epoch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            pskd.update(idx, logits)
    assert bool(pskd.seen.all())
    torch.testing.assert_close(pskd.store.sum(1), torch.ones(32))
    assert math.isfinite(float(loss.detach()))


def _outputs(logits: torch.Tensor, extra: torch.Tensor | None = None) -> StudentOutputs:
    return StudentOutputs(logits, extra)


def test_pskd_source_reads_before_it_writes(tmp_path):
    context = source_context(tmp_path, num_classes=3)
    source = build_source("pskd", {"alpha_T": 1.0}, context)
    idx, y = torch.tensor([0, 1]), torch.tensor([0, 1])
    source.set_epoch(1)
    first = source(None, y, idx, student=_outputs(torch.tensor([[0.0, 3.0, 0.0]] * 2)))
    torch.testing.assert_close(first.logits.exp(), F.one_hot(y, 3).float())
    assert source.state_bytes() == 12 * 3 * 4 + 2 * 12


def test_reffakd_pskd_starts_from_the_aesl_rows(tmp_path, soft_labels_file):
    context = source_context(tmp_path)
    source = build_source("pskd", {"prior": "aesl", "soft_labels": str(soft_labels_file)}, context)
    source.setup()
    table = SoftLabels.load(soft_labels_file).table.float()
    torch.testing.assert_close(source.pskd.prior, table, atol=1e-6, rtol=1e-5)
    with pytest.raises(UserError, match="prior must be"):
        build_source("pskd", {"prior": "teacher"}, context)


# --------------------------------------------------------------------------- OLS
def test_ols_matrix_is_last_epochs_mean_over_correct_predictions(tmp_path):
    source = build_source(
        "ols", {"init": "ls", "eps": 0.3}, source_context(tmp_path, num_classes=3)
    )
    torch.testing.assert_close(source.matrix[0], torch.tensor([0.7, 0.15, 0.15]))
    y = torch.tensor([0, 0, 1])
    logits = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])  # last: wrong
    signal = source(None, y, torch.arange(3), student=_outputs(logits))
    torch.testing.assert_close(signal.logits.exp()[0], torch.tensor([0.7, 0.15, 0.15]))
    source.end_epoch(1)
    expected = logits[:2].softmax(1).mean(0)
    torch.testing.assert_close(source.matrix[0], expected)
    torch.testing.assert_close(source.matrix[1], torch.tensor([0.15, 0.7, 0.15]))  # kept
    assert float(source.counts.sum()) == 0.0


# --------------------------------------------------------------------------- CS-KD and DLB
def test_cskd_partners_share_the_class_and_are_never_the_sample(tmp_path):
    context = source_context(tmp_path, num_classes=3)  # 12 samples, 4 per class
    source = build_source("cskd", {}, context)
    labels = context.data.splits.train.labels
    idx = torch.arange(12).repeat(50)
    partners = source.extra_indices(idx, labels[idx])
    assert torch.equal(labels[partners], labels[idx])
    assert not bool((partners == idx).any())
    assert len(set(partners[idx == 0].tolist())) == 3  # every other class-0 sample is drawn


def test_cskd_partner_forward_has_no_gradient_and_stays_in_train_mode(tmp_path):
    student = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    source = build_source("cskd", {}, source_context(tmp_path, num_classes=3))
    task = Distiller(student, source, build_objective("self_kd", {}))
    task.train()
    x, partner = torch.randn(6, 4), torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    extra = ExtraSamples(partner, y, torch.arange(6))
    before = student[1].num_batches_tracked.item()
    logits, terms = task.forward_train(x, y, torch.arange(6), 1, extra=extra)
    assert student[1].num_batches_tracked.item() == before + 2  # both forwards in train mode
    partner_logits = student(partner).detach()  # in train mode: batch statistics
    expected = loss_functional.kd_kl(logits, partner_logits, 4.0)
    torch.testing.assert_close(terms["kd"], expected)
    sum(terms.values()).backward()
    assert student[0].weight.grad is not None


def test_dlb_brings_back_half_of_the_previous_batch(tmp_path):
    source = build_source("dlb", {}, source_context(tmp_path))
    first = torch.tensor([0, 1, 2, 3])
    assert source.extra_indices(first, first) is None
    z1 = torch.randn(4, 10)
    signal = source(None, first, first, student=_outputs(z1))
    assert signal.logits.shape[0] == 0
    repeated = source.extra_indices(torch.tensor([4, 5, 6, 7]), first)
    assert repeated.tolist() == [2, 3]
    joined = torch.tensor([4, 5, 6, 7, 2, 3])
    signal = source(None, joined, joined, student=_outputs(torch.randn(6, 10)))
    assert signal.rows == slice(4, None)
    torch.testing.assert_close(signal.logits, z1[2:])
    source.end_epoch(1)
    assert source.extra_indices(first, first) is None


# --------------------------------------------------------------------------- engine level
SELF_KD = ["pskd", "reffakd+pskd", "cskd", "ols", "reffakd+ols", "dlb", "zipf-ls"]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _student_phase(summary: dict) -> dict:
    return next(p for p in summary["cost"]["phases"] if p["phase"] == "student_training")


def test_cost_counts_the_extra_student_passes_and_the_store(tiny_data, tmp_path):
    runs = {}
    for name in ("ce", "cskd", "dlb", "pskd"):
        out = tmp_path / name
        assert main(train_args(tiny_data, out, "--method", name, epochs=2, batch_size=64)) == 0
        runs[name] = _student_phase(_summary(out))
    ce = runs["ce"]["networks"]["student"]
    assert runs["cskd"]["networks"]["student_no_grad"]["samples_seen"] == ce["samples_seen"]
    assert not runs["cskd"]["networks"]["student_no_grad"]["trained"]
    assert runs["cskd"]["inference_flops"] == pytest.approx(ce["flops"] / 3)
    dlb = runs["dlb"]["networks"]["student"]["samples_seen"]
    assert dlb == ce["samples_seen"] + 2 * (ce["samples_seen"] // 4)
    n = ce["samples_seen"] // 2  # training samples
    assert runs["pskd"]["source_state_mb"] == round((n * 10 * 4 + 2 * n) / 2**20, 3)


def test_pskd_run_records_its_source(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--method", "pskd", epochs=2, batch_size=64)) == 0
    summary = _summary(out)
    assert summary["pskd"] == {"alpha_T": 0.8, "epochs": 2}
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["train_soft_ce"]) for r in history)


def _final(run: Path) -> tuple[list[dict], dict, dict]:
    records = epoch_records(run)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    return records, state["model"], state["extra"]


@pytest.mark.parametrize("name", ["pskd", "ols", "dlb", "cskd"])
def test_killed_self_kd_run_resumes_bit_identically(tiny_data, tmp_path, name):
    args = train_args(tiny_data, tmp_path / "x", "--method", name, epochs=3, batch_size=64)
    args = args[: args.index("--out")] + args[args.index("--out") + 2 :]

    def cli(*extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "reffakd", *extra]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
            timeout=600,
        )

    assert cli(*args, "--out", str(tmp_path / "full")).returncode == 0
    killed = cli(*args, "--out", str(tmp_path / "cut"), env={"REFFAKD_FAULT_AFTER_EPOCH": "2"})
    assert killed.returncode == -9
    resumed = cli("train", "--resume", str(tmp_path / "cut"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    full, cut = _final(tmp_path / "full"), _final(tmp_path / "cut")
    assert full[0] == cut[0]
    for key in full[1]:
        assert torch.equal(full[1][key], cut[1][key]), key
    for key, value in full[2].get("source", {}).items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, cut[2]["source"][key]), key


def test_batch_extending_methods_train_a_text_student(tmp_path):
    from test_text_runs import text_args, write_tiny_sst2

    data = write_tiny_sst2(tmp_path / "sst2")
    for name in ("cskd", "dlb", "pskd"):
        out = tmp_path / name
        assert main(text_args(data, out, "--method", name, "--epochs", "2")) == 0
        assert math.isfinite(_summary(out)["last"]["val_loss"])
