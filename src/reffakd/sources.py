"""Teacher-signal sources: per batch, the teacher's logits for the batch's samples.

Class-level sources (``aesl``, ``smooth``, ``virtual``) hold a fixed distribution per class and
return its log-probabilities, so every logit-based loss accepts them (docs/methods.md §1.4). Network
sources (``teacher``, ``self``) run a frozen network on the same augmented batch as the student.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reffakd.aesl import SoftLabels
from reffakd.config import TrainConfig
from reffakd.errors import UserError
from reffakd.losses import probs_to_logits
from reffakd.registry import Registry
from reffakd.utils import format_percent


@dataclass
class TeacherSignal:
    """``logits``: (B, C). For class-level sources they are log-probabilities."""

    logits: Tensor
    class_level: bool


@dataclass
class SourceContext:
    """What a source may need to set itself up.

    ``student`` is the student's model name (the ``self`` source checks it). ``extra`` carries
    optional facts from the pipeline (``augment_enabled``: whether training batches are augmented;
    ``split``: the ``val_fraction``/``split_seed`` of the student's data) and collects what a
    source wants recorded (``soft_labels``, ``teacher``).
    """

    dataset: str
    num_classes: int
    class_names: list[str]
    in_channels: int
    image_size: int
    run_dir: Path
    device: torch.device
    make_soft_labels: Callable[[], SoftLabels] | None = None
    student: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class TeacherSource(nn.Module):
    """Base class. ``class_level`` sources give one fixed distribution per class."""

    class_level = False

    def freeze(self) -> None:
        """Keep every network of the source in eval mode without gradients."""
        for module in self.modules():
            if module is not self:
                module.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)


class ClassTableSource(TeacherSource):
    """A fixed (C, C) table of class distributions; row y is the target for label y."""

    class_level = True

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("log_table", probs_to_logits(table.to(torch.float32)))

    def forward(self, images: Tensor, labels: Tensor, indices: Tensor) -> TeacherSignal:
        return TeacherSignal(self.log_table[labels], class_level=True)


# LW-KD's source registers itself from reffakd.lwkd (docs/lwkd.md).
SOURCES: Registry[Callable[..., TeacherSource]] = Registry(
    "teacher-signal source", autoload=("reffakd.lwkd",)
)


def build_source(name: str, options: dict[str, Any], context: SourceContext) -> TeacherSource:
    factory = SOURCES.get(name)
    try:
        return factory(context, **options)
    except TypeError as exc:
        raise UserError(f"bad options for source {name!r}: {exc}") from None


@SOURCES.register("aesl")
def aesl_source(context: SourceContext, soft_labels: str | None = None) -> ClassTableSource:
    """ReffAKD: rows of an AESL file (``soft_labels``), or labels made in this run's ``ae/``."""
    if soft_labels:
        labels = SoftLabels.load(soft_labels)
        labels.validate(context.num_classes, context.class_names, str(soft_labels))
    elif context.make_soft_labels is not None:
        labels = context.make_soft_labels()
    else:
        raise UserError("the aesl source needs --soft-labels FILE (from `reffakd soft-labels`).")
    context.extra["soft_labels"] = labels
    return ClassTableSource(labels.table)


@SOURCES.register("smooth")
def smooth_source(context: SourceContext, eps: float = 0.1) -> ClassTableSource:
    """Label smoothing: 1 - eps on the true class, eps / (C - 1) elsewhere."""
    if not 0.0 <= eps < 1.0:
        raise UserError(f"label smoothing eps must be in [0, 1), got {eps}")
    c = context.num_classes
    table = torch.full((c, c), eps / (c - 1))
    table.fill_diagonal_(1.0 - eps)
    return ClassTableSource(table)


@SOURCES.register("virtual")
def virtual_source(
    context: SourceContext, a: float = 0.99, temperature: float = 20.0
) -> ClassTableSource:
    """Tf-KD virtual teacher: p_d = a on the true class, (1 - a)/(C - 1) elsewhere, then
    softened as in the reference code: softmax(p_d / temperature)."""
    c = context.num_classes
    virtual = torch.full((c, c), (1.0 - a) / (c - 1))
    virtual.fill_diagonal_(a)
    return ClassTableSource(torch.softmax(virtual / temperature, dim=1))


# ---------------------------------------------------------------------------- network sources
class NetworkSource(TeacherSource):
    """A trained, frozen network. It runs in eval mode without gradients on the very batch the
    student sees (augmented or not), or, with ``cache``, on each training sample once.

    The cache is keyed by sample index (``indices``: positions in the train split), never by
    batch position, so shuffling cannot mix rows (docs/methods.md §3.5). It is only correct when a
    sample always gives the same input, i.e. without augmentation; the factories enforce that.
    """

    def __init__(self, teacher: nn.Module, num_classes: int, cache: bool = False) -> None:
        super().__init__()
        self.teacher = teacher
        self.cache_enabled = cache
        self.info: dict[str, Any] = {}
        self.register_buffer("cache", torch.zeros(0, num_classes), persistent=False)
        self.register_buffer("filled", torch.zeros(0, dtype=torch.bool), persistent=False)
        self.freeze()

    def train(self, mode: bool = True) -> NetworkSource:
        """Whatever the mode asked for, the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def teacher_logits(self, images: Tensor) -> Tensor:
        return self.teacher(images)

    def forward(self, images: Tensor, labels: Tensor, indices: Tensor) -> TeacherSignal:
        if self.cache_enabled:
            return TeacherSignal(self._cached(images, indices), class_level=False)
        return TeacherSignal(self.teacher_logits(images), class_level=False)

    def _cached(self, images: Tensor, indices: Tensor) -> Tensor:
        """Rows of the cache for ``indices``, running the teacher on the samples not seen yet."""
        self._reserve(int(indices.max()) + 1)
        missing = ~self.filled[indices]
        if missing.any():
            new = indices[missing]
            self.cache[new] = self.teacher_logits(images[missing]).to(self.cache.dtype)
            self.filled[new] = True
        return self.cache[indices]

    def _reserve(self, size: int) -> None:
        """Grow the cache (doubling) so that it holds at least ``size`` samples."""
        held = self.filled.shape[0]
        if size <= held:
            return
        size = max(size, 2 * held)
        cache = self.cache.new_zeros(size, self.cache.shape[1])
        filled = self.filled.new_zeros(size)
        cache[:held], filled[:held] = self.cache, self.filled
        self.cache, self.filled = cache, filled


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
    from reffakd.pipeline import load_run_config

    if not run:
        raise UserError("this method needs a trained teacher: pass --teacher RUN_DIR.")
    _check_cache_allowed(context, cache)
    run_dir, path = _locate_checkpoint(run, checkpoint)
    config = load_run_config(run_dir)
    _check_compatible(run, config, context)
    if same_architecture:
        _check_same_architecture(run, config.student, context.student)
    state = _load_state(path)
    teacher = _build_teacher(run, config.student, state, context)
    source = NetworkSource(teacher, context.num_classes, cache)
    source.info = _teacher_info(run, run_dir, path, config, state)
    source.info["parameters"] = sum(p.numel() for p in teacher.parameters())
    context.extra["teacher"] = source.info
    print(_teacher_line(source.info))
    return source.to(context.device)


def _check_cache_allowed(context: SourceContext, cache: bool) -> None:
    if cache and context.extra.get("augment_enabled") is not False:
        raise UserError(
            "teacher outputs may only be cached for un-augmented inputs (an augmented sample "
            "differs every epoch); set --set augment.enabled=false or drop source.cache."
        )


def _locate_checkpoint(run: str, checkpoint: str) -> tuple[Path, Path]:
    """(run directory, checkpoint file) for a run directory or a ``.pt`` file inside one."""
    path = Path(run)
    if path.suffix == ".pt":
        if not path.is_file():
            raise UserError(f"teacher checkpoint {run} not found; check the path.")
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run_dir, path
    if checkpoint not in ("best", "last"):
        raise UserError(f"teacher checkpoint must be best or last, got {checkpoint!r}.")
    if not path.is_dir():
        raise UserError(
            f"teacher run {run} not found; pass the run directory of a `reffakd train` run."
        )
    file = path / "checkpoints" / f"{checkpoint}.pt"
    if not file.exists():
        raise UserError(
            f"teacher run {run} has no checkpoints/{checkpoint}.pt; finish its training "
            f"first (reffakd train --resume {run})."
        )
    return path, file


def _check_compatible(run: str, config: TrainConfig, context: SourceContext) -> None:
    """The teacher's classes, channels, image size, dataset and split must be the student's."""
    from reffakd.data.catalog import get_spec

    spec = get_spec(config.data.name)
    data = config.data
    fix = f"pass --teacher a run trained on {context.dataset} with this run's data settings."
    checks = (
        ("{} classes", spec.num_classes, context.num_classes),
        ("{} input channels", spec.in_channels, context.in_channels),
        ("{0}x{0} images", data.image_size or spec.default_image_size, context.image_size),
    )
    for what, theirs, ours in checks:
        if theirs is not None and theirs != ours:
            raise UserError(
                f"teacher run {run} is for {what.format(theirs)} ({data.name}) but this run has "
                f"{what.format(ours)} ({context.dataset}); {fix}"
            )
    if data.name != context.dataset:
        raise UserError(
            f"teacher run {run} was trained on {data.name}, this run uses {context.dataset}; {fix}"
        )
    split = context.extra.get("split")
    theirs = {"val_fraction": data.val_fraction, "split_seed": data.split_seed}
    if split is not None and dict(split) != theirs:
        raise UserError(
            f"teacher run {run} held out another validation split ({theirs}, this run {split}), "
            f"so it trained on this run's validation samples; {fix}"
        )


def _check_same_architecture(run: str, teacher: str, student: str) -> None:
    if not student:
        raise RuntimeError("SourceContext.student is empty: the pipeline must pass the student")
    if teacher != student:
        raise UserError(
            f"Tf-KD self-training needs a teacher of the student's architecture: {run} holds a "
            f"{teacher}, this run trains a {student}; train a {student} with --method ce "
            "first, or use --method kd for another teacher."
        )


def _load_state(path: Path) -> dict[str, Any]:
    from reffakd.engine import load_checkpoint

    return load_checkpoint(path)


def _build_teacher(run: str, name: str, state: dict[str, Any], context: SourceContext) -> nn.Module:
    """The teacher network with the checkpoint's weights, checked on a probe batch."""
    from reffakd.models import build_model

    model = build_model(name, context.num_classes, context.in_channels, context.image_size)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise UserError(
            f"teacher checkpoint of {run} does not fit a {name} with {context.num_classes} "
            f"classes and {context.in_channels} channels ({_first_line(exc)}); {_RETRAIN}"
        ) from None
    model.eval()
    size = context.image_size
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, context.in_channels, size, size))
    except RuntimeError as exc:
        raise UserError(
            f"teacher {name} of {run} cannot take {context.in_channels}x{size}x{size} inputs "
            f"({_first_line(exc)}); {_RETRAIN}"
        ) from None
    if out.ndim != 2 or out.shape[1] != context.num_classes:
        raise UserError(
            f"teacher {name} of {run} gives outputs of shape {tuple(out.shape[1:])}, this run "
            f"has {context.num_classes} classes; {_RETRAIN}"
        )
    return model


_RETRAIN = "pass --teacher a run trained on this run's dataset."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _teacher_info(
    run: str, run_dir: Path, path: Path, config: TrainConfig, state: dict[str, Any]
) -> dict[str, Any]:
    """The teacher's accuracy at the loaded checkpoint, from summary.json or the checkpoint."""
    kind = "best" if "record" in state else "last"
    record, epoch = _checkpoint_record(state)
    summary_path = run_dir / "summary.json"
    finished = summary_path.exists()
    if finished and path.parent == run_dir / "checkpoints":
        try:
            summary = json.loads(summary_path.read_text())
            record = summary[kind]
            epoch = summary["best_epoch" if kind == "best" else "epochs"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return {
        "run": str(run),
        "checkpoint": kind,
        "student": config.student,
        "dataset": config.data.name,
        "epoch": epoch,
        "val_top1": record.get("val_top1"),
        "test_top1": record.get("test_top1"),
        "finished": finished,
    }


def _checkpoint_record(state: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """``best.pt`` holds the best epoch's ``record``; ``last.pt`` the whole ``history``."""
    if isinstance(state.get("record"), dict):
        return state["record"], state.get("epoch")
    history = state.get("history") or [{}]
    return history[-1], state.get("epoch")


def _teacher_line(info: dict[str, Any]) -> str:
    return (
        f"teacher {info['student']} from {info['run']}: val {format_percent(info['val_top1'])} "
        f"test {format_percent(info['test_top1'])} ({info['checkpoint']} epoch {info['epoch']})"
    )
