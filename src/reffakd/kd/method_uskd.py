"""Mid level, one method in one file: NKD and USKD (Yang et al., ICCV 2023; docs/methods.md §7): a
normalized loss for every teacher signal, and USKD's soft labels made by the student itself.

* the ``nkd`` loss splits KD into a target term and a non-target term whose two distributions
  are each renormalized over the non-target classes; it reads any source's signal;
* the ``uskd`` source makes customized soft labels from the student's own forward pass: a soft
  target from its (detached) target probability and Zipf non-target labels from a ranking of the
  classes by the final head and a *weak head*, a linear classifier on an intermediate feature
  captured by a forward hook;
* the ``uskd`` loss weighs the two normalized terms and trains the weak head.

The weak head is the one trained network a source holds: it is in the optimizer and in the
checkpoints through :meth:`USKDSource.trained_modules` and :meth:`USKDSource.extra_state`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reffakd.errors import UserError, first_line
from reffakd.kd import loss_functional
from reffakd.kd.loss_objectives import OBJECTIVES, Objective
from reffakd.kd.source_base import (
    SOURCES,
    SignalRecord,
    SourceContext,
    StudentOutputs,
    TeacherSignal,
    TeacherSource,
)

FEATURE_POOLS = ("channels", "tokens")


@dataclass(kw_only=True)
class USKDSignal(TeacherSignal):
    """USKD's soft labels for a batch: ``target`` (B,) for the label class, ``non_target`` (B, C)
    a distribution over the other classes (0 at the label), both detached, and the weak head's
    ``weak_logits`` (B, C), which carry its gradient. ``logits`` hold the two as one
    distribution (target clipped to [1e-4, 1 - 1e-4]) for losses that read only logits."""

    target: Tensor
    non_target: Tensor
    weak_logits: Tensor


def soft_targets(
    signal: TeacherSignal, labels: Tensor, teacher_temperature: float
) -> tuple[Tensor, Tensor]:
    """The signal's soft labels in the normalized form: USKD's own, or a teacher's target
    probability and its non-target distribution at ``teacher_temperature``."""
    if isinstance(signal, USKDSignal):
        return signal.target, signal.non_target
    return loss_functional.nkd_soft_targets(signal.logits, labels, teacher_temperature)


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise UserError(f"{name} must be > 0, got {value}")
    return value


def _non_negative(**weights: float) -> None:
    for name, value in weights.items():
        if value < 0:
            raise UserError(f"{name} must be >= 0, got {value}")


# ---------------------------------------------------------------------------- losses
@OBJECTIVES.register("nkd")
class NormalizedKD(Objective):
    """w_ce CE(z, y) + L_t + gamma T² L_n (:func:`reffakd.kd.loss_functional.nkd`).

    Defaults are the official code's (T 1, gamma 1.5: its ImageNet configs); ``teacher_temperature``
    None softens the teacher's non-target part by T too. With USKD's signal the soft labels are
    used as they are (no teacher temperature).
    """

    def __init__(
        self,
        temperature: float = 1.0,
        gamma: float = 1.5,
        teacher_temperature: float | None = None,
        ce_weight: float = 1.0,
    ) -> None:
        self.temperature = _positive("temperature", temperature)
        if teacher_temperature is not None:
            _positive("teacher_temperature", teacher_temperature)
        _non_negative(gamma=gamma, ce_weight=ce_weight)
        self.gamma, self.teacher_temperature, self.ce_weight = gamma, teacher_temperature, ce_weight

    def __call__(self, logits, labels, signal, epoch):
        signal = self._signal(signal)
        t_teacher = self.teacher_temperature or self.temperature
        target, non_target = soft_targets(signal, labels, t_teacher)
        loss_t, loss_n = loss_functional.normalized_terms(
            logits, labels, target, non_target, self.temperature
        )
        return {
            "ce": self.ce_weight * F.cross_entropy(logits, labels),
            "nkd_target": loss_t,
            "nkd_non_target": self.gamma * self.temperature**2 * loss_n,
        }


@OBJECTIVES.register("uskd")
class USKDObjective(Objective):
    """w_ce CE(z, y) + alpha L_t + beta L_n + mu CE_ls(weak, y) (docs/methods.md §7.2).

    L_t and L_n are the normalized terms at T 1 on the signal's soft labels; the last term trains
    the weak head with label smoothing ``weak_smoothing`` and appears only with the ``uskd``
    source. Defaults: the official CIFAR-100 config (alpha = beta = mu = 0.1).
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 0.1,
        mu: float = 0.1,
        weak_smoothing: float = 0.1,
        ce_weight: float = 1.0,
    ) -> None:
        _non_negative(alpha=alpha, beta=beta, mu=mu, ce_weight=ce_weight)
        if not 0.0 <= weak_smoothing < 1.0:
            raise UserError(f"weak_smoothing must be in [0, 1), got {weak_smoothing}")
        self.alpha, self.beta, self.mu = alpha, beta, mu
        self.weak_smoothing, self.ce_weight = weak_smoothing, ce_weight

    def __call__(self, logits, labels, signal, epoch):
        signal = self._signal(signal)
        target, non_target = soft_targets(signal, labels, 1.0)
        loss_t, loss_n = loss_functional.normalized_terms(logits, labels, target, non_target)
        terms = {
            "ce": self.ce_weight * F.cross_entropy(logits, labels),
            "uskd_target": self.alpha * loss_t,
            "uskd_non_target": self.beta * loss_n,
        }
        if isinstance(signal, USKDSignal):
            weak = F.cross_entropy(
                signal.weak_logits.float(), labels, label_smoothing=self.weak_smoothing
            )
            terms["weak"] = self.mu * weak
        return terms


# ---------------------------------------------------------------------------- feature hook
def pool_feature(output: Any, pool: str) -> Tensor:
    """A layer's output as (B, D) features: (B, D) as is; ``channels``: (B, D, ...) averaged
    over every position (global average pooling, as the official neck); ``tokens``: (B, L, D)
    averaged over the L tokens. A tuple output (an LSTM's) gives its first element."""
    if isinstance(output, tuple) and output:
        output = output[0]
    if not isinstance(output, Tensor) or output.ndim < 2 or not output.is_floating_point():
        kind = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise UserError(
            f"USKD's feature layer gives {kind}, not floating (B, D, ...) features; name "
            "another layer with --set source.feature_layer=NAME."
        )
    if output.ndim == 2:
        return output
    if pool == "tokens":
        return output.mean(dim=1).flatten(1)
    return output.flatten(2).mean(dim=2)


def default_layer(student: nn.Module) -> str | None:
    """The intermediate stage a model names for USKD: the last-but-one of its
    ``feature_stages`` (the official code reads the stage before the last), or None."""
    stages = tuple(getattr(student, "feature_stages", ()))
    return stages[-2] if len(stages) >= 2 else None


def _layer_names(student: nn.Module, limit: int = 12) -> str:
    names = [name for name, _ in student.named_modules() if name and name.count(".") <= 1]
    more = ", ..." if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ---------------------------------------------------------------------------- source
class USKDSource(TeacherSource):
    """USKD's soft labels from the student's own forward pass (docs/methods.md §7.2).

    ``attach(student)`` hooks ``feature_layer`` (default: the model's named stage) and builds
    the weak head ``Linear(D, C)``; D is read off ``feature_dim`` or a probe forward of
    ``example`` in eval mode. Per batch the source reads the student's detached logits
    (``needs_student_logits``) and the feature the hook captured during that forward.
    """

    needs_student_logits = True

    def __init__(
        self,
        num_classes: int,
        feature_layer: str | None = None,
        feature_pool: str = "channels",
        ranking: str = "log_prob",
        example: Tensor | None = None,
        feature_dim: int | None = None,
    ) -> None:
        super().__init__()
        if feature_pool not in FEATURE_POOLS:
            raise UserError(f"feature_pool must be one of {FEATURE_POOLS}, got {feature_pool!r}")
        if ranking not in loss_functional.RANKINGS:
            raise UserError(f"ranking must be one of {loss_functional.RANKINGS}, got {ranking!r}")
        if feature_dim is not None and feature_dim < 1:
            raise UserError(f"feature_dim must be >= 1, got {feature_dim}")
        self.num_classes, self.feature_layer = num_classes, feature_layer
        self.feature_pool, self.ranking = feature_pool, ranking
        self.example, self.feature_dim = example, feature_dim
        self.weak_head: nn.Linear | None = None
        self._feature: Tensor | None = None
        self._student: weakref.ref[nn.Module] | None = None
        self._handle: Any = None

    # -- binding to the student
    def attach(self, student: nn.Module) -> None:
        """Hook the student's feature layer and build the weak head (once per student)."""
        if self._student is not None and self._student() is student:
            return
        name = self.feature_layer or default_layer(student)
        kind = type(student).__name__
        if name is None:
            raise UserError(
                f"USKD needs an intermediate feature but {kind} names no stages; name a layer "
                f"with --set source.feature_layer=NAME (its layers: {_layer_names(student)})."
            )
        modules = dict(student.named_modules())
        if name not in modules:
            raise UserError(
                f"source.feature_layer {name!r} is no layer of {kind}; its layers: "
                f"{_layer_names(student)}."
            )
        if self._handle is not None:
            self._handle.remove()
        self._handle = modules[name].register_forward_hook(self._capture)
        self.feature_layer = name
        self.feature_dim = self.feature_dim or self._probe(student, name)
        self.weak_head = nn.Linear(self.feature_dim, self.num_classes)
        self._student = weakref.ref(student)

    def _capture(self, module: nn.Module, args: Any, output: Any) -> None:
        self._feature = pool_feature(output, self.feature_pool)

    def _probe(self, student: nn.Module, name: str) -> int:
        """The feature width D, from one forward of the example batch in eval mode."""
        if self.example is None:
            raise UserError("USKD's weak head needs feature_dim= or example_input= (one batch).")
        device = next((p.device for p in student.parameters()), torch.device("cpu"))
        was_training = student.training
        student.eval()
        try:
            with torch.no_grad():
                student(self.example.to(device))
        except RuntimeError as exc:
            raise UserError(
                f"the student cannot read the example batch ({first_line(exc)})"
            ) from None
        finally:
            student.train(was_training)
        feature, self._feature = self._feature, None
        if feature is None:
            raise UserError(f"layer {name!r} does not run in the student's forward pass.")
        return int(feature.shape[1])

    # -- per batch
    def forward(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, student: StudentOutputs | None = None
    ) -> USKDSignal:
        if student is None or self.weak_head is None:
            raise UserError(
                "the uskd source reads the student's own forward pass: attach(student) first "
                "and pass the student's logits."
            )
        feature, self._feature = self._feature, None
        if feature is None:
            raise UserError(
                f"no feature from layer {self.feature_layer!r}: run the student on the batch "
                "before the criterion."
            )
        weak = self.weak_head(feature).float()
        logits = student.logits.detach().float()
        target = loss_functional.uskd_target(logits, labels)
        scores = loss_functional.uskd_rank_scores(logits, weak.detach(), labels, self.ranking)
        non_target = loss_functional.zipf_non_target(scores, labels)
        joint = _as_distribution(target, non_target, labels)
        return USKDSignal(
            logits=loss_functional.probs_to_logits(joint),
            class_level=False,
            target=target,
            non_target=non_target,
            weak_logits=weak,
        )

    # -- the weak head is trained with the student
    def trained_modules(self) -> dict[str, nn.Module]:
        """Modules trained with the student: in its optimizer and its checkpoints."""
        return {"weak_head": self.weak_head} if self.weak_head is not None else {}

    def extra_state(self) -> dict[str, Any]:
        return {name: m.state_dict() for name, m in self.trained_modules().items()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for name, module in self.trained_modules().items():
            if name in state:
                module.load_state_dict(state[name])

    def record(self) -> SignalRecord:
        info = {
            "feature_layer": self.feature_layer,
            "feature_dim": self.feature_dim,
            "feature_pool": self.feature_pool,
            "ranking": self.ranking,
        }
        return SignalRecord("uskd", info)


def _as_distribution(target: Tensor, non_target: Tensor, labels: Tensor) -> Tensor:
    """One distribution per row: the clipped target on the label, the rest by ``non_target``."""
    q = target.clamp(1e-4, 1.0 - 1e-4).unsqueeze(1)
    return (non_target * (1.0 - q)).scatter(1, labels.long().unsqueeze(1), q)


@SOURCES.register("uskd")
def uskd_source(
    context: SourceContext,
    feature_layer: str | None = None,
    feature_pool: str = "channels",
    ranking: str = "log_prob",
) -> USKDSource:
    """USKD's soft labels from the student (a weak head on ``feature_layer``, default the
    model's named stage). ``ranking``: ``log_prob`` (official code) or ``prob`` (the paper)."""
    example = context.data.example_input(2)
    return USKDSource(context.num_classes, feature_layer, feature_pool, ranking, example)
