"""Low level: distillation losses as pure functions.

Every function takes logits of shape ``(B, C)`` (batch, classes), holds no state and reads no
global configuration. Reductions are explicit arguments; nothing relies on a PyTorch default.

Conventions
-----------
* ``KL(p || q) = sum_c p_c (log p_c - log q_c)``; the teacher (target) is always ``p``.
* Temperatures divide logits: ``softmax(z / T)``.
* Class-level teacher signals (ReffAKD's autoencoder soft labels, label smoothing, the Tf-KD
  virtual teacher) are probability rows; :func:`probs_to_logits` turns them into
  log-probabilities so they can feed the logit losses (with ``teacher_temperature=1.0``
  ``softmax(log p) == p``, i.e. the row is used as is).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Reduction",
    "dist",
    "dkd",
    "kd_kl",
    "nkd",
    "nkd_soft_targets",
    "non_target_log_softmax",
    "normalized_terms",
    "probs_to_logits",
    "pskd_targets",
    "self_kd_kl",
    "standardize_logits",
    "uskd_rank_scores",
    "uskd_target",
    "warmup_factor",
    "zipf_distribution",
    "zipf_non_target",
]

Reduction = Literal["batchmean", "mean", "sum", "none"]
_REDUCTIONS: tuple[str, ...] = get_args(Reduction)


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_temperature(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_logits(name: str, x: Tensor) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (B, C), got {tuple(x.shape)}")


def _check_pair(a_name: str, a: Tensor, b_name: str, b: Tensor) -> None:
    _check_logits(a_name, a)
    _check_logits(b_name, b)
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def probs_to_logits(probs: Tensor, eps: float = 1e-12) -> Tensor:
    """Log-probabilities usable as logits: ``log(max(p, eps))``.

    ``softmax(probs_to_logits(p)) == p`` for any probability row ``p`` whose entries are all
    ``>= eps`` (zeros become ``eps`` before the log, so the result is finite).
    """
    return torch.log(probs.clamp_min(eps))


def standardize_logits(logits: Tensor, eps: float = 1e-7) -> Tensor:
    """Logit standardisation (Sun et al., CVPR 2024), per row (last dimension)::

        Z(z) = (z - mean(z)) / (std(z) + eps)

    ``std`` is the *unbiased* (Bessel-corrected, ``C - 1``) standard deviation, as in the
    official implementation (``logit.std(dim=-1)``), so each output row has mean 0 and unbiased
    std 1 (up to ``eps``). The result is invariant to adding a constant to a row and, up to
    ``eps``, to multiplying a row by a positive constant. Needs at least 2 classes.
    """
    if logits.ndim < 1 or logits.shape[-1] < 2:
        raise ValueError(f"standardize_logits needs >= 2 classes, got shape {tuple(logits.shape)}")
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)  # unbiased, as the reference implementation
    return (logits - mean) / (std + eps)


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """DKD's linear warm-up: ``min(epoch / warmup_epochs, 1)``, ``epoch`` counted from 1.

    Returns 1.0 when ``warmup_epochs <= 0`` (no warm-up). With ``warmup_epochs = 20`` epoch 1
    gives 0.05 and epochs >= 20 give 1.0, as in mdistiller (``min(epoch / warmup, 1.0)``).
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0 (counted from 1), got {epoch}")
    if warmup_epochs <= 0:
        return 1.0
    return min(epoch / warmup_epochs, 1.0)


# --------------------------------------------------------------------------------------------
# KL / cross-entropy
# --------------------------------------------------------------------------------------------


def kd_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 4.0,
    *,
    teacher_temperature: float | None = None,
    reduction: Reduction = "batchmean",
    t_squared: bool = True,
) -> Tensor:
    """Hinton KD: ``T^2 * KL(softmax(t / T_t) || softmax(z / T))``.

    With ``p = softmax(t / T_t)`` (teacher) and ``q = softmax(z / T)`` (student) the per-sample
    divergence is ``KL_i = sum_c p_ic (log p_ic - log q_ic)`` (``0 log 0 = 0``), and

    * ``'batchmean'``: ``sum_i KL_i / B`` -- the true KL averaged over the batch (default);
    * ``'mean'``: ``sum_ic [...] / (B * C)`` -- PyTorch's elementwise mean, exactly
      ``'batchmean' / C``. This is what ``nn.KLDivLoss()`` with its default reduction computes,
      which the reference implementations use; offered only to reproduce their hyper-parameters
      (their effective KD weight is ``C`` times smaller than it looks);
    * ``'sum'``: ``sum_i KL_i``;
    * ``'none'``: the per-sample vector ``(KL_i)``, shape ``(B,)``.

    ``teacher_temperature=None`` uses ``T`` on both sides. Pass ``1.0`` to soften only the
    student (ReffAKD: the autoencoder soft-label row is used as is; its ``teacher_logits`` are
    log-probabilities, see :func:`probs_to_logits`). ``t_squared`` multiplies by ``T**2``, the
    *student* temperature. The teacher side is a constant target: it is detached, so gradients
    reach ``student_logits`` only.
    """
    _check_pair("student_logits", student_logits, "teacher_logits", teacher_logits)
    _check_reduction(reduction)
    _check_temperature("temperature", temperature)
    t_teacher = temperature if teacher_temperature is None else teacher_temperature
    _check_temperature("teacher_temperature", t_teacher)

    log_q = F.log_softmax(student_logits / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits.detach() / t_teacher, dim=1)
    # elementwise p * (log p - log q), computed from log p (exact zeros give 0 * ... = 0).
    pointwise = F.kl_div(log_q, log_p, reduction="none", log_target=True)

    batch, classes = pointwise.shape
    if reduction == "none":
        loss = pointwise.sum(dim=1)
    elif reduction == "sum":
        loss = pointwise.sum()
    elif reduction == "batchmean":
        loss = pointwise.sum() / batch
    else:  # "mean": PyTorch's elementwise mean
        loss = pointwise.sum() / (batch * classes)
    if t_squared:
        loss = loss * (temperature**2)
    return loss


# --------------------------------------------------------------------------------------------
# DKD
# --------------------------------------------------------------------------------------------


def _dkd_logs(
    logits: Tensor, labels: Tensor, gt_mask: Tensor, others: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """:func:`dkd`'s ``(log b (B, 2), log p_hat (B, C - 1))`` of ``softmax(logits / T)``."""
    scaled = logits / temperature
    log_p = F.log_softmax(scaled, dim=1)
    log_p_target = log_p.gather(1, labels.unsqueeze(1))  # (B, 1)
    log_p_other = torch.logsumexp(log_p.masked_fill(gt_mask, float("-inf")), dim=1)
    log_b = torch.cat([log_p_target, log_p_other.unsqueeze(1)], dim=1)  # (B, 2)
    rest = scaled.gather(1, others)  # (B, C - 1): non-target logits, class order
    return log_b, F.log_softmax(rest, dim=1)


def dkd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> tuple[Tensor, Tensor]:
    """Decoupled KD (Zhao et al., CVPR 2022). Returns ``(alpha * TCKD, beta * NCKD)``.

    With ``p = softmax(z / T)`` and target class ``y``:

    * binary distributions ``b = [p_y, 1 - p_y]`` (target vs. all non-target mass);
      ``TCKD = T^2 / B * sum_i KL(b^teacher_i || b^student_i)``;
    * ``p_hat = softmax over the non-target classes only`` (``p_hat_c = p_c / (1 - p_y)``,
      ``c != y``); ``NCKD = T^2 / B * sum_i KL(p_hat^teacher_i || p_hat^student_i)``.

    Both terms are ``T^2``-scaled and averaged over the batch (true KL, summed over classes,
    divided by ``B``), as in mdistiller's ``dkd_loss``. The caller applies the warm-up factor
    (:func:`warmup_factor`) and the cross-entropy term. The teacher is detached.

    Numerics: mdistiller forms ``b`` from summed softmax probabilities and takes ``log`` (which
    gives ``-inf``/NaN once ``p_y`` underflows), and forms ``p_hat`` as
    ``softmax(z / T - 1000 * onehot(y))`` (the 1000 is subtracted *after* dividing by ``T``).
    Here ``log b`` comes from ``log_softmax`` + ``logsumexp`` and ``p_hat`` is a softmax over
    the ``C - 1`` non-target logits, which is the same quantity without the ``exp(-1000)``
    leak; results agree with mdistiller to float precision on ordinary inputs.
    """
    _check_pair("student_logits", student_logits, "teacher_logits", teacher_logits)
    _check_temperature("temperature", temperature)
    batch, classes = student_logits.shape
    if classes < 2:
        raise ValueError(f"dkd needs >= 2 classes, got {classes}")
    labels = labels.reshape(-1)
    if labels.numel() != batch:
        raise ValueError(f"labels must have {batch} entries, got shape {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.long()

    gt_mask = torch.zeros_like(student_logits, dtype=torch.bool)
    gt_mask.scatter_(1, labels.unsqueeze(1), True)
    # the non-target columns in class order, gathered: a boolean selection would size its
    # result from the mask's contents (a device sync)
    columns = torch.arange(classes - 1, device=labels.device).unsqueeze(0)
    others = columns + (columns >= labels.unsqueeze(1)).long()

    log_b_s, log_hat_s = _dkd_logs(student_logits, labels, gt_mask, others, temperature)
    log_b_t, log_hat_t = _dkd_logs(teacher_logits.detach(), labels, gt_mask, others, temperature)

    scale = temperature**2 / batch
    tckd = F.kl_div(log_b_s, log_b_t, reduction="sum", log_target=True) * scale
    nckd = F.kl_div(log_hat_s, log_hat_t, reduction="sum", log_target=True) * scale
    return alpha * tckd, beta * nckd


# --------------------------------------------------------------------------------------------
# DIST
# --------------------------------------------------------------------------------------------


def _pearson_rows(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Row-wise Pearson correlation: cosine of the mean-centred rows, ``eps`` in the denominator.

    ``pearson(a, b) = <a - mean a, b - mean b> / (||a - mean a|| * ||b - mean b|| + eps)``.
    """
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """DIST (Huang et al., NeurIPS 2022). Returns ``(beta * inter, gamma * intra)``.

    With ``Y_s = softmax(z / T)``, ``Y_t = softmax(t / T)`` (shape ``(B, C)``) and
    ``pearson(a, b) = <a - mean a, b - mean b> / (||a - mean a|| ||b - mean b|| + 1e-8)``:

    * ``inter = T^2 * (1 - mean_i pearson(Y_s[i, :], Y_t[i, :]))`` (per sample, over classes);
    * ``intra = T^2 * (1 - mean_c pearson(Y_s[:, c], Y_t[:, c]))`` (per class, over the batch).

    A row or column with zero variance (uniform prediction, or ``B = 1`` for ``intra``) has
    correlation 0, i.e. contributes 1 to the loss, with zero gradient, as in the reference code.
    The teacher is detached.

    With two classes, ``inter`` carries no gradient: two mean-centred 2-vectors are ``(d, -d)``
    and ``(e, -e)``, so their correlation is ``sign(d) sign(e)``, a step whose gradient is zero
    except at a tie, where the ``1e-8`` turns it into a spike of about ``|e| / 1e-8`` that
    blows SGD up (a student near its decision boundary). The value is still reported.
    """
    _check_pair("student_logits", student_logits, "teacher_logits", teacher_logits)
    _check_temperature("temperature", temperature)
    y_s = F.softmax(student_logits / temperature, dim=1)
    y_t = F.softmax(teacher_logits.detach() / temperature, dim=1)
    scale = temperature**2
    y_s_rows = y_s if y_s.shape[1] > 2 else y_s.detach()
    inter = scale * (1.0 - _pearson_rows(y_s_rows, y_t).mean())
    intra = scale * (1.0 - _pearson_rows(y_s.t(), y_t.t()).mean())
    return beta * inter, gamma * intra


# --------------------------------------------------------------------------------------------
# The teacher-free family: targets made from the student itself
# --------------------------------------------------------------------------------------------


def pskd_targets(labels: Tensor, previous: Tensor, alpha: float) -> Tensor:
    """PS-KD's soft targets: ``(1 - α) onehot(y) + α p_prev``, rows of probabilities.

    ``previous`` (B, C) holds each sample's softmax from the previous epoch (detached here);
    ``alpha`` is α_t = α_T t / T at epoch t of T.
    """
    # scatter, not F.one_hot: one_hot reads the labels' range on the host (a GPU sync)
    one_hot = torch.zeros_like(previous).scatter_(1, labels.unsqueeze(1), 1.0)
    return (1.0 - alpha) * one_hot + alpha * previous.detach()


def zipf_distribution(logits: Tensor, labels: Tensor, power: float = 1.0) -> Tensor:
    """Zipf's law over each row's class ranking, the label ranked first:
    ``p_ic = r_ic^-power / Σ_k r_ik^-power`` with ``r_ic`` the rank (from 1) of class c when
    the classes are sorted by descending ``logits`` after moving the label to the front. Ties
    keep the lower class index first. The ranking is detached (no gradient)."""
    scores = logits.detach().float().scatter(1, labels.unsqueeze(1), float("inf"))
    order = torch.argsort(-scores, dim=1, stable=True)
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(1, scores.shape[1] + 1, device=scores.device).expand_as(order)
    )
    weights = ranks.to(torch.float32).pow(-power)
    return weights / weights.sum(dim=1, keepdim=True)


def self_kd_kl(
    student_logits: Tensor, target_logits: Tensor, temperature: float, rows: slice | None = None
) -> Tensor:
    """``T² KL(softmax(t/T) || softmax(z[rows]/T))`` averaged over the target's rows; zero
    when there are none (DLB's first batch of an epoch)."""
    student = student_logits if rows is None else student_logits[rows]
    if target_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    return kd_kl(student, target_logits, temperature)


# --------------------------------------------------------------------------------------------
# NKD / USKD
# --------------------------------------------------------------------------------------------


def _labels_for(logits: Tensor, labels: Tensor) -> Tensor:
    """``labels`` as a (B, 1) int64 index into ``logits``' classes."""
    _check_logits("logits", logits)
    batch, classes = logits.shape
    if classes < 2:
        raise ValueError(f"normalized losses need >= 2 classes, got {classes}")
    labels = labels.reshape(-1)
    if labels.numel() != batch or labels.is_floating_point():
        raise ValueError(f"labels must be {batch} class indices, got {tuple(labels.shape)}")
    return labels.long().unsqueeze(1)


def _label_mask(logits: Tensor, labels: Tensor) -> Tensor:
    index = _labels_for(logits, labels)
    return torch.zeros_like(logits, dtype=torch.bool).scatter_(1, index, True)


def non_target_log_softmax(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> Tensor:
    """(B, C): ``log N(softmax(z / T))``, the log-softmax over the C - 1 non-target classes
    (``N(p)_c = p_c / (1 - p_y)`` for ``c != y``), and 0 at the label, so that a target weight
    of 0 there adds nothing (rather than ``0 * -inf``)."""
    _check_temperature("temperature", temperature)
    mask = _label_mask(logits, labels)
    log_n = F.log_softmax((logits / temperature).masked_fill(mask, float("-inf")), dim=1)
    return log_n.masked_fill(mask, 0.0)


def normalized_terms(
    student_logits: Tensor,
    labels: Tensor,
    target: Tensor,
    non_target: Tensor,
    temperature: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """The two terms of the normalized loss (NKD, USKD), unweighted, averaged over the batch:

    * ``L_t = -(1/B) sum_i q_i log softmax(z_i)_{y_i}`` with ``q_i = target[i]`` the soft
      target of the label class (the student at T = 1);
    * ``L_n = -(1/B) sum_i sum_{c != y_i} r_ic log N(softmax(z_i / T))_c`` with
      ``r_i = non_target[i]`` a distribution over the non-target classes (0 at the label).

    ``target`` (B,) and ``non_target`` (B, C) are soft labels: detached here. ``L_n`` is the
    cross-entropy, not the KL: the two differ by the soft labels' entropy, a constant.
    """
    index = _labels_for(student_logits, labels)
    if target.shape != (student_logits.shape[0],) or non_target.shape != student_logits.shape:
        raise ValueError(
            f"target must be ({student_logits.shape[0]},) and non_target "
            f"{tuple(student_logits.shape)}, got {tuple(target.shape)}, {tuple(non_target.shape)}"
        )
    log_target = F.log_softmax(student_logits, dim=1).gather(1, index).squeeze(1)
    loss_t = -(target.detach() * log_target).mean()
    log_n = non_target_log_softmax(student_logits, labels, temperature)
    loss_n = -(non_target.detach() * log_n).sum(dim=1).mean()
    return loss_t, loss_n


def nkd_soft_targets(
    teacher_logits: Tensor, labels: Tensor, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """A teacher's soft labels in the normalized form: its target probability
    ``softmax(t)_y`` (at T = 1, as in NKD) and ``N(softmax(t / T))``, its non-target
    distribution (0 at the label). Both detached."""
    teacher_logits = teacher_logits.detach()
    index = _labels_for(teacher_logits, labels)
    target = F.softmax(teacher_logits, dim=1).gather(1, index).squeeze(1)
    non_target = non_target_log_softmax(teacher_logits, labels, temperature).exp()
    return target, non_target.masked_fill(_label_mask(teacher_logits, labels), 0.0)


def nkd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    temperature: float = 1.0,
    gamma: float = 1.5,
    teacher_temperature: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Normalized KD (Yang et al., ICCV 2023; yzd-v/cls_KD ``NKDLoss``).
    Returns ``(L_t, gamma * T^2 * L_n)``:

    * ``L_t = -(1/B) sum_i softmax(t_i)_y log softmax(z_i)_y``;
    * ``L_n = -(1/B) sum_i sum_{c != y} N(softmax(t_i / T_t))_c log N(softmax(z_i / T))_c``,
      ``N(p)_c = p_c / (1 - p_y)``: student and teacher non-target parts each renormalized
      over the non-target classes, so both sum to 1.

    ``T_t`` (``teacher_temperature``) None means T, as in the official code. The teacher is
    detached; the cross-entropy on the labels is the caller's.
    """
    _check_pair("student_logits", student_logits, "teacher_logits", teacher_logits)
    _check_temperature("temperature", temperature)
    t_teacher = temperature if teacher_temperature is None else teacher_temperature
    target, non_target = nkd_soft_targets(teacher_logits, labels, t_teacher)
    loss_t, loss_n = normalized_terms(student_logits, labels, target, non_target, temperature)
    return loss_t, gamma * temperature**2 * loss_n


def uskd_target(student_logits: Tensor, labels: Tensor) -> Tensor:
    """USKD's soft target of the label class, from the student itself (detached):
    ``q_i = s_i^2 + 1 - (1/B) sum_j s_j^2`` with ``s_i = softmax(z_i)_{y_i}``; the batch mean
    smooths the squared target probability (official ``USKDLoss``)."""
    index = _labels_for(student_logits, labels)
    squared = F.softmax(student_logits.detach(), dim=1).gather(1, index).squeeze(1) ** 2
    return squared + 1.0 - squared.mean()


RANKINGS = ("log_prob", "prob")


@torch.no_grad()
def uskd_rank_scores(
    student_logits: Tensor, weak_logits: Tensor, labels: Tensor, ranking: str = "log_prob"
) -> Tensor:
    """(B, C) scores that rank the classes for USKD's Zipf labels, from the final head (z) and
    the weak head (w), each normalized by its non-target mass:

    * ``ranking="log_prob"`` (official code): ``w_c / (1 - w_y) + log s_c / (1 - log s_y)``;
    * ``ranking="prob"`` (the paper's text): ``w_c / (1 - w_y) + s_c / (1 - s_y)``;

    with ``w = softmax(weak)``, ``s = softmax(z)`` and 1e-6 added to each denominator as in the
    code. Ranking is not differentiable: no gradient flows."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}")
    _check_pair("student_logits", student_logits, "weak_logits", weak_logits)
    index = _labels_for(student_logits, labels)
    w = F.softmax(weak_logits, dim=1)
    s = F.log_softmax(student_logits, dim=1)
    if ranking == "prob":
        s = s.exp()
    w_y, s_y = w.gather(1, index), s.gather(1, index)
    return w / (1.0 - w_y + 1e-6) + s / (1.0 - s_y + 1e-6)


@torch.no_grad()
def zipf_non_target(scores: Tensor, labels: Tensor) -> Tensor:
    """(B, C) Zipf soft labels over the non-target classes: rank every class, the label
    included, by ``scores`` (highest first, rank 1), give class c the weight ``1 / rank_c``,
    drop the label and renormalize over the C - 1 others (0 at the label).

    Ties keep class order (a stable sort: the lower class index ranks first), so equal scores
    give distinct, deterministic weights."""
    mask = _label_mask(scores, labels)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(1, scores.shape[1] + 1, device=scores.device).expand_as(order)
    )
    weights = (1.0 / ranks.to(torch.float32)).masked_fill(mask, 0.0)
    return weights / weights.sum(dim=1, keepdim=True)
