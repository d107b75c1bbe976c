"""Mid level: training objectives, a logit loss from :mod:`reffakd.kd.loss_functional` plus its
weights.

An objective maps ``(student_logits, labels, teacher_signal, epoch)`` to named loss terms. It is
the "loss" half of a method (source × loss). Options are validated by the constructors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from reffakd.errors import UserError
from reffakd.kd import loss_functional
from reffakd.kd.source_base import TeacherSignal, check_options
from reffakd.registry import Registry


class Objective:
    uses_epoch = False  # True when the terms depend on the epoch (a warm-up)
    covers_rows = False  # True when it honours a signal for part of the batch (DLB's rows)

    def __call__(
        self, logits: Tensor, labels: Tensor, signal: TeacherSignal | None, epoch: int
    ) -> dict[str, Tensor]:
        raise NotImplementedError

    def _signal(self, signal: TeacherSignal | None) -> TeacherSignal:
        if signal is None:
            raise UserError(f"loss {type(self).__name__} needs a teacher signal (--source).")
        if signal.rows is not None and not self.covers_rows:
            raise UserError(
                f"loss {type(self).__name__} needs a target for every row of the batch; this "
                "source (DLB) gives targets for part of it: use the self_kd loss."
            )
        return signal


# NKD and USKD register from reffakd.kd.method_uskd (docs/methods.md §7), LW-KD's adversarial loss
# from reffakd.lwkd (docs/lwkd.md).
OBJECTIVES: Registry[Callable[..., Objective]] = Registry(
    "loss", autoload=("reffakd.kd.method_uskd", "reffakd.lwkd"), entry_points="reffakd.losses"
)


def build_objective(name: str, options: dict[str, Any]) -> Objective:
    """Construct (and so validate) a loss with its options."""
    factory = OBJECTIVES.get(name)
    check_options(factory, options, f"loss {name!r}", "loss")
    return factory(**options)


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"alpha must be in [0, 1], got {alpha}")
    return alpha


def _standardized(
    logits: Tensor, signal: TeacherSignal, standardize: bool
) -> tuple[Tensor, Tensor]:
    """Logit standardisation (Sun et al., CVPR 2024) of both sides when asked.

    Class-level signals are log-probabilities of a fixed table; standardising them would
    rescale the table itself, so only the student's logits are standardised then.
    """
    if not standardize:
        return logits, signal.logits
    teacher = (
        signal.logits if signal.class_level else loss_functional.standardize_logits(signal.logits)
    )
    return loss_functional.standardize_logits(logits), teacher


@OBJECTIVES.register("ce")
class CrossEntropy(Objective):
    """Plain cross-entropy on the hard labels; ignores any teacher signal."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(self, logits, labels, signal, epoch):
        return {"ce": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}


@OBJECTIVES.register("kd")
class KnowledgeDistillation(Objective):
    """(1 - alpha) CE(z, y) + alpha T² KL(softmax(t/T_t) || softmax(z/T)).

    ``teacher_temperature`` None: the same T on both sides (Hinton). ReffAKD uses 1.0: the
    AESL row is taken as is and only the student is softened (docs/methods.md §2.7).
    ``reduction`` is ``batchmean`` (true KL) or ``mean`` (the reference code's KLDivLoss()
    default, KL / C).
    ``standardize`` applies logit standardisation to both sides first.
    """

    def __init__(
        self,
        alpha: float = 0.9,
        temperature: float = 4.0,
        teacher_temperature: float | None = None,
        reduction: str = "batchmean",
        standardize: bool = False,
    ) -> None:
        if reduction not in ("batchmean", "mean"):
            raise UserError(f"KD reduction must be batchmean or mean, got {reduction!r}")
        if temperature <= 0:
            raise UserError(f"temperature must be > 0, got {temperature}")
        self.alpha = _check_alpha(alpha)
        self.temperature = temperature
        self.teacher_temperature = teacher_temperature
        self.reduction = reduction
        self.standardize = standardize

    def __call__(self, logits, labels, signal, epoch):
        signal = self._signal(signal)
        student, teacher = _standardized(logits, signal, self.standardize)
        kd = loss_functional.kd_kl(
            student,
            teacher,
            self.temperature,
            teacher_temperature=self.teacher_temperature,
            reduction=self.reduction,  # type: ignore[arg-type]
        )
        return {
            "ce": (1.0 - self.alpha) * F.cross_entropy(logits, labels),
            "kd": self.alpha * kd,
        }


@OBJECTIVES.register("soft_ce")
class SoftTargetCrossEntropy(Objective):
    """-(1/B) Σ_i Σ_c p_ic log softmax(z_i)_c with p = softmax(t / T) the teacher's distribution
    (label smoothing's and PS-KD's loss; ``F.cross_entropy`` with probability targets).

    ``hard_weight`` w > 0 mixes in the hard labels: w CE(z, y) + (1 - w) soft CE (OLS, w 0.5).
    """

    def __init__(self, temperature: float = 1.0, hard_weight: float = 0.0) -> None:
        if temperature <= 0:
            raise UserError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.hard_weight = _check_alpha(hard_weight)

    def __call__(self, logits, labels, signal, epoch):
        signal = self._signal(signal)
        target = (signal.logits / self.temperature).softmax(dim=1)
        soft = F.cross_entropy(logits, target.detach())
        if not self.hard_weight:
            return {"soft_ce": soft}
        return {
            "ce": self.hard_weight * F.cross_entropy(logits, labels),
            "soft_ce": (1.0 - self.hard_weight) * soft,
        }


@OBJECTIVES.register("self_kd")
class SelfDistillation(Objective):
    """ce_weight CE(z, y) + weight T² KL(softmax(t/T) || softmax(z_r/T)), the KL averaged over
    the rows r the signal covers (every row, or DLB's repeated half): CS-KD (weight 1, T 4),
    DLB (weight 1, T 3), Zipf's LS (weight 1, T 1). CE runs over every row of the batch."""

    covers_rows = True

    def __init__(
        self, weight: float = 1.0, temperature: float = 4.0, ce_weight: float = 1.0
    ) -> None:
        if temperature <= 0:
            raise UserError(f"temperature must be > 0, got {temperature}")
        if weight < 0 or ce_weight < 0:
            raise UserError(f"weights must be >= 0, got {weight}, {ce_weight}")
        self.weight, self.temperature, self.ce_weight = weight, temperature, ce_weight

    def __call__(self, logits, labels, signal, epoch):
        signal = self._signal(signal)
        kl = loss_functional.self_kd_kl(logits, signal.logits, self.temperature, signal.rows)
        return {
            "ce": self.ce_weight * F.cross_entropy(logits, labels),
            "kd": self.weight * kl,
        }


@OBJECTIVES.register("dkd")
class DecoupledKD(Objective):
    """CE + w(epoch) (alpha TCKD + beta NCKD), w a linear warm-up over ``warmup`` epochs."""

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup: int = 20,
        ce_weight: float = 1.0,
        standardize: bool = False,
    ) -> None:
        self.alpha, self.beta, self.temperature = alpha, beta, temperature
        self.warmup, self.ce_weight, self.standardize = warmup, ce_weight, standardize

    @property
    def uses_epoch(self) -> bool:  # type: ignore[override]
        return self.warmup > 0

    def __call__(self, logits, labels, signal, epoch):
        signal = self._signal(signal)
        student, teacher = _standardized(logits, signal, self.standardize)
        tckd, nckd = loss_functional.dkd(
            student,
            teacher,
            labels,
            alpha=self.alpha,
            beta=self.beta,
            temperature=self.temperature,
        )
        w = loss_functional.warmup_factor(epoch, self.warmup)
        return {
            "ce": self.ce_weight * F.cross_entropy(logits, labels),
            "tckd": w * tckd,
            "nckd": w * nckd,
        }


@OBJECTIVES.register("dist")
class DISTObjective(Objective):
    """CE + beta inter-class + gamma intra-class Pearson terms (DIST)."""

    def __init__(
        self,
        beta: float = 1.0,
        gamma: float = 1.0,
        temperature: float = 1.0,
        ce_weight: float = 1.0,
        standardize: bool = False,
    ) -> None:
        self.beta, self.gamma, self.temperature = beta, gamma, temperature
        self.ce_weight, self.standardize = ce_weight, standardize

    def __call__(self, logits, labels, signal, epoch):
        signal = self._signal(signal)
        student, teacher = _standardized(logits, signal, self.standardize)
        inter, intra = loss_functional.dist(
            student, teacher, beta=self.beta, gamma=self.gamma, temperature=self.temperature
        )
        return {
            "ce": self.ce_weight * F.cross_entropy(logits, labels),
            "inter": inter,
            "intra": intra,
        }
