"""reffakd: teacher-free knowledge distillation in PyTorch.

Python API (the CLI is a thin layer over it)::

    from reffakd import TrainConfig, train_student
    config = TrainConfig(method="reffakd", student="lenet5")
    summary = train_student(config, "runs/my-run")       # a RunSummary (summary.json)
    print(summary.best["test_top1"], summary.last["test_top1"])

In your own training loop::

    import reffakd
    soft_labels = reffakd.AESL.fit((images, labels), num_classes=10)
    criterion = reffakd.ReffAKDLoss(soft_labels)          # or KDLoss(teacher), DKDLoss, ...
    loss = criterion(model(inputs), targets)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ComputeConfig": "reffakd.config",
    "DataConfig": "reffakd.config",
    "OptimConfig": "reffakd.config",
    "SoftLabelConfig": "reffakd.config",
    "TrainConfig": "reffakd.config",
    "SoftLabels": "reffakd.aesl.soft_labels",
    "make_soft_labels": "reffakd.aesl.autoencoder",
    "prepare_data": "reffakd.data.prepare",
    "train_student": "reffakd.distill.train",
    "RunSummary": "reffakd.training.summary",
    "read_summary": "reffakd.training.summary",
    "build_model": "reffakd.models",
    "AESL": "reffakd.aesl.fit",
    "ReffAKDLoss": "reffakd.aesl.loss",
    "DistillationLoss": "reffakd.kd.loss_criteria",
    "KDLoss": "reffakd.kd.loss_criteria",
    "DKDLoss": "reffakd.kd.loss_criteria",
    "DISTLoss": "reffakd.kd.loss_criteria",
    "NKDLoss": "reffakd.kd.loss_criteria",
    "USKDLoss": "reffakd.kd.loss_criteria",
    "LabelSmoothingLoss": "reffakd.kd.loss_criteria",
    "TfKDVirtualLoss": "reffakd.kd.loss_criteria",
    "PSKD": "reffakd.kd.source_selfkd",
    "write_report": "reffakd.experiments.report",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reffakd' has no attribute {name!r}")
