"""Mid level: teacher-free sources made from the student itself, PS-KD, CS-KD, OLS, DLB and Zipf's
LS.

Each is a :class:`~reffakd.kd.source_base.TeacherSource` with ``needs_student_logits``: the
distillation loss hands it the student's detached fp32 logits of the batch, and the source
returns the soft targets (docs/methods.md, "The teacher-free family"). State that lives
between batches (PS-KD's prediction store, OLS's class matrix, CS-KD's random generator) is
checkpointed through ``extra_state``, so resume is bit-identical.

PS-KD and OLS can start from ReffAKD's soft labels (``prior=aesl`` / ``init=aesl``): the
``aesl`` source is then built and set up inside, and its cost counts towards the run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from reffakd.errors import UserError
from reffakd.kd.loss_functional import pskd_targets, zipf_distribution
from reffakd.kd.source_base import (
    SOURCES,
    SignalRecord,
    SourceContext,
    StudentOutputs,
    TeacherSignal,
    TeacherSource,
    build_source,
)
from reffakd.kd.source_teachers import smoothing_table
from reffakd.training.distributed import all_reduce_sum, in_process_group


def _one_hot_table(num_classes: int) -> Tensor:
    return torch.eye(num_classes)


class _PriorMixin:
    """An optional inner ``aesl`` source whose table seeds a self-distillation source."""

    inner: TeacherSource | None

    def _setup_inner(self) -> Tensor | None:
        if self.inner is None:
            return None
        self.inner.setup()
        return self.inner.log_table.exp()  # type: ignore[operator]

    def _inner_record(self, key: str, info: dict[str, Any]) -> SignalRecord:
        if self.inner is None:
            return SignalRecord(key, info)
        inner = self.inner.record()
        return SignalRecord(key, {**info, "prior": inner.info}, inner.phases)


def _aesl_inner(context: SourceContext, wanted: str, soft_labels: str | None) -> Any:
    if wanted not in ("onehot", "ls", "aesl"):
        raise UserError(f"prior must be onehot, ls or aesl, got {wanted!r}.")
    if wanted != "aesl":
        if soft_labels:
            raise UserError("source.soft_labels is used only with the aesl prior.")
        return None
    return build_source("aesl", {"soft_labels": soft_labels}, context)


# ---------------------------------------------------------------------------------- PS-KD
class PSKD(torch.nn.Module):
    """PS-KD's per-sample store (Kim et al., ICCV 2021), for the engine and for your own loop.

    ``store[i]`` holds softmax(z_i) from the last epoch sample i was seen. At epoch t of T,
    ``targets(indices, epoch, labels)`` is ``(1 - α_t) y + α_t p_{t-1}``, α_t = α_T t / T; a
    sample not seen yet uses ``prior[y]`` for p (one-hot, as the official code's first epoch,
    or an AESL row). ``update(indices, logits)`` writes softmax(logits) into the store: call it
    after ``targets`` for the same batch. Train with soft-target cross-entropy::

        pskd = PSKD(len(train_set), num_classes, epochs=200, labels=train_labels)
        loss = F.cross_entropy(logits, pskd.targets(idx, epoch))
        pskd.update(idx, logits)

    Memory: N × C floats (plus N flags).
    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        epochs: int,
        alpha_T: float = 0.8,
        labels: Tensor | None = None,
        prior: Tensor | None = None,
    ) -> None:
        super().__init__()
        if num_samples < 1 or num_classes < 2 or epochs < 1:
            raise UserError(
                f"PSKD needs num_samples >= 1, num_classes >= 2 and epochs >= 1, got "
                f"{num_samples}, {num_classes}, {epochs}."
            )
        if not 0.0 <= alpha_T <= 1.0:
            raise UserError(f"PS-KD alpha_T must be in [0, 1], got {alpha_T}.")
        self.epochs, self.alpha_T = epochs, alpha_T
        table = _one_hot_table(num_classes) if prior is None else prior.to(torch.float32)
        if table.shape != (num_classes, num_classes):
            raise UserError(f"PSKD prior must be ({num_classes}, {num_classes}).")
        self.register_buffer("prior", table)
        self.register_buffer("store", torch.zeros(num_samples, num_classes))
        self.register_buffer("seen", torch.zeros(num_samples, dtype=torch.bool))
        self.register_buffer("updated", torch.zeros(num_samples, dtype=torch.bool))
        self.labels: Tensor | None = None if labels is None else labels.to(torch.int64)

    def alpha(self, epoch: int) -> float:
        if not 1 <= epoch <= self.epochs:
            raise UserError(f"PS-KD epoch must be in [1, {self.epochs}], got {epoch}.")
        return self.alpha_T * epoch / self.epochs

    def targets(self, indices: Tensor, epoch: int, labels: Tensor | None = None) -> Tensor:
        """(B, C) soft targets for the samples ``indices`` at ``epoch`` (from 1)."""
        if labels is None:
            if self.labels is None:
                raise UserError("PSKD.targets needs labels= (or labels at construction).")
            labels = self.labels.to(indices.device)[indices]
        previous = torch.where(
            self.seen[indices].unsqueeze(1), self.store[indices], self.prior[labels]
        )
        return pskd_targets(labels, previous, self.alpha(epoch))

    @torch.no_grad()
    def update(self, indices: Tensor, logits: Tensor) -> None:
        """Keep softmax(logits) of these samples for the next epoch."""
        self.store[indices] = logits.detach().float().softmax(dim=1)
        self.seen[indices] = True
        self.updated[indices] = True

    @torch.no_grad()
    def sync(self) -> None:
        """Under torchrun each process saw its share of every batch: merge the rows each
        updated this epoch (one all-reduce), then start the next epoch's record."""
        if in_process_group():
            mask = self.updated.unsqueeze(1).to(self.store.dtype)
            summed = all_reduce_sum(self.store * mask)
            count = all_reduce_sum(mask.clone())
            merged = summed / count.clamp_min(1.0)
            self.store.copy_(torch.where(count > 0, merged, self.store))
            self.seen |= count.squeeze(1) > 0
        self.updated.zero_()


class PSKDSource(_PriorMixin, TeacherSource):
    """The ``pskd`` source: targets from :class:`PSKD`, trained with ``soft_ce``."""

    needs_student_logits = True

    def __init__(self, context: SourceContext, alpha_T: float, inner: TeacherSource | None) -> None:
        super().__init__()
        train = context.data.splits.train
        self.inner = inner
        self.pskd = PSKD(
            len(train), context.num_classes, context.epochs, alpha_T, labels=train.labels
        )
        self.epoch = 1

    def setup(self) -> None:
        table = self._setup_inner()
        if table is not None:
            self.pskd.prior.copy_(table)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def forward(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, student: StudentOutputs
    ) -> TeacherSignal:
        targets = self.pskd.targets(indices, self.epoch, labels)
        self.pskd.update(indices, student.logits)
        return TeacherSignal(torch.log(targets.clamp_min(1e-12)), class_level=False)

    def end_epoch(self, epoch: int) -> None:
        self.pskd.sync()

    def state_bytes(self) -> int:
        store = self.pskd.store
        return store.numel() * store.element_size() + 2 * self.pskd.seen.numel()

    def extra_state(self) -> dict[str, Any]:
        return {"store": self.pskd.store.cpu().clone(), "seen": self.pskd.seen.cpu().clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pskd.store.copy_(state["store"])
        self.pskd.seen.copy_(state["seen"])

    def record(self) -> SignalRecord:
        info = {"alpha_T": self.pskd.alpha_T, "epochs": self.pskd.epochs}
        return self._inner_record("pskd", info)


@SOURCES.register("pskd")
def pskd_source(
    context: SourceContext,
    alpha_T: float = 0.8,
    prior: str = "onehot",
    soft_labels: str | None = None,
) -> PSKDSource:
    """PS-KD: the student's own last-epoch predictions, mixed into the label with α_T t / T.

    ``prior=aesl`` starts the store from AESL rows (``reffakd+pskd``)."""
    return PSKDSource(context, alpha_T, _aesl_inner(context, prior, soft_labels))


# ---------------------------------------------------------------------------------- OLS
class OLSSource(_PriorMixin, TeacherSource):
    """Online label smoothing (Zhang et al., IEEE TIP 2021): row y of a (C, C) matrix S is the
    target of class y; S of epoch t is the mean softmax over the samples of class y that the
    student classified correctly during epoch t - 1 (a row without any keeps its last value)."""

    needs_student_logits = True

    def __init__(self, initial: Tensor, inner: TeacherSource | None) -> None:
        super().__init__()
        self.inner = inner
        c = initial.shape[0]
        self.register_buffer("matrix", initial.to(torch.float32).clone())
        self.register_buffer("sums", torch.zeros(c, c))
        self.register_buffer("counts", torch.zeros(c))

    def setup(self) -> None:
        table = self._setup_inner()
        if table is not None:
            self.matrix.copy_(table)

    def forward(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, student: StudentOutputs
    ) -> TeacherSignal:
        signal = TeacherSignal(torch.log(self.matrix[labels].clamp_min(1e-12)), class_level=True)
        probs = student.logits.softmax(dim=1)
        correct = (probs.argmax(dim=1) == labels).to(probs.dtype)
        self.sums.index_add_(0, labels, probs * correct.unsqueeze(1))
        self.counts.index_add_(0, labels, correct)
        return signal

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> None:
        sums, counts = all_reduce_sum(self.sums), all_reduce_sum(self.counts)
        rows = counts.unsqueeze(1)
        self.matrix.copy_(torch.where(rows > 0, sums / rows.clamp_min(1.0), self.matrix))
        self.sums.zero_()
        self.counts.zero_()

    def state_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in (self.matrix, self.sums, self.counts))

    def extra_state(self) -> dict[str, Any]:
        return {name: getattr(self, name).cpu().clone() for name in ("matrix", "sums", "counts")}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for name in ("matrix", "sums", "counts"):
            getattr(self, name).copy_(state[name])

    def record(self) -> SignalRecord:
        return self._inner_record("ols", {"matrix": self.matrix.cpu().tolist()})


@SOURCES.register("ols")
def ols_source(
    context: SourceContext, init: str = "ls", eps: float = 0.1, soft_labels: str | None = None
) -> OLSSource:
    """OLS: S starts as label smoothing with ``eps`` (``init=ls``), the identity (``onehot``) or
    AESL rows (``aesl``, ``reffakd+ols``), then follows the student's correct predictions."""
    c = context.num_classes
    inner = _aesl_inner(context, init, soft_labels)
    initial = smoothing_table(c, eps) if init == "ls" else _one_hot_table(c)
    return OLSSource(initial, inner)


# ---------------------------------------------------------------------------------- CS-KD
class CSKDSource(TeacherSource):
    """Class-wise self-KD (Yun et al., CVPR 2020): every sample gets a random other training
    sample of its class; the student's prediction on that partner (one more forward, train
    mode, no gradient) is the soft target."""

    needs_student_logits = True
    extra_mode = "separate"
    adds_samples = True

    def __init__(self, labels: Tensor, num_classes: int, seed: int) -> None:
        super().__init__()
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=num_classes)
        if int(counts.min()) < 2:
            raise UserError(
                "CS-KD pairs each sample with another of its class: every class needs at least "
                "2 training samples."
            )
        starts = torch.cumsum(counts, 0) - counts
        self.register_buffer("by_class", order)
        self.register_buffer("starts", starts)
        self.register_buffer("counts", counts)
        self.generator = torch.Generator().manual_seed(seed + 7919)

    def extra_indices(self, indices: Tensor, labels: Tensor) -> Tensor:
        """A uniform draw among the other samples of each label (never the sample itself)."""
        draw = torch.rand(len(labels), generator=self.generator).to(labels.device)
        others = self.counts[labels] - 1
        offset = (draw * others).floor().to(torch.int64).clamp_max(others - 1)
        partner = self.by_class[self.starts[labels] + offset]
        last = self.by_class[self.starts[labels] + others]  # the one slot the draw skips
        return torch.where(partner == indices, last, partner)

    def forward(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, student: StudentOutputs
    ) -> TeacherSignal:
        if student.extra is None:
            raise UserError("CS-KD needs the partner samples' logits (train with reffakd).")
        return TeacherSignal(student.extra, class_level=False)

    def extra_student_samples(self, epochs: int, train_size: int) -> dict[str, int]:
        return {"no_grad": epochs * train_size}

    def extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def record(self) -> SignalRecord:
        return SignalRecord("cskd", {"partners": "same class, uniform, never itself"})


@SOURCES.register("cskd")
def cskd_source(context: SourceContext) -> CSKDSource:
    """CS-KD: the student's prediction on a random same-class partner is the target."""
    train = context.data.splits.train
    return CSKDSource(train.labels.to(torch.int64), context.num_classes, context.seed)


# ---------------------------------------------------------------------------------- DLB
class DLBSource(TeacherSource):
    """Self-distillation from the last mini-batch (Shen et al., CVPR 2022): half of each batch
    comes back in the next one (freshly augmented), and the student's detached logits of the
    previous iteration on it are the soft targets. The pairing starts anew every epoch."""

    needs_student_logits = True
    extra_mode = "joined"
    adds_samples = True

    def __init__(self) -> None:
        super().__init__()
        self.previous: tuple[Tensor, Tensor] | None = None  # (indices, logits)

    def extra_indices(self, indices: Tensor, labels: Tensor) -> Tensor | None:
        return None if self.previous is None else self.previous[0]

    def forward(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, student: StudentOutputs
    ) -> TeacherSignal:
        repeated = 0 if self.previous is None else len(self.previous[0])
        fresh = len(indices) - repeated
        signal = TeacherSignal(student.logits[:0], class_level=False, rows=slice(fresh, None))
        if self.previous is not None:
            signal.logits = self.previous[1]
        keep = slice(fresh // 2, fresh)  # the second half of the new samples comes back next
        self.previous = (indices[keep], student.logits[keep])
        return signal

    def end_epoch(self, epoch: int) -> None:
        self.previous = None

    def extra_student_samples(self, epochs: int, train_size: int) -> dict[str, int]:
        return {"trained": epochs * (train_size // 2)}

    def record(self) -> SignalRecord:
        return SignalRecord("dlb", {"repeated": "second half of the previous batch"})


@SOURCES.register("dlb")
def dlb_source(context: SourceContext) -> DLBSource:
    """DLB: the previous iteration's predictions on the repeated half are the targets."""
    return DLBSource()


# ---------------------------------------------------------------------------------- Zipf's LS
class ZipfSource(TeacherSource):
    """Zipf's label smoothing (Liang et al., ECCV 2022), logit-ranking form: the classes are
    ranked by the student's own detached logits with the label first, and the target is
    Zipf's law over the ranks, p(r) ∝ r^-power."""

    needs_student_logits = True

    def __init__(self, power: float) -> None:
        super().__init__()
        if power <= 0:
            raise UserError(f"Zipf power must be > 0, got {power}.")
        self.power = power

    def forward(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, student: StudentOutputs
    ) -> TeacherSignal:
        target = zipf_distribution(student.logits, labels, self.power)
        return TeacherSignal(torch.log(target), class_level=False)

    def record(self) -> SignalRecord:
        return SignalRecord("zipf", {"power": self.power, "form": "logit ranking"})


@SOURCES.register("zipf")
def zipf_source(context: SourceContext, power: float = 1.0) -> ZipfSource:
    """Zipf's LS: soft targets ∝ rank^-power over the student's own ranking."""
    return ZipfSource(power)


__all__ = [
    "PSKD",
    "CSKDSource",
    "DLBSource",
    "OLSSource",
    "PSKDSource",
    "ZipfSource",
]
