"""Golden-value and reference tests for reffakd.kd.loss_functional (CPU, fast).

Reference values are computed here from the formulas with plain Python (math.exp / math.log,
explicit loops), never by calling the function under test or torch's kl_div.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reffakd.kd.loss_functional import (
    dist,
    dkd,
    kd_kl,
    probs_to_logits,
    standardize_logits,
    warmup_factor,
)
from reffakd.kd.loss_objectives import build_objective
from reffakd.kd.source_base import TeacherSignal

# --------------------------------------------------------------------------------------------
# plain-Python references
# --------------------------------------------------------------------------------------------


def py_softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    m = max(row)
    exps = [math.exp((x - m) / temperature) for x in row]
    total = sum(exps)
    return [e / total for e in exps]


def py_kl(p: list[float], q: list[float]) -> float:
    return sum(pc * (math.log(pc) - math.log(qc)) for pc, qc in zip(p, q, strict=True) if pc > 0)


def py_pearson(a: list[float], b: list[float], eps: float = 1e-8) -> float:
    ma = sum(a) / len(a)
    mb = sum(b) / len(b)
    da = [x - ma for x in a]
    db = [x - mb for x in b]
    dot = sum(x * y for x, y in zip(da, db, strict=True))
    na = math.sqrt(sum(x * x for x in da))
    nb = math.sqrt(sum(y * y for y in db))
    return dot / (na * nb + eps)


def naive_dkd(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
) -> tuple[float, float]:
    """DKD from the paper's definitions, one sample and one class at a time."""
    zs, zt, ys = student.tolist(), teacher.tolist(), labels.tolist()
    batch, classes = len(zs), len(zs[0])
    tckd_sum = 0.0
    nckd_sum = 0.0
    for i in range(batch):
        y = ys[i]
        ps = py_softmax(zs[i], temperature)
        pt = py_softmax(zt[i], temperature)
        # binary target / non-target distributions
        bs = [ps[y], 1.0 - ps[y]]
        bt = [pt[y], 1.0 - pt[y]]
        tckd_sum += sum(bt[k] * math.log(bt[k] / bs[k]) for k in range(2))
        # distributions over the non-target classes, renormalised
        kl = 0.0
        for c in range(classes):
            if c == y:
                continue
            hs = ps[c] / (1.0 - ps[y])
            ht = pt[c] / (1.0 - pt[y])
            kl += ht * math.log(ht / hs)
        nckd_sum += kl
    scale = temperature**2 / batch
    return alpha * scale * tckd_sum, beta * scale * nckd_sum


def mdistiller_style_dkd(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official code path (summed softmax masses, -1000 mask after dividing by T)."""
    gt = torch.zeros_like(student).scatter_(1, labels.unsqueeze(1), 1.0)
    other = 1.0 - gt
    ps = F.softmax(student / temperature, dim=1)
    pt = F.softmax(teacher / temperature, dim=1)
    bs = torch.stack([(ps * gt).sum(1), (ps * other).sum(1)], dim=1)
    bt = torch.stack([(pt * gt).sum(1), (pt * other).sum(1)], dim=1)
    batch = student.shape[0]
    tckd = (bt * (bt.log() - bs.log())).sum() * temperature**2 / batch
    pt2 = F.softmax(teacher / temperature - 1000.0 * gt, dim=1)
    log_ps2 = F.log_softmax(student / temperature - 1000.0 * gt, dim=1)
    terms = torch.where(pt2 > 0, pt2 * (pt2.clamp_min(1e-300).log() - log_ps2), 0.0)
    nckd = terms.sum() * temperature**2 / batch
    return alpha * tckd, beta * nckd


# --------------------------------------------------------------------------------------------
# kd_kl
# --------------------------------------------------------------------------------------------

Z_TINY = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]
T_TINY = [[3.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def _tiny_kl_per_sample(temperature: float) -> list[float]:
    out = []
    for zi, ti in zip(Z_TINY, T_TINY, strict=True):
        p = [math.exp(x / temperature) for x in ti]
        q = [math.exp(x / temperature) for x in zi]
        sp, sq = sum(p), sum(q)
        p = [x / sp for x in p]
        q = [x / sq for x in q]
        out.append(
            p[0] * (math.log(p[0]) - math.log(q[0]))
            + p[1] * (math.log(p[1]) - math.log(q[1]))
            + p[2] * (math.log(p[2]) - math.log(q[2]))
        )
    return out


def test_kd_kl_hand_computed_batchmean_and_mean() -> None:
    z = torch.tensor(Z_TINY)
    t = torch.tensor(T_TINY)
    kls = _tiny_kl_per_sample(2.0)
    expected_batchmean = 4.0 * (kls[0] + kls[1]) / 2
    expected_mean = 4.0 * (kls[0] + kls[1]) / 6
    # literal golden values (independently computed) guard against a wrong helper as well
    assert expected_batchmean == pytest.approx(1.1892776608990152, rel=1e-12)
    assert expected_mean == pytest.approx(0.3964258869663384, rel=1e-12)

    got_bm = kd_kl(z, t, 2.0, reduction="batchmean")
    got_mean = kd_kl(z, t, 2.0, reduction="mean")
    assert got_bm.shape == ()
    assert got_bm.item() == pytest.approx(expected_batchmean, rel=1e-6)
    assert got_mean.item() == pytest.approx(expected_mean, rel=1e-6)

    got_sum = kd_kl(z, t, 2.0, reduction="sum")
    assert got_sum.item() == pytest.approx(4.0 * (kls[0] + kls[1]), rel=1e-6)
    got_none = kd_kl(z, t, 2.0, reduction="none")
    assert got_none.shape == (2,)
    assert got_none.tolist() == pytest.approx([4.0 * kls[0], 4.0 * kls[1]], rel=1e-6)


def test_kd_kl_batchmean_is_classes_times_mean() -> None:
    g = torch.Generator().manual_seed(0)
    for classes in (2, 10, 100):
        z = torch.randn(16, classes, generator=g) * 3
        t = torch.randn(16, classes, generator=g) * 3
        bm = kd_kl(z, t, 4.0, reduction="batchmean")
        mean = kd_kl(z, t, 4.0, reduction="mean")
        assert torch.allclose(bm, classes * mean, rtol=1e-6, atol=0.0)


def test_kd_kl_teacher_temperature() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 5, generator=g)
    t = torch.randn(8, 5, generator=g) * 2
    same = kd_kl(z, t, 4.0)
    student_only = kd_kl(z, t, 4.0, teacher_temperature=1.0)
    assert not torch.allclose(same, student_only)
    assert torch.allclose(kd_kl(z, t, 4.0, teacher_temperature=4.0), same)

    # teacher_temperature=1 on log-probabilities uses the probability row as is
    probs = F.softmax(t, dim=1)
    manual = 0.0
    for zi, pi in zip(z.tolist(), probs.tolist(), strict=True):
        manual += py_kl(pi, py_softmax(zi, 4.0))
    expected = 16.0 * manual / 8
    got = kd_kl(z, probs_to_logits(probs), 4.0, teacher_temperature=1.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_kd_kl_t_squared_factor() -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(4, 7, generator=g)
    t = torch.randn(4, 7, generator=g)
    for temperature in (1.0, 2.0, 4.0):
        with_t2 = kd_kl(z, t, temperature)
        without = kd_kl(z, t, temperature, t_squared=False)
        assert torch.allclose(with_t2, temperature**2 * without, rtol=1e-6)
    # the factor is the student temperature, even when the teacher uses another one
    a = kd_kl(z, t, 3.0, teacher_temperature=1.0)
    b = kd_kl(z, t, 3.0, teacher_temperature=1.0, t_squared=False)
    assert torch.allclose(a, 9.0 * b, rtol=1e-6)


def test_kd_kl_none_sums_to_sum() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 4, generator=g)
    t = torch.randn(6, 4, generator=g)
    per_sample = kd_kl(z, t, 2.0, reduction="none")
    assert per_sample.shape == (6,)
    assert (per_sample >= 0).all()
    assert torch.allclose(per_sample.sum(), kd_kl(z, t, 2.0, reduction="sum"), rtol=1e-6)
    assert torch.allclose(per_sample.mean(), kd_kl(z, t, 2.0, reduction="batchmean"), rtol=1e-6)


def test_kd_kl_identical_inputs_is_zero() -> None:
    z = torch.randn(5, 10, generator=torch.Generator().manual_seed(4)) * 5
    for reduction in ("batchmean", "mean", "sum"):
        assert kd_kl(z, z.clone(), 4.0, reduction=reduction).abs().item() < 1e-6
    assert kd_kl(z, z.clone(), 4.0, reduction="none").abs().max().item() < 1e-6


def test_kd_kl_gradient_only_to_student() -> None:
    g = torch.Generator().manual_seed(5)
    z = torch.randn(4, 6, generator=g, requires_grad=True)
    t = torch.randn(4, 6, generator=g, requires_grad=True)
    kd_kl(z, t, 4.0).backward()
    assert z.grad is not None
    assert z.grad.abs().sum() > 0
    assert torch.isfinite(z.grad).all()
    assert t.grad is None


def test_kd_kl_rejects_bad_arguments() -> None:
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError):
        kd_kl(z, z, 4.0, reduction="elementwise")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kd_kl(z, torch.zeros(2, 4), 4.0)
    with pytest.raises(ValueError):
        kd_kl(z, z, 0.0)
    with pytest.raises(ValueError):
        kd_kl(z, z, 4.0, teacher_temperature=-1.0)


# --------------------------------------------------------------------------------------------
# soft-target cross-entropy (label smoothing's loss): F.cross_entropy with probability targets
# --------------------------------------------------------------------------------------------


def test_soft_target_cross_entropy_hand_computed() -> None:
    z = torch.tensor(Z_TINY)
    probs = [[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]]
    ces = []
    for zi, pi in zip(Z_TINY, probs, strict=True):
        total = math.exp(zi[0]) + math.exp(zi[1]) + math.exp(zi[2])
        ces.append(-sum(pi[c] * (zi[c] - math.log(total)) for c in range(3)))
    signal = TeacherSignal(torch.tensor(probs).log(), class_level=True)
    got = build_objective("soft_ce", {})(z, torch.tensor([0, 2]), signal, 1)["soft_ce"]
    assert got.item() == pytest.approx((ces[0] + ces[1]) / 2, rel=1e-6)

    # the temperature softens the teacher's side: target = softmax(log p / T)
    soft = [py_softmax([math.log(v) for v in pi], 2.0) for pi in probs]
    ce_t = [
        -sum(si[c] * (zi[c] - math.log(sum(math.exp(v) for v in zi))) for c in range(3))
        for zi, si in zip(Z_TINY, soft, strict=True)
    ]
    hot = build_objective("soft_ce", {"temperature": 2.0})(z, torch.tensor([0, 2]), signal, 1)
    assert hot["soft_ce"].item() == pytest.approx(sum(ce_t) / 2, rel=1e-6)


def test_soft_target_cross_entropy_matches_cross_entropy_on_one_hot() -> None:
    g = torch.Generator().manual_seed(6)
    z = torch.randn(12, 9, generator=g, requires_grad=True)
    labels = torch.randint(0, 9, (12,), generator=g)
    signal = TeacherSignal(F.one_hot(labels, 9).float().clamp_min(1e-12).log(), True)
    ours = build_objective("soft_ce", {})(z, labels, signal, 1)["soft_ce"]
    ref = F.cross_entropy(z, labels)
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours, z)
    (g_ref,) = torch.autograd.grad(ref, z)
    assert torch.allclose(g_ours, g_ref, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# dkd
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alpha", "beta", "temperature"), [(1.0, 1.0, 1.0), (1.0, 8.0, 4.0), (0.5, 2.0, 2.0)]
)
def test_dkd_matches_naive_reference(alpha: float, beta: float, temperature: float) -> None:
    g = torch.Generator().manual_seed(7)
    z = torch.randn(10, 6, generator=g) * 2
    t = torch.randn(10, 6, generator=g) * 2
    labels = torch.randint(0, 6, (10,), generator=g)
    tckd, nckd = dkd(z, t, labels, alpha=alpha, beta=beta, temperature=temperature)
    ref_tckd, ref_nckd = naive_dkd(z, t, labels, alpha, beta, temperature)
    assert tckd.shape == () and nckd.shape == ()
    assert tckd.item() == pytest.approx(ref_tckd, rel=1e-5, abs=1e-5)
    assert nckd.item() == pytest.approx(ref_nckd, rel=1e-5, abs=1e-5)
    assert (tckd + nckd).item() == pytest.approx(ref_tckd + ref_nckd, rel=1e-5, abs=1e-5)


def test_dkd_matches_mdistiller_code_path() -> None:
    g = torch.Generator().manual_seed(8)
    z = torch.randn(32, 100, generator=g) * 3
    t = torch.randn(32, 100, generator=g) * 3
    labels = torch.randint(0, 100, (32,), generator=g)
    tckd, nckd = dkd(z, t, labels, alpha=1.0, beta=8.0, temperature=4.0)
    ref_tckd, ref_nckd = mdistiller_style_dkd(z, t, labels, 1.0, 8.0, 4.0)
    assert torch.allclose(tckd, ref_tckd, rtol=1e-4, atol=1e-6)
    assert torch.allclose(nckd, ref_nckd, rtol=1e-4, atol=1e-6)


def test_dkd_identical_inputs_zero_and_gradient_only_to_student() -> None:
    g = torch.Generator().manual_seed(9)
    z = torch.randn(5, 7, generator=g)
    labels = torch.randint(0, 7, (5,), generator=g)
    tckd, nckd = dkd(z, z.clone(), labels)
    assert abs(tckd.item()) < 1e-6 and abs(nckd.item()) < 1e-6

    zs = torch.randn(5, 7, generator=g, requires_grad=True)
    zt = torch.randn(5, 7, generator=g, requires_grad=True)
    tckd, nckd = dkd(zs, zt, labels)
    (tckd + nckd).backward()
    assert zs.grad is not None and torch.isfinite(zs.grad).all() and zs.grad.abs().sum() > 0
    assert zt.grad is None


def test_dkd_finite_when_target_probability_underflows() -> None:
    # p_y underflows to 0 in float32; the summed-softmax formulation would give log(0)
    z = torch.tensor([[-200.0, 0.0, 1.0], [0.0, 300.0, 0.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.5]])
    tckd, nckd = dkd(z, t, torch.tensor([0, 0]), temperature=1.0)
    (tckd + nckd).backward()
    assert torch.isfinite(tckd) and torch.isfinite(nckd)
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_dkd_rejects_bad_labels() -> None:
    z = torch.zeros(3, 4)
    with pytest.raises(ValueError):
        dkd(z, z, torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        dkd(z, z, torch.tensor([0.0, 1.0, 2.0]))


# --------------------------------------------------------------------------------------------
# dist
# --------------------------------------------------------------------------------------------


def test_dist_identical_inputs_is_zero() -> None:
    z = torch.randn(16, 10, generator=torch.Generator().manual_seed(10)) * 3
    inter, intra = dist(z, z.clone())
    assert abs(inter.item()) < 1e-6
    assert abs(intra.item()) < 1e-6


@pytest.mark.parametrize(
    ("beta", "gamma", "temperature"), [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0), (1.0, 2.0, 2.0)]
)
def test_dist_matches_naive_pearson(beta: float, gamma: float, temperature: float) -> None:
    g = torch.Generator().manual_seed(11)
    z = torch.randn(8, 5, generator=g) * 2
    t = torch.randn(8, 5, generator=g) * 2
    inter, intra = dist(z, t, beta=beta, gamma=gamma, temperature=temperature)

    ys = [py_softmax(row, temperature) for row in z.tolist()]
    yt = [py_softmax(row, temperature) for row in t.tolist()]
    batch, classes = len(ys), len(ys[0])
    rows = [py_pearson(ys[i], yt[i]) for i in range(batch)]
    cols = [
        py_pearson([ys[i][c] for i in range(batch)], [yt[i][c] for i in range(batch)])
        for c in range(classes)
    ]
    ref_inter = beta * temperature**2 * (1.0 - sum(rows) / batch)
    ref_intra = gamma * temperature**2 * (1.0 - sum(cols) / classes)
    assert inter.item() == pytest.approx(ref_inter, rel=1e-5, abs=1e-6)
    assert intra.item() == pytest.approx(ref_intra, rel=1e-5, abs=1e-6)


def test_dist_gradient_only_to_student() -> None:
    g = torch.Generator().manual_seed(12)
    z = torch.randn(6, 4, generator=g, requires_grad=True)
    t = torch.randn(6, 4, generator=g, requires_grad=True)
    inter, intra = dist(z, t)
    (inter + intra).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert t.grad is None


def test_dist_two_classes_has_no_inter_gradient_spike_at_a_tie() -> None:
    # Two nearly uniform soft-label rows (SST-2's AESL table) and one student at a near tie:
    # the 2-class inter correlation is sign(d) sign(e), whose eps-smoothed gradient spikes there.
    g = torch.Generator().manual_seed(14)
    t = torch.log(torch.tensor([[0.504, 0.496], [0.496, 0.504]])).repeat(16, 1)
    z = torch.zeros(32, 2)
    z[:, 0] = torch.randn(32, generator=g) * 0.1
    z[0, 0] = 1e-6
    z.requires_grad_(True)
    inter, intra = dist(z, t)
    ys, yt = F.softmax(z.detach(), dim=1).tolist(), F.softmax(t, dim=1).tolist()
    ref_inter = 1.0 - sum(py_pearson(a, b) for a, b in zip(ys, yt, strict=True)) / len(ys)
    assert inter.item() == pytest.approx(ref_inter, rel=1e-5, abs=1e-6)  # value unchanged
    assert not inter.requires_grad
    intra.backward()
    assert z.grad is not None and 0 < z.grad.abs().max() < 10


def test_dist_three_classes_keeps_the_inter_gradient() -> None:
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(15), requires_grad=True)
    inter, _ = dist(z, torch.randn(4, 3, generator=torch.Generator().manual_seed(16)))
    inter.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# standardize_logits, warmup_factor, probs_to_logits
# --------------------------------------------------------------------------------------------


def test_standardize_logits_moments_and_invariances() -> None:
    g = torch.Generator().manual_seed(13)
    z = torch.randn(6, 10, generator=g) * 4 + 1
    s = standardize_logits(z)
    assert torch.allclose(s.mean(dim=1), torch.zeros(6), atol=1e-6)
    assert torch.allclose(s.std(dim=1), torch.ones(6), atol=1e-5)  # unbiased std, as Sun et al.

    shift = torch.randn(6, 1, generator=g) * 10
    scale = torch.rand(6, 1, generator=g) * 5 + 0.2
    assert torch.allclose(standardize_logits(z + shift), s, atol=1e-5)
    assert torch.allclose(standardize_logits(z * scale), s, atol=1e-5)
    assert torch.allclose(standardize_logits(z * scale + shift), s, atol=1e-5)

    # hand-checked row: [1, 2, 3] -> mean 2, unbiased std 1 -> [-1, 0, 1]
    out = standardize_logits(torch.tensor([[1.0, 2.0, 3.0]]))
    assert torch.allclose(out, torch.tensor([[-1.0, 0.0, 1.0]]), atol=1e-6)


def test_warmup_factor_values() -> None:
    assert warmup_factor(1, 20) == pytest.approx(0.05)
    assert warmup_factor(10, 20) == pytest.approx(0.5)
    assert warmup_factor(20, 20) == 1.0
    assert warmup_factor(21, 20) == 1.0
    assert warmup_factor(240, 20) == 1.0
    assert warmup_factor(0, 20) == 0.0
    assert warmup_factor(1, 0) == 1.0
    assert warmup_factor(5, -3) == 1.0
    assert isinstance(warmup_factor(3, 4), float)


def test_probs_to_logits_roundtrip() -> None:
    g = torch.Generator().manual_seed(14)
    p = F.softmax(torch.randn(5, 8, generator=g) * 2, dim=1)
    assert torch.allclose(F.softmax(probs_to_logits(p), dim=1), p, rtol=1e-5, atol=1e-7)
    # zeros are clamped, so the logits are finite and the softmax is still (almost) the row
    hard = torch.tensor([[0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])
    logits = probs_to_logits(hard)
    assert torch.isfinite(logits).all()
    assert torch.allclose(F.softmax(logits, dim=1), hard, atol=1e-6)
