"""High level: drop-in criteria for your own training loop, a teacher-signal source × an objective
as one ``nn.Module``, the very pair the engine's :class:`~reffakd.kd.task.Distiller` trains with.

::

    criterion = KDLoss(teacher, alpha=0.9, temperature=4.0)   # the teacher is frozen
    loss = criterion(logits, labels, inputs)                  # runs the teacher on inputs
    criterion.last_terms                                      # {"ce": ..., "kd": ...}

Class-level sources (soft-label tables, label smoothing, the Tf-KD virtual teacher) need no
inputs: ``criterion(logits, labels)``. Every named criterion is a method preset of
:mod:`reffakd.kd.methods` with its defaults (``None`` keeps the preset's value); any preset
or source × loss pair is available through :meth:`DistillationLoss.from_method`. ReffAKD's
own criterion, :class:`reffakd.aesl.loss.ReffAKDLoss`, lives with the soft labels.

Objectives with a warm-up (DKD) need the epoch, counted from 1: call
``criterion.set_epoch(epoch)`` at the start of each epoch, as with a ``DistributedSampler``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from reffakd.errors import UserError, UserTypeError
from reffakd.kd.loss_objectives import Objective, build_objective
from reffakd.kd.method_uskd import USKDSource
from reffakd.kd.methods import resolve_method
from reffakd.kd.source_base import StudentOutputs, TeacherSignal, TeacherSource
from reffakd.kd.source_teachers import (
    ClassTableSource,
    NetworkSource,
    smoothing_table,
    virtual_table,
)


def fp32_terms(
    objective: Objective,
    logits: Tensor,
    labels: Tensor,
    signal: TeacherSignal | None,
    epoch: int,
) -> dict[str, Tensor]:
    """The objective's terms in fp32 whatever autocast the networks ran under: the student's
    and the teacher's logits are cast to float32 (a no-op when they are) and every softmax, log
    and KL runs with autocast off."""
    logits = logits.float()
    if signal is not None and signal.logits.dtype != torch.float32:
        signal = replace(signal, logits=signal.logits.float())
    with torch.autocast(logits.device.type, enabled=False):
        return objective(logits, labels, signal, epoch)


def check_call(logits: Any, labels: Any, inputs: Any = None) -> None:
    """The arguments of a drop-in criterion, checked with messages naming them: tensors, (N, C)
    float logits, (N,) integer labels in [0, C). On a GPU the range check is a device-side
    assert (no host sync per step); NaN logits are left to give a NaN loss, as torch's do."""
    for name, value in (("logits", logits), ("labels", labels), ("inputs", inputs)):
        if value is not None and not isinstance(value, Tensor):
            raise UserTypeError(
                f"{name} must be a torch.Tensor, got {type(value).__name__}; wrap it with "
                "torch.as_tensor(...)."
            )
    if not logits.is_floating_point() or logits.dim() != 2:
        raise UserTypeError(
            f"logits must be a float tensor of shape (N, C), got {logits.dtype} of shape "
            f"{tuple(logits.shape)}."
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise UserTypeError(
            f"labels must be integer class indices (torch.long), got {labels.dtype}; pass "
            "labels.long() if they are whole numbers."
        )
    if labels.shape != logits.shape[:1]:
        raise UserError(
            f"labels must have shape ({logits.shape[0]},), one per row of logits, got "
            f"{tuple(labels.shape)}."
        )
    _check_label_range(labels, logits.shape[1])


def _check_label_range(labels: Tensor, num_classes: int) -> None:
    if labels.device.type != "cpu":  # asserted on the device, without waiting for it
        inside = ((labels >= 0) & (labels < num_classes)).all()
        torch._assert_async(inside, f"labels must lie in [0, {num_classes})")
        return
    if labels.numel() and not (int(labels.min()) >= 0 and int(labels.max()) < num_classes):
        raise UserError(
            f"labels must lie in [0, {num_classes}) for logits of {num_classes} classes, found "
            f"[{int(labels.min())}, {int(labels.max())}]."
        )


class DistillationLoss(nn.Module):
    """``loss = criterion(logits, labels, inputs=None)``: the objective's named terms on the
    source's signal, summed. The terms of the last call are kept, detached, in ``last_terms``.

    The source's networks stay frozen (eval mode, no gradients) whatever mode the criterion is
    put in. Its tensors follow the logits to their device on the first call.
    """

    def __init__(self, source: TeacherSource | None, objective: Objective) -> None:
        super().__init__()
        self.source = source
        self.objective = objective
        self.epoch: int | None = None
        self.last_terms: dict[str, Tensor] = {}

    @classmethod
    def from_method(
        cls,
        method: str,
        *,
        soft_labels: Any = None,
        teacher: nn.Module | None = None,
        num_classes: int | None = None,
        source_options: dict[str, Any] | None = None,
        **loss_options: Any,
    ) -> DistillationLoss:
        """The criterion of a method preset (``reffakd list methods``), e.g. ``"reffakd+dkd"``.

        ``soft_labels`` (a (C, C) table, or an object with a ``table``) feeds a class-table
        source, ``teacher`` a network source, ``num_classes`` label smoothing and the virtual
        teacher. ``source_options`` and ``loss_options`` override the preset's options; a
        ``name`` in either replaces that half of the preset, as in a config's sections.
        """
        resolved = resolve_method(method, dict(source_options or {}), loss_options)
        given = SourceInputs(soft_labels, teacher, num_classes)
        source = None
        if resolved.source is not None:
            source = build_drop_in_source(resolved.source, resolved.source_options, given)
        return cls(source, build_objective(resolved.loss, resolved.loss_options))

    def set_epoch(self, epoch: int) -> None:
        """The current epoch, counted from 1 (DKD's warm-up reads it)."""
        if epoch < 1:
            raise UserError(f"epochs are counted from 1, got set_epoch({epoch}).")
        self.epoch = epoch

    @property
    def needs_inputs(self) -> bool:
        """True when the source runs a network on the inputs (a teacher)."""
        return self.source is not None and bool(self.source.networks_per_batch())

    def terms(
        self,
        logits: Tensor,
        labels: Tensor,
        inputs: Tensor | None = None,
        indices: Tensor | None = None,
        epoch: int | None = None,
        extra_logits: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The objective's named loss terms (not summed). ``extra_logits``: the student's
        logits on the samples the source added to the batch (CS-KD's partners)."""
        epoch = self._epoch(epoch)
        signal = None
        if self.source is not None:
            if inputs is None and self.needs_inputs:
                raise UserError(
                    f"{type(self).__name__} runs a teacher network on the inputs: call "
                    "criterion(logits, labels, inputs)."
                )
            self._follow(logits.device)
            self.source.set_epoch(epoch)
            if self.source.needs_student_logits:
                seen = StudentOutputs(logits.detach().float(), extra_logits)
                signal = self.source(inputs, labels, indices, student=seen)
            else:
                signal = self.source(inputs, labels, indices)
        return fp32_terms(self.objective, logits, labels, signal, epoch)

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        inputs: Tensor | None = None,
        *,
        indices: Tensor | None = None,
        epoch: int | None = None,
    ) -> Tensor:
        check_call(logits, labels, inputs)
        terms = self.terms(logits, labels, inputs, indices, epoch)
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        return sum(terms.values())  # type: ignore[return-value]

    def _epoch(self, epoch: int | None) -> int:
        if epoch is not None:
            return epoch
        if self.epoch is not None:
            return self.epoch
        if getattr(self.objective, "uses_epoch", False):
            raise UserError(
                f"{type(self).__name__}'s loss warms up over epochs: call "
                "criterion.set_epoch(epoch) (counted from 1) at the start of every epoch, or "
                "pass warmup=0."
            )
        return 1

    def _follow(self, device: torch.device) -> None:
        """Move the source's tables or teacher to ``device`` once, if they live elsewhere."""
        for tensor in (*self.buffers(), *self.parameters()):
            if tensor.device != device:
                self.to(device)
            return


# ---------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class SourceInputs:
    """What a drop-in source can be made from: a class table, a teacher, a class count."""

    soft_labels: Any = None
    teacher: nn.Module | None = None
    num_classes: int | None = None

    def table(self, source: str) -> Tensor:
        if self.soft_labels is None:
            raise UserError(f"source {source!r} needs soft labels: pass soft_labels=.")
        return class_table(self.soft_labels)

    def network(self, source: str) -> nn.Module:
        if not isinstance(self.teacher, nn.Module):
            raise UserError(f"source {source!r} needs a teacher network: pass teacher=module.")
        return self.teacher

    def classes(self, source: str) -> int:
        if self.num_classes is None or self.num_classes < 2:
            raise UserError(f"source {source!r} needs num_classes >= 2, got {self.num_classes}.")
        return self.num_classes


def _network(given: SourceInputs, name: str, options: dict[str, Any]) -> NetworkSource:
    if options:
        raise UserError(
            f"source {name!r} in your own loop takes no options (got {', '.join(options)}); "
            "the teacher network is used as passed."
        )
    teacher = given.network(name)
    return NetworkSource(teacher, 0, {"module": type(teacher).__name__})


DropInSource = Callable[[SourceInputs, str, dict[str, Any]], TeacherSource]
# The sources a user's loop can make from what it holds; the engine's factories build the same
# classes from a run's files.
DROP_IN_SOURCES: dict[str, DropInSource] = {
    "aesl": lambda given, name, options: ClassTableSource(given.table(name)),
    "smooth": lambda given, name, options: ClassTableSource(
        smoothing_table(given.classes(name), **options)
    ),
    "virtual": lambda given, name, options: ClassTableSource(
        virtual_table(given.classes(name), **options)
    ),
    "teacher": _network,
    "self": _network,
    "uskd": lambda given, name, options: _needs_student(name),
}


def _needs_student(name: str) -> TeacherSource:
    raise UserError(
        f"source {name!r} hooks a layer of your model: use USKDLoss(model, num_classes, "
        "example_input=...) and put criterion.weak_head in your optimizer."
    )


def build_drop_in_source(name: str, options: dict[str, Any], given: SourceInputs) -> TeacherSource:
    """The source ``name`` made from tensors and modules instead of run files."""
    if name not in DROP_IN_SOURCES:
        raise UserError(
            f"source {name!r} has no drop-in form (it makes its signal inside a run); use one "
            f"of: {', '.join(sorted(DROP_IN_SOURCES))}, or train with `reffakd train`."
        )
    try:
        return DROP_IN_SOURCES[name](given, name, dict(options))
    except TypeError as exc:  # an option the table builder does not take
        raise UserError(f"source {name!r}: {exc}") from None


def class_table(soft_labels: Any) -> Tensor:
    """A (C, C) float32 table of probability rows from a tensor or an object with ``table``."""
    table = getattr(soft_labels, "table", soft_labels)
    if not isinstance(table, Tensor):
        raise UserTypeError(
            f"soft labels must be a (C, C) tensor or SoftLabels, got {type(soft_labels).__name__}."
        )
    table = table.detach().to(torch.float32).cpu()
    if table.dim() != 2 or table.shape[0] != table.shape[1] or table.shape[0] < 2:
        raise UserError(f"soft labels must be a (C, C) table, got shape {tuple(table.shape)}.")
    sums = table.sum(dim=1)
    if (
        not bool(torch.isfinite(table).all())
        or bool((table < 0).any())
        or not torch.allclose(sums, torch.ones_like(sums), atol=1e-4)
    ):
        raise UserError("soft labels: every row must be non-negative and sum to 1.")
    return table


# ---------------------------------------------------------------------------- named criteria
def _given(**options: Any) -> dict[str, Any]:
    """Options the caller set: None keeps the preset's value."""
    return {k: v for k, v in options.items() if v is not None}


def _teacher_or_labels(
    name: str, presets: tuple[str, str], teacher: Any, soft_labels: Any, **options: Any
) -> DistillationLoss:
    """``presets[0]`` on a teacher network, ``presets[1]`` on soft labels; exactly one given."""
    if (teacher is None) == (soft_labels is None):
        raise UserError(f"{name} takes either a teacher network or soft_labels, not both or none.")
    method = presets[0] if teacher is not None else presets[1]
    return DistillationLoss.from_method(method, teacher=teacher, soft_labels=soft_labels, **options)


class KDLoss(DistillationLoss):
    """Hinton KD from your frozen ``teacher``: ``criterion(logits, labels, inputs)``.
    (1 - alpha) CE + alpha T² KL(softmax(t/T) || softmax(z/T)); preset ``kd``."""

    def __init__(
        self,
        teacher: nn.Module,
        alpha: float | None = None,
        temperature: float | None = None,
        reduction: str | None = None,
        **loss_options: Any,
    ) -> None:
        options = _given(alpha=alpha, temperature=temperature, reduction=reduction)
        built = DistillationLoss.from_method("kd", teacher=teacher, **options, **loss_options)
        super().__init__(built.source, built.objective)


class DKDLoss(DistillationLoss):
    """Decoupled KD (CE + TCKD + NCKD) from a ``teacher`` network or from ``soft_labels``
    (presets ``kd+dkd`` / ``reffakd+dkd``). With ``warmup`` > 0 epochs, call ``set_epoch``."""

    def __init__(
        self,
        teacher: nn.Module | None = None,
        *,
        soft_labels: Any = None,
        alpha: float | None = None,
        beta: float | None = None,
        temperature: float | None = None,
        warmup: int | None = None,
        **loss_options: Any,
    ) -> None:
        options = {
            **_given(alpha=alpha, beta=beta, temperature=temperature, warmup=warmup),
            **loss_options,
        }
        built = _teacher_or_labels(
            "DKDLoss", ("kd+dkd", "reffakd+dkd"), teacher, soft_labels, **options
        )
        super().__init__(built.source, built.objective)


class DISTLoss(DistillationLoss):
    """DIST (CE + inter- and intra-class Pearson terms) from a ``teacher`` network or from
    ``soft_labels`` (presets ``kd+dist`` / ``reffakd+dist``)."""

    def __init__(
        self,
        teacher: nn.Module | None = None,
        *,
        soft_labels: Any = None,
        beta: float | None = None,
        gamma: float | None = None,
        temperature: float | None = None,
        **loss_options: Any,
    ) -> None:
        options = {**_given(beta=beta, gamma=gamma, temperature=temperature), **loss_options}
        built = _teacher_or_labels(
            "DISTLoss", ("kd+dist", "reffakd+dist"), teacher, soft_labels, **options
        )
        super().__init__(built.source, built.objective)


class LabelSmoothingLoss(DistillationLoss):
    """Label smoothing: cross-entropy against 1 - eps on the label, eps / (C - 1) elsewhere
    (preset ``ls``)."""

    def __init__(self, num_classes: int, eps: float | None = None) -> None:
        built = DistillationLoss.from_method(
            "ls", num_classes=num_classes, source_options=_given(eps=eps)
        )
        super().__init__(built.source, built.objective)


class TfKDVirtualLoss(DistillationLoss):
    """Tf-KD's virtual teacher: KD towards softmax(p_d / virtual_temperature), p_d = a on the
    label (preset ``tfkd-reg``)."""

    def __init__(
        self,
        num_classes: int,
        alpha: float | None = None,
        a: float | None = None,
        virtual_temperature: float | None = None,
        **loss_options: Any,
    ) -> None:
        source_options = _given(a=a, temperature=virtual_temperature)
        built = DistillationLoss.from_method(
            "tfkd-reg",
            num_classes=num_classes,
            source_options=source_options,
            **_given(alpha=alpha),
            **loss_options,
        )
        super().__init__(built.source, built.objective)


class NKDLoss(DistillationLoss):
    """Normalized KD (CE + target term + gamma T² normalized non-target term) from a
    ``teacher`` network or from ``soft_labels`` (presets ``nkd`` / ``reffakd+nkd``)."""

    def __init__(
        self,
        teacher: nn.Module | None = None,
        *,
        soft_labels: Any = None,
        temperature: float | None = None,
        gamma: float | None = None,
        **loss_options: Any,
    ) -> None:
        options = {**_given(temperature=temperature, gamma=gamma), **loss_options}
        built = _teacher_or_labels(
            "NKDLoss", ("nkd", "reffakd+nkd"), teacher, soft_labels, **options
        )
        super().__init__(built.source, built.objective)


class USKDLoss(DistillationLoss):
    """USKD on your ``model`` (preset ``uskd``): ``criterion(model(inputs), labels)``.

    A forward hook on ``feature_layer`` (default: the model's ``feature_stages[-2]``) feeds the
    weak head ``criterion.weak_head``, a ``Linear(D, num_classes)``: put its parameters in your
    optimizer (``[*model.parameters(), *criterion.weak_head.parameters()]``) and its
    ``state_dict`` in your checkpoints. D is read off ``feature_dim`` or one forward of
    ``example_input`` (a batch of your inputs) in eval mode. Run the model on the batch before
    calling the criterion, so the hook holds that batch's feature.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        *,
        feature_layer: str | None = None,
        example_input: Tensor | None = None,
        feature_dim: int | None = None,
        feature_pool: str | None = None,
        ranking: str | None = None,
        alpha: float | None = None,
        beta: float | None = None,
        mu: float | None = None,
        **loss_options: Any,
    ) -> None:
        source_options = _given(
            feature_layer=feature_layer, feature_pool=feature_pool, ranking=ranking
        )
        options = {**_given(alpha=alpha, beta=beta, mu=mu), **loss_options}
        resolved = resolve_method("uskd", source_options, options)
        source = USKDSource(
            num_classes, example=example_input, feature_dim=feature_dim, **resolved.source_options
        )
        source.attach(model)
        super().__init__(source, build_objective(resolved.loss, resolved.loss_options))

    @property
    def weak_head(self) -> nn.Module:
        """The weak classifier: train it with the model (it is in ``criterion.parameters()``)."""
        assert isinstance(self.source, USKDSource) and self.source.weak_head is not None
        return self.source.weak_head
