"""reffakd: teacher-free knowledge distillation in PyTorch.

Python API (the CLI is a thin layer over it)::

    from reffakd import TrainConfig, train_student
    config = TrainConfig(method="reffakd", student="lenet5")
    summary = train_student(config, "runs/my-run")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DataConfig": "reffakd.config",
    "OptimConfig": "reffakd.config",
    "SoftLabelConfig": "reffakd.config",
    "TrainConfig": "reffakd.config",
    "make_soft_labels": "reffakd.pipeline",
    "prepare_data": "reffakd.pipeline",
    "train_student": "reffakd.pipeline",
    "build_model": "reffakd.models",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reffakd' has no attribute {name!r}")
