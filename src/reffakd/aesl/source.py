"""The ``aesl`` teacher-signal source: ReffAKD's soft labels, one fixed row per class.

The rows come from a soft-label file (``soft_labels``, made by ``reffakd soft-labels``) or are
made inside the student's run directory (``RUN/ae/``), and reused from there on resume.
"""

from __future__ import annotations

from typing import Any

import torch

from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.aesl.heatmap import save_heatmap
from reffakd.aesl.similarity import require_two_per_class
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.files import atomic_write_bytes
from reffakd.kd.loss_functional import probs_to_logits
from reffakd.kd.source_base import SOURCES, SignalRecord, SourceContext
from reffakd.kd.source_teachers import ClassTableSource

AE_DIR = "ae"
RECORDED_META = (
    "dataset",
    "boost",
    "temperature",
    "samples_per_class",
    "embedding_dim",
    "entropy_bits",
    "ae_epochs",
    "ae_weights_sha256",
    "embedder",
)


class AESLSource(ClassTableSource):
    """Row y of the AESL table is the target for every sample of class y."""

    def __init__(
        self, context: SourceContext, labels: SoftLabels | None, file: str | None = None
    ) -> None:
        c = context.num_classes
        super().__init__(labels.table if labels is not None else torch.full((c, c), 1.0 / c))
        self.context = context
        self.labels = labels
        self.file = file

    def setup(self) -> None:
        """Make the soft labels in ``RUN/ae`` when no file was given (or load them, when they
        were made already); keep a copy in the run."""
        context = self.context
        if self.labels is None:
            self.labels = make_soft_labels(
                context.ae,
                context.run_dir / AE_DIR,
                resume=True,
                data=context.data,
                compute=context.compute,
            )
            self.log_table.copy_(probs_to_logits(self.labels.table.to(torch.float32)))
        if context.writes:
            self._keep_copy()

    def _keep_copy(self) -> None:
        """The table and its heatmap in the run directory."""
        context = self.context
        assert self.labels is not None
        self.labels.save(context.run_dir / "soft_labels.pt")
        heatmap = context.run_dir / AE_DIR / "soft_labels.png"
        if heatmap.exists():
            atomic_write_bytes(context.run_dir / "soft_labels.png", heatmap.read_bytes())
        else:
            save_heatmap(
                self.labels, context.run_dir / "soft_labels.png", f"AESL, {context.dataset}"
            )

    def record(self) -> SignalRecord:
        meta = self.labels.meta if self.labels is not None else {}
        info: dict[str, Any] = {k: meta[k] for k in RECORDED_META if k in meta}
        info["file"] = self.file
        return SignalRecord("soft_labels", info, meta.get("cost", {}).get("phases", []))


@SOURCES.register("aesl")
def aesl_source(context: SourceContext, soft_labels: str | None = None) -> AESLSource:
    """ReffAKD: rows of an AESL file (``soft_labels``), or labels made in this run's ``ae/``."""
    if not soft_labels:  # made in setup(): check now what the autoencoder run would refuse
        require_two_per_class(context.data.splits.train.labels, context.class_names)
        return AESLSource(context, None)
    labels = SoftLabels.load(soft_labels)
    labels.validate(context.num_classes, context.class_names, str(soft_labels))
    return AESLSource(context, labels, str(soft_labels))
