"""Low level: the teacher-signal contract. A typed context in, per-batch soft targets and a typed
record out.

A *source* makes the teacher's side of a method. It is built in two steps, so that a run can be
refused before anything is written:

1. ``factory(context, **options)`` checks the options and reads what it needs (a soft-label
   file, a teacher checkpoint); it writes nothing;
2. ``source.setup()`` does the expensive work that may write into the run directory (training
   an autoencoder or a light teacher). Under ``torchrun`` it runs on rank 0 first; the other
   ranks then call it with ``context.writes`` False and load what rank 0 made.

Per batch, ``source(inputs, labels, indices)`` returns a :class:`TeacherSignal`. Afterwards
``source.record()`` says what the signal was and what it cost (a :class:`SignalRecord`), and
``source.networks_per_batch()`` names the frozen networks that ran on every training batch,
which the cost accounting charges one forward pass per sample.

Self-distillation sources (PS-KD, OLS, DLB, Zipf's LS, CS-KD) make the signal from the student
itself. They set ``needs_student_logits`` and receive the student's detached outputs as
``student=StudentOutputs(...)``; they may keep per-sample or per-class state between batches
(``extra_state`` checkpoints it), roll it over in ``end_epoch``, and add training samples to a
batch (``extra_indices``: CS-KD's same-class partners, DLB's half of the previous batch).
USKD's source also reads a layer of the student: it is bound to the student once
(:func:`attach_student`) and holds a module trained with it (``trained_modules()``).
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reffakd.config import ComputeConfig, DataConfig, SoftLabelConfig
from reffakd.data.prepared import PreparedData
from reffakd.errors import UserError, UserTypeError
from reffakd.registry import Registry


@dataclass
class TeacherSignal:
    """``logits``: (B, C). For class-level sources they are log-probabilities.

    ``rows``: the signal covers ``student_logits[rows]`` only (DLB's repeated half); None: every
    row."""

    logits: Tensor
    class_level: bool
    rows: slice | None = None


@dataclass
class StudentOutputs:
    """What a self-distillation source sees of the student: its detached fp32 logits on the
    batch, and on the batch's extra samples when the source asked for some."""

    logits: Tensor
    extra: Tensor | None = None


@dataclass(frozen=True)
class SourceContext:
    """Everything a source may use to set itself up; all of it describes the student's run."""

    data: PreparedData
    data_config: DataConfig
    run_dir: Path
    device: torch.device
    student: str
    seed: int = 0
    progress: bool = False
    augmented: bool = True
    ae: SoftLabelConfig = field(default_factory=SoftLabelConfig)
    epochs: int = 1  # the student's schedule length (PS-KD's alpha grows over it)
    # False on the other processes of a torchrun job: rank 0 alone writes into the run directory
    writes: bool = True
    # the student run's resolved precision, which every network the source trains or runs uses
    compute: ComputeConfig = field(default_factory=lambda: ComputeConfig(precision="fp32"))

    @property
    def dataset(self) -> str:
        return self.data.spec.name

    @property
    def num_classes(self) -> int:
        return self.data.splits.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.data.splits.class_names)


@dataclass
class SignalRecord:
    """What a source recorded: ``info`` goes into the run summary under ``key``; ``phases`` are
    the cost phases that made the signal (training a teacher or an autoencoder, ...)."""

    key: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)


class TeacherSource(nn.Module):
    """Base class. Every network of a source is frozen: eval mode and no gradients, whatever
    mode the module around it is put in."""

    # True: ``forward`` takes ``student=StudentOutputs`` (the student's own detached logits)
    needs_student_logits = False
    # How the extra samples of ``extra_indices`` run: "separate" (one more student forward,
    # without gradient, whose logits arrive as ``StudentOutputs.extra``) or "joined" (appended
    # to the batch: the student trains on them and the loss sees them as more rows)
    extra_mode = "separate"
    adds_samples = False  # True when ``extra_indices`` returns samples (not yet under torchrun)

    def setup(self) -> None:
        """Expensive preparation that may write into the run directory (default: none)."""

    def record(self) -> SignalRecord:
        return SignalRecord()

    def networks_per_batch(self) -> dict[str, nn.Module]:
        """The frozen networks run on every training batch (default: none)."""
        return {}

    def network_samples(self, epochs: int, train_size: int) -> dict[str, int]:
        """How many samples each of :meth:`networks_per_batch` runs on over ``epochs`` epochs
        (default: every sample of every epoch; a cache keyed by sample runs each once)."""
        return dict.fromkeys(self.networks_per_batch(), epochs * train_size)

    def network_inputs(self) -> dict[str, Tensor]:
        """Example inputs (a batch of one) of networks that read other inputs than the student
        (e.g. their own tokenizer's ids), for cost counting; default: none."""
        return {}

    def set_epoch(self, epoch: int) -> None:
        """Called with the current epoch (from 1) before each batch's signal."""

    def end_epoch(self, epoch: int) -> None:
        """Called once every training batch of ``epoch`` has run, before its checkpoint."""

    def extra_indices(self, indices: Tensor, labels: Tensor) -> Tensor | None:
        """Training-set indices of samples to add to this batch (default: none)."""
        return None

    def extra_student_samples(self, epochs: int, train_size: int) -> dict[str, int]:
        """Student forward passes beyond one trained pass per sample, for cost counting:
        ``{"trained": n}`` more samples with gradient, ``{"no_grad": n}`` forwards only."""
        return {}

    def state_bytes(self) -> int:
        """Bytes of per-sample or per-class state the source keeps (PS-KD's N×C store)."""
        return 0

    def extra_state(self) -> dict[str, Any]:
        """State that resume needs (a prediction store, a random generator)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""

    def freeze(self) -> TeacherSource:
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> TeacherSource:
        return super().train(False)


def option_names(factory: Callable[..., Any], skip: int = 0) -> list[str]:
    """The keyword options ``factory`` accepts (after its first ``skip`` parameters)."""
    return list(option_defaults(factory, skip))


def option_defaults(factory: Callable[..., Any], skip: int = 0) -> dict[str, Any]:
    """``{option: its default}`` (``inspect.Parameter.empty`` when it has none)."""
    parameters = list(inspect.signature(factory).parameters.values())[skip:]
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    defaults = {p.name: p.default for p in parameters if p.kind in named}
    forwarded = getattr(factory, "forwards_options_to", None)
    return {**defaults, **(option_defaults(forwarded) if forwarded is not None else {})}


# An option whose default is one of these takes that kind of value: a list for alpha would
# otherwise crash a comparison deep inside the loss.
_KINDS: tuple[tuple[type, tuple[type, ...], str], ...] = (
    (bool, (bool,), "true or false"),
    (float, (numbers.Real,), "a number"),
    (int, (numbers.Integral,), "an integer"),
    (str, (str,), "text"),
)


def _type_problem(value: Any, default: Any) -> str | None:
    """What kind of value ``value`` should be, when it is not of its default's kind."""
    for kind, accepted, words in _KINDS:
        if isinstance(default, kind):
            wrong_bool = isinstance(value, bool) and kind is not bool
            return words if wrong_bool or not isinstance(value, accepted) else None
    return None


SourceFactory = Callable[..., TeacherSource]
# The aesl and lwkd sources register themselves from their packages (docs/methods.md).
SOURCES: Registry[SourceFactory] = Registry(
    "teacher-signal source",
    autoload=(
        "reffakd.kd.source_teachers",
        "reffakd.kd.source_selfkd",
        "reffakd.kd.method_uskd",
        "reffakd.aesl",
        "reffakd.lwkd",
    ),
    entry_points="reffakd.sources",
)


def build_source(name: str, options: dict[str, Any], context: SourceContext) -> TeacherSource:
    """Construct (and so validate) a source; nothing is written until ``setup()``."""
    factory = SOURCES.get(name)
    check_options(factory, options, f"source {name!r}", "source", skip=1)
    return factory(context, **options)


def check_options(
    factory: Callable[..., Any], options: dict[str, Any], what: str, section: str, skip: int = 0
) -> None:
    """Refuse option names that ``factory`` does not take, listing the ones it does, and
    numbers that are not finite (``--temperature nan``).

    A factory that passes ``**options`` on declares where with ``forwards_options_to``.
    """
    defaults = option_defaults(factory, skip)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(defaults), n=1)
        hint = f" (did you mean '{section}.{close[0]}'?)" if close else ""
        raise UserError(
            f"unknown option '{section}.{unknown[0]}' for {what}{hint}; "
            f"its options are: {', '.join(defaults) or 'none'}."
        )
    for name, value in options.items():
        expected = _type_problem(value, defaults[name])
        if expected is not None:
            raise UserTypeError(
                f"option '{section}.{name}' of {what} must be {expected}, got {value!r}; "
                f"fix it in the config file or --set."
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"option '{section}.{name}' of {what} must be finite, got {value}.")


def attach_student(source: TeacherSource | None, student: nn.Module) -> None:
    """Bind a source that reads the student's own layers (USKD's feature hook) to the student;
    other sources ignore it. Idempotent, so a run can check it early and the distiller again."""
    attach = getattr(source, "attach", None)
    if attach is not None:
        attach(student)
