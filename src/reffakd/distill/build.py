"""Building a student run from its config: every part made and checked before anything is
written, so a refused run leaves its folder as it found it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reffakd.config import TrainConfig, ae_config_for
from reffakd.data.loader import Transform
from reffakd.data.prepare import PreparedData, prepare_data
from reffakd.data.spec import get_spec
from reffakd.kd.methods import ResolvedMethod, resolve_method
from reffakd.kd.objectives import OBJECTIVES, Objective, build_objective
from reffakd.kd.signal import SOURCES, SourceContext, TeacherSource, build_source
from reffakd.models import MODELS, build_model
from reffakd.runtime import resolve_device, seed_everything


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


def validate_names(config: TrainConfig) -> ResolvedMethod:
    """Fail fast, before any data is read, on unknown dataset, method, source, loss or model."""
    get_spec(config.data.name)
    method = resolve_method(config.method, config.source, config.loss)
    if method.source is not None:
        SOURCES.get(method.source)
    OBJECTIVES.get(method.loss)
    if ":" not in config.student:
        MODELS.get(config.student)
    return method


def build_run(config: TrainConfig, run_dir: Path, data: PreparedData | None = None) -> StudentRun:
    """Read the data and build the student, the source and the loss; writes nothing."""
    absolute_paths(config.source)
    method = validate_names(config)
    device = resolve_device(config.device)
    data = data or prepare_data(config.data)
    transform = data.batch_transform(config.augment)
    seed_everything(config.seed)
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
        )
        source = build_source(method.source, method.source_options, context)
    objective = build_objective(method.loss, method.loss_options)
    return StudentRun(config, data, method, device, transform, student, source, objective)


def absolute_paths(source_options: dict[str, Any]) -> None:
    """Store file paths of the source absolute, so ``--resume`` works from any folder."""
    for key in ("run", "soft_labels"):
        if source_options.get(key):
            source_options[key] = str(Path(source_options[key]).resolve())
