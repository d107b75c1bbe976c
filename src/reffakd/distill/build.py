"""Building a student run from its config: every part made and checked before anything is
written, so a refused run leaves its folder as it found it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reffakd.config import TrainConfig, ae_config_for
from reffakd.data.loader import Splits, Transform
from reffakd.data.prepare import prepare_data
from reffakd.data.prepared import PreparedData
from reffakd.data.spec import get_spec
from reffakd.data.user import USER_DATA
from reffakd.errors import UserError
from reffakd.kd.loss_objectives import Objective, build_objective
from reffakd.kd.methods import ResolvedMethod, resolve_method
from reffakd.kd.source_base import (
    SOURCES,
    SourceContext,
    TeacherSource,
    attach_student,
    build_source,
)
from reffakd.models import (
    build_model,
    canonical_model_name,
    check_model_name,
    input_tokenizer,
)
from reffakd.runtime import seed_everything
from reffakd.training.distributed import DistContext
from reffakd.training.precision import check_compiler, resolve_compute, set_deterministic
from reffakd.training.sinks import require_tensorboard


@dataclass
class StudentRun:
    """A student run ready to train: its data, networks, teacher signal and loss."""

    config: TrainConfig
    data: PreparedData
    method: ResolvedMethod
    device: torch.device
    transform: Transform
    student: nn.Module
    source: TeacherSource | None
    objective: Objective


def validate_names(
    config: TrainConfig, *, check_dataset: bool = True, check_student: bool = True
) -> ResolvedMethod:
    """Fail fast, before any data is read, on unknown dataset, method, source, loss or model,
    and on loss options of unknown names or wrong types.

    ``check_dataset`` / ``check_student`` are False when the data / the student module were
    passed as objects rather than named."""
    if check_dataset:
        _refuse_user_data(config)
        get_spec(config.data.name)
    method = resolve_method(config.method, config.source, config.loss)
    if method.source is not None:
        SOURCES.get(method.source)
    build_objective(method.loss, method.loss_options)  # its options' names and types
    if check_student:
        check_model_name(config.student)
    if config.tensorboard:
        require_tensorboard()
    return method


def _refuse_user_data(config: TrainConfig) -> None:
    if config.data.name == USER_DATA:
        raise UserError(
            "this run trained on data passed to train_student, which cannot be read again from "
            "the config: pass the same data again (train_student(..., data=...))."
        )


def build_run(
    config: TrainConfig,
    run_dir: Path,
    data: PreparedData | None = None,
    student: nn.Module | None = None,
    dist: DistContext | None = None,
) -> StudentRun:
    """Read the data and build the student, the source and the loss; writes nothing.

    ``data`` and ``student`` replace the named dataset and model when given; ``dist`` is the
    process's place in a torchrun job (default: a single process)."""
    dist = dist or DistContext()
    config = copy.deepcopy(config)  # the run's own copy, completed below; the caller's stays
    absolute_paths(config.source)
    config.student = canonical_model_name(config.student)
    method = validate_names(config, check_dataset=data is None, check_student=student is None)
    device = dist.device_for(config.device)
    config.compute = resolve_compute(config.compute, device)  # recorded as the concrete value
    check_compute(config, device, dist)
    # the student's tokenization (its own tokenizer, or the data's vocabulary) picks the encoding
    data = data or prepare_data(config.data, input_tokenizer(config.student))
    transform = data.batch_transform(config.augment)
    check_shards(config, data.splits, dist)
    seed_everything(config.seed)
    if student is None:
        student = build_model(config.student, data.splits.num_classes, **data.model_input)
    source = None
    if method.source is not None:
        context = SourceContext(
            data=data,
            data_config=config.data,
            run_dir=Path(run_dir),
            device=device,
            student=config.student,
            seed=config.seed,
            progress=config.progress,
            augmented=transform.augments,
            ae=ae_config_for(config),
            epochs=config.optim.epochs,
            writes=dist.is_main,
            compute=config.compute,
        )
        source = build_source(method.source, method.source_options, context)
        if source.adds_samples and dist.enabled:
            raise UserError(
                f"method {config.method!r} adds samples to each batch (CS-KD, DLB), which "
                "torchrun runs do not support yet: train it in one process."
            )
        attach_student(source, student)  # USKD's feature layer: refused before any write
    objective = build_objective(method.loss, method.loss_options)
    return StudentRun(config, data, method, device, transform, student, source, objective)


def absolute_paths(source_options: dict[str, Any]) -> None:
    """Store file paths of the source absolute, so ``--resume`` works from any folder."""
    for key in ("run", "soft_labels"):
        if source_options.get(key):
            source_options[key] = str(Path(source_options[key]).resolve())


def check_compute(config: TrainConfig, device: torch.device, dist: DistContext) -> None:
    """Refuse speed options this machine cannot run, before anything is read or written."""
    if config.compute.sync_bn and dist.enabled and device.type != "cuda":
        raise UserError(
            "--sync-bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); drop "
            "--sync-bn on CPU, where each process normalises with its own share of the batch."
        )
    if config.compute.compile:
        check_compiler(device)
    set_deterministic(config.compute.deterministic)  # before any network reaches the device


def check_shards(config: TrainConfig, splits: Splits, dist: DistContext) -> None:
    """Under torchrun the global batch must split evenly over the processes, and no process may
    go without samples in the last (smaller) batch."""
    if not dist.enabled:
        return
    batch, world = config.optim.batch_size, dist.world_size
    if batch % world:
        raise UserError(
            f"--batch-size {batch} (the global batch) does not split over {world} processes; "
            f"use a multiple of {world}."
        )
    last = len(splits.train) % batch
    if 0 < last < world:
        raise UserError(
            f"the last training batch would hold {last} sample(s), fewer than the {world} "
            f"processes; choose a --batch-size for which {len(splits.train)} % batch is 0 or "
            f">= {world}."
        )
