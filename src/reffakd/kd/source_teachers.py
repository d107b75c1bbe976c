"""Mid level: the built-in teacher-signal sources, class tables (label smoothing, the Tf-KD virtual
teacher) and trained networks (vanilla KD's teacher, Tf-KD's self-teacher).

Class-level sources hold a fixed distribution per class and return its log-probabilities, so
every logit-based loss accepts them (docs/methods.md §1.4). Network sources run a frozen network
on the same augmented batch as the student.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reffakd.config import AugmentConfig, ComputeConfig, TrainConfig
from reffakd.data.prepared import PreparedData
from reffakd.data.spec import get_spec
from reffakd.errors import UserError, first_line
from reffakd.kd.loss_functional import probs_to_logits
from reffakd.kd.source_base import (
    SOURCES,
    SignalRecord,
    SourceContext,
    TeacherSignal,
    TeacherSource,
)
from reffakd.models import build_model, input_tokenizer
from reffakd.training.precision import Precision
from reffakd.training.rundir import check_data
from reffakd.training.runs import (
    TrainedRun,
    check_training_run,
    load_run_config,
    load_weights,
    open_trained_run,
    run_folder,
)
from reffakd.training.summary import format_percent, read_summary


class ClassTableSource(TeacherSource):
    """A fixed (C, C) table of class distributions; row y is the target for label y."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("log_table", probs_to_logits(table.to(torch.float32)))

    def forward(self, inputs: Tensor, labels: Tensor, indices: Tensor) -> TeacherSignal:
        return TeacherSignal(self.log_table[labels], class_level=True)


@SOURCES.register("smooth")
def smooth_source(context: SourceContext, eps: float = 0.1) -> ClassTableSource:
    """Label smoothing: 1 - eps on the true class, eps / (C - 1) elsewhere."""
    return ClassTableSource(smoothing_table(context.num_classes, eps))


def smoothing_table(num_classes: int, eps: float = 0.1) -> Tensor:
    """(C, C): 1 - eps on the diagonal, eps / (C - 1) elsewhere."""
    if not 0.0 <= eps < 1.0:
        raise UserError(f"label smoothing eps must be in [0, 1), got {eps}")
    c = num_classes
    table = torch.full((c, c), eps / (c - 1))
    table.fill_diagonal_(1.0 - eps)
    return table


@SOURCES.register("virtual")
def virtual_source(
    context: SourceContext, a: float = 0.99, temperature: float = 20.0
) -> ClassTableSource:
    """Tf-KD virtual teacher: p_d = a on the true class, (1 - a)/(C - 1) elsewhere, then
    softened as in the reference code: softmax(p_d / temperature)."""
    return ClassTableSource(virtual_table(context.num_classes, a, temperature))


def virtual_table(num_classes: int, a: float = 0.99, temperature: float = 20.0) -> Tensor:
    """(C, C): row y is softmax(p_d / temperature), p_d = a on y and (1 - a)/(C - 1) elsewhere."""
    if not 0.0 < a <= 1.0 or temperature <= 0:
        raise UserError(
            f"virtual teacher needs a in (0, 1] and temperature > 0, got {a}, {temperature}"
        )
    c = num_classes
    virtual = torch.full((c, c), (1.0 - a) / (c - 1))
    virtual.fill_diagonal_(a)
    return torch.softmax(virtual / temperature, dim=1)


# ---------------------------------------------------------------------------- network sources
CACHE_BATCH = 512  # samples per teacher forward while the cache is filled


class NetworkSource(TeacherSource):
    """A trained, frozen network. It runs on the very batch the student sees (augmented or
    not), or, with ``cache``, on each training sample once, at set-up.

    The cache is keyed by sample index (``indices``: positions in the train split), never by
    batch position, so shuffling cannot mix rows up (docs/methods.md §3.9). It is only correct
    when a sample always gives the same input, i.e. without augmentation; the factories enforce
    that. It is filled whole at set-up, so a training step only gathers from it (no check for
    missing rows, which would read the device every batch). ``inputs``: the training samples as
    the teacher reads them (the student's, or the teacher's own encoding); needed with
    ``cache``. ``compute``: the precision the teacher runs in while filling it.
    """

    def __init__(
        self,
        teacher: nn.Module,
        num_classes: int,
        info: dict[str, Any],
        cache: bool = False,
        inputs: TeacherInputs | None = None,
        own_inputs: bool = False,
        compute: ComputeConfig | None = None,
    ) -> None:
        super().__init__()
        self.teacher = teacher
        self.cache_enabled = cache or own_inputs
        if self.cache_enabled and inputs is None:
            raise ValueError("a cached network source needs the training inputs")
        self.info = info
        self.inputs = inputs
        self.own_example = inputs.example if own_inputs and inputs is not None else None
        self.compute = compute or ComputeConfig(precision="fp32")
        self.register_buffer("cache", torch.zeros(0, num_classes), persistent=False)
        self.freeze()

    def setup(self) -> None:
        if self.cache_enabled and not len(self.cache):
            self.fill_cache()

    @torch.no_grad()
    def fill_cache(self, batch_size: int = CACHE_BATCH) -> None:
        """The teacher's logits on every training sample, row i for sample i."""
        assert self.inputs is not None
        device = self.cache.device
        precision = Precision(self.compute, device)
        parts = []
        for rows in self.inputs.train.split(batch_size):
            batch = precision.inputs(self.inputs.transform(rows.to(device)))
            with precision.autocast():
                parts.append(self.teacher_logits(batch).to(self.cache.dtype))
        self.cache = torch.cat(parts) if parts else self.cache

    def record(self) -> SignalRecord:
        return SignalRecord("teacher", self.info, teacher_phases(self.info.get("run")))

    def networks_per_batch(self) -> dict[str, nn.Module]:
        return {"teacher": self.teacher}

    def network_samples(self, epochs: int, train_size: int) -> dict[str, int]:
        """Cached: each training sample once; else every sample of every epoch."""
        return {"teacher": train_size if self.cache_enabled else epochs * train_size}

    def network_inputs(self) -> dict[str, Tensor]:
        return {} if self.own_example is None else {"teacher": self.own_example}

    @torch.no_grad()
    def teacher_logits(self, inputs: Tensor) -> Tensor:
        return self.teacher(inputs)

    def forward(self, inputs: Tensor, labels: Tensor, indices: Tensor) -> TeacherSignal:
        if self.cache_enabled:
            if not len(self.cache):
                self.fill_cache()  # a source used without its set-up
            return TeacherSignal(self.cache[indices], class_level=False)
        return TeacherSignal(self.teacher_logits(inputs), class_level=False)


@dataclass(frozen=True)
class TeacherInputs:
    """A teacher's own encoding of the student's training samples (row i: sample i), the
    transform its batches go through, and an example batch of one for cost counting."""

    train: Tensor
    transform: Callable[[Tensor], Tensor]
    example: Tensor


def teacher_phases(run: str | None) -> list[dict[str, Any]]:
    """The cost phases of a teacher's own training run, renamed as teacher phases."""
    if not run:
        return []
    summary = read_summary(run)
    phases = summary.cost.get("phases", []) if summary else []
    renamed = []
    for phase in phases:
        name = "teacher_training" if phase["phase"] == "student_training" else phase["phase"]
        renamed.append({**phase, "phase": f"teacher:{name}"})
    return renamed


@SOURCES.register("teacher")
def teacher_source(
    context: SourceContext, run: str | None = None, checkpoint: str = "best", cache: bool = False
) -> NetworkSource:
    """Vanilla KD: a network trained by ``reffakd train`` (its run directory, or a ``.pt``
    checkpoint inside one). ``checkpoint``: ``best`` (on validation) or ``last``."""
    return _network_source(context, run, checkpoint, cache, same_architecture=False)


@SOURCES.register("self")
def self_source(
    context: SourceContext, run: str | None = None, checkpoint: str = "best", cache: bool = False
) -> NetworkSource:
    """Tf-KD self-training: the teacher is a normally trained copy of the student's own
    architecture (a run of ``reffakd train --method ce`` with the same ``--student``)."""
    return _network_source(context, run, checkpoint, cache, same_architecture=True)


def _network_source(
    context: SourceContext,
    run: str | None,
    checkpoint: str,
    cache: bool,
    same_architecture: bool,
) -> NetworkSource:
    if not run:
        raise UserError("this method needs a trained teacher: pass --teacher RUN_DIR.")
    if cache and context.augmented:
        raise UserError(
            "teacher outputs may only be cached for un-augmented inputs (an augmented sample "
            "differs every epoch); set --set augment.enabled=false or drop source.cache."
        )
    check_training_run(run_folder(run))  # before its checkpoint: say if it is another kind
    trained = open_trained_run(run, checkpoint, "teacher")
    config = load_run_config(trained.path)
    data = _check_compatible(run, config, context)
    if same_architecture:
        _check_same_architecture(run, config.student, context.student)
    own = _own_inputs(run, data, context) if data is not context.data else None
    teacher = _build_teacher(run, config.student, trained, context, data)
    info = _teacher_info(run, trained, config)
    info["parameters"] = sum(p.numel() for p in teacher.parameters())
    info["own_inputs"] = own is not None
    print(_teacher_line(info))
    inputs = own or _student_inputs(context)
    source = NetworkSource(
        teacher, context.num_classes, info, cache, inputs, own is not None, context.compute
    )
    return source.to(context.device)


def _student_inputs(context: SourceContext) -> TeacherInputs:
    """The student's un-augmented training inputs (what a cached teacher reads)."""
    data = context.data
    transform = data.batch_transform(AugmentConfig(enabled=False))
    return TeacherInputs(data.splits.train.inputs, transform, data.example_input())


def _own_inputs(run: str, data: PreparedData, context: SourceContext) -> TeacherInputs:
    """The teacher reads its own encoding of each sample: its outputs are computed once per
    sample and cached by sample index, which needs training inputs that never change."""
    if context.augmented:
        raise UserError(
            f"teacher run {run} reads its own encoding of the texts ({data.input_text()}), so "
            "it cannot see this run's augmented inputs; set --set augment.token_dropout=0 or "
            "--set augment.enabled=false."
        )
    transform = data.batch_transform(AugmentConfig(enabled=False))
    return TeacherInputs(data.splits.train.inputs, transform, data.example_input())


def _check_compatible(run: str, config: TrainConfig, context: SourceContext) -> PreparedData:
    """The teacher's classes, modality, inputs, dataset and split must be the student's.

    Returns the student's samples as the teacher reads them: the student's own data when the
    teacher reads the same inputs, else the same samples in the teacher's encoding (a model
    with its own tokenizer, or a word-level model taught to one)."""
    spec = get_spec(config.data.name)
    data = config.data
    fix = f"pass --teacher a run trained on {context.dataset} with this run's data settings."
    if spec.num_classes is not None and spec.num_classes != context.num_classes:
        raise UserError(
            f"teacher run {run} is for {spec.num_classes} classes ({data.name}) but this run has "
            f"{context.num_classes} classes ({context.dataset}); {fix}"
        )
    ours = context.data.spec.modality
    if spec.modality != ours:
        raise UserError(
            f"teacher run {run} was trained on {spec.modality} data ({data.name}), this run "
            f"uses {ours} data ({context.dataset}); {fix}"
        )
    theirs = context.data.inputs_for(input_tokenizer(config.student), Path(run), data)
    mismatch = theirs.input_mismatch(Path(run), data)
    if mismatch:
        raise UserError(
            f"teacher run {run} ({data.name}) cannot read this run's inputs ({context.dataset}): "
            f"{mismatch}; {fix}"
        )
    if data.name != context.dataset:
        raise UserError(
            f"teacher run {run} was trained on {data.name}, this run uses {context.dataset}; {fix}"
        )
    own = context.data_config
    ours_split = {"val_fraction": own.val_fraction, "split_seed": own.split_seed}
    theirs_split = {"val_fraction": data.val_fraction, "split_seed": data.split_seed}
    if theirs_split != ours_split:
        raise UserError(
            f"teacher run {run} held out another validation split ({theirs_split}, this run "
            f"{ours_split}), so it trained on this run's validation samples; {fix}"
        )
    check_data(run_folder(run), context.data.fingerprint(), f"teacher run {run}", fix)
    return theirs


def _check_same_architecture(run: str, teacher: str, student: str) -> None:
    if teacher != student:
        raise UserError(
            f"Tf-KD self-training needs a teacher of the student's architecture: {run} holds a "
            f"{teacher}, this run trains a {student}; train a {student} with --method ce "
            "first, or use --method kd for another teacher."
        )


_RETRAIN = "pass --teacher a run trained on this run's dataset."


def _build_teacher(
    run: str, name: str, trained: TrainedRun, context: SourceContext, data: PreparedData
) -> nn.Module:
    """The teacher network, built for the inputs it reads (``data``), with the checkpoint's
    weights, checked on a probe batch."""
    model = build_model(name, context.num_classes, **data.model_input)
    expected = f"a {name} with {context.num_classes} classes reading {data.input_text()}"
    load_weights(model, trained, expected, _RETRAIN)
    model.eval()
    try:
        with torch.no_grad():
            out = model(data.example_input(2))
    except RuntimeError as exc:
        raise UserError(
            f"teacher {name} of {run} cannot read {data.input_text()} ({first_line(exc)}); "
            f"{_RETRAIN}"
        ) from None
    if out.ndim != 2 or out.shape[1] != context.num_classes:
        raise UserError(
            f"teacher {name} of {run} gives outputs of shape {tuple(out.shape[1:])}, this run "
            f"has {context.num_classes} classes; {_RETRAIN}"
        )
    return model


def _teacher_info(run: str, trained: TrainedRun, config: TrainConfig) -> dict[str, Any]:
    """The teacher's accuracy at the loaded checkpoint, from summary.json or the checkpoint."""
    record, epoch = trained.record()
    return {
        "run": str(trained.path),
        "checkpoint": trained.kind,
        "student": config.student,
        "dataset": config.data.name,
        "epoch": epoch,
        "val_top1": record.get("val_top1"),
        "test_top1": record.get("test_top1"),
        "finished": trained.finished,
    }


def _teacher_line(info: dict[str, Any]) -> str:
    return (
        f"teacher {info['student']} from {info['run']}: val {format_percent(info['val_top1'])} "
        f"test {format_percent(info['test_top1'])} ({info['checkpoint']} epoch {info['epoch']})"
    )
