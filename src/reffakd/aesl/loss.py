"""``ReffAKDLoss``: ReffAKD's criterion for your own training loop.

::

    labels = AESL.fit(train_data, num_classes=10)         # or SoftLabels.load(path)
    criterion = ReffAKDLoss(labels)                       # alpha 0.3, T 4 (preset reffakd)
    loss = criterion(model(x), y)

It is the engine's ``reffakd`` method: the AESL row of each sample's label as a class-level
teacher signal (a :class:`~reffakd.kd.source_teachers.ClassTableSource`) and the KD objective
with only the student softened (teacher temperature 1), i.e.
``(1 - alpha) CE(z, y) + alpha T² KL(AESL[y] || softmax(z / T))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from reffakd.aesl.soft_labels import SoftLabels
from reffakd.kd.loss_criteria import DistillationLoss


class ReffAKDLoss(DistillationLoss):
    """``criterion(logits, labels)`` with AESL soft labels (a :class:`SoftLabels`, a (C, C)
    tensor, or the path of a soft-label file). Options left at None keep the ``reffakd``
    preset's (``reffakd list methods``); ``reduction`` is ``batchmean`` (true KL) or ``mean``
    (KL / C, the reference code's)."""

    def __init__(
        self,
        soft_labels: SoftLabels | Tensor | str | Path,
        alpha: float | None = None,
        temperature: float | None = None,
        reduction: str | None = None,
        **loss_options: Any,
    ) -> None:
        if isinstance(soft_labels, str | Path):
            soft_labels = SoftLabels.load(soft_labels)
        if isinstance(soft_labels, SoftLabels):
            soft_labels.validate(soft_labels.num_classes)
        given = {"alpha": alpha, "temperature": temperature, "reduction": reduction}
        options = {k: v for k, v in given.items() if v is not None}
        built = DistillationLoss.from_method(
            "reffakd", soft_labels=soft_labels, **options, **loss_options
        )
        super().__init__(built.source, built.objective)
