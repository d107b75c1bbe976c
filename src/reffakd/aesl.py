"""Autoencoder soft labels (AESL): class similarity, diagonal boost, softmax, file format.

Spec: docs/methods.md §2.4-2.6. With unit-normalised embeddings ê_i and class sums
M_c = Σ_{i∈c} ê_i:

* S[a][b] = (M_a · M_b) / (n_a n_b) for a ≠ b — the mean cosine over all cross-class pairs;
* S[c][c] = (M_c · M_c − Σ_{i∈c} ‖ê_i‖²) / (n_c (n_c − 1)) — the mean over pairs of distinct
  samples of class c (self-pairs removed).

That is O(N·d + C²·d) work instead of the reference's O(N²·d) pairwise loop. Then
``AESL = softmax((S + b·I) / τ, dim=1)``; row y is the soft target for class y.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from reffakd.data.dataset import stratified_order
from reffakd.errors import UserError


def class_similarity(embeddings: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean pairwise cosine similarity between classes, (C, C) float64. See module docstring.

    Classes may have different sample counts; every class needs at least two samples.
    A zero embedding has cosine 0 with everything.
    """
    if embeddings.dim() != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError("embeddings must be (N, d) and labels (N,)")
    # Normalising and pooling in float32 loses ~1e-7; the C×C products run in float64.
    unit = F.normalize(embeddings.to(torch.float32), dim=1, eps=1e-12)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    if bool((counts < 2).any()):
        missing = torch.nonzero(counts < 2).flatten().tolist()
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise UserError(
            f"class similarity needs at least 2 samples per class; {len(missing)} classes "
            f"({shown}) have fewer. Check the labels, or keep more training images per class "
            "(a smaller data.val_fraction)."
        )
    sums = torch.zeros(num_classes, unit.shape[1]).index_add_(0, labels, unit).to(torch.float64)
    self_sq = torch.zeros(num_classes).index_add_(0, labels, (unit * unit).sum(dim=1))
    self_sq = self_sq.to(torch.float64)
    pair_sums = sums @ sums.T
    pair_counts = torch.outer(counts, counts)
    diag_sums = pair_sums.diagonal() - self_sq
    pair_sums.diagonal().copy_(diag_sums)
    pair_counts.diagonal().copy_(counts * (counts - 1))
    return pair_sums / pair_counts


def soft_labels_from_similarity(
    similarity: Tensor, boost: float = 0.0, temperature: float = 1.0
) -> Tensor:
    """Row softmax of ``(S + boost·I) / temperature``, float32 (C, C)."""
    if temperature <= 0:
        raise UserError(f"soft-label temperature must be > 0, got {temperature}")
    boosted = similarity + boost * torch.eye(similarity.shape[0], dtype=similarity.dtype)
    return torch.softmax(boosted / temperature, dim=1).to(torch.float32)


def sample_per_class(labels: Tensor, k: int, seed: int, num_classes: int) -> Tensor:
    """Sorted indices of ``k`` samples per class (all of a class if it has fewer), drawn with
    ``seed``."""
    by_class, rank = stratified_order(labels, seed, num_classes)
    return torch.sort(by_class[rank < k]).values


def weights_hash(state_dict: dict[str, Tensor]) -> str:
    """sha256 over parameter names and raw bytes: identifies the AE that made the labels."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class SoftLabels:
    """A C×C soft-label table and the record of how it was made."""

    table: Tensor
    similarity: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.table.shape[0]

    def save(self, path: Path) -> None:
        from reffakd.utils import atomic_write_bytes

        buffer = io.BytesIO()
        payload = {"soft_labels": self.table, "similarity": self.similarity, "meta": self.meta}
        torch.save(payload, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> SoftLabels:
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"soft-label file {path} not found; make one with "
                "`reffakd soft-labels --dataset NAME --out DIR` and pass DIR/soft_labels.pt."
            )
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            table = payload["soft_labels"]
        except Exception as exc:  # any unpickling failure means the same thing to the user
            raise UserError(
                f"cannot read soft-label file {path} ({type(exc).__name__}); it is not a file "
                "written by `reffakd soft-labels`. Regenerate it."
            ) from None
        return cls(table.to(torch.float32), payload.get("similarity"), payload.get("meta") or {})

    def validate(
        self, num_classes: int, class_names: list[str] | None = None, path: str = ""
    ) -> None:
        """Check shape, finiteness and that every row is a probability distribution."""
        where = f" {path}" if path else ""
        table = self.table
        if table.dim() != 2 or tuple(table.shape) != (num_classes, num_classes):
            raise UserError(
                f"soft-label file{where} has shape {tuple(table.shape)} but the dataset has "
                f"{num_classes} classes; make soft labels for this dataset with "
                "`reffakd soft-labels --dataset NAME`."
            )
        row_sums = table.sum(dim=1)
        if (
            not bool(torch.isfinite(table).all())
            or bool((table < 0).any())
            or not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-4)
        ):
            raise UserError(
                f"soft-label file{where}: rows are not probability distributions (each row must "
                "be non-negative and sum to 1); regenerate it with `reffakd soft-labels`."
            )
        names = self.meta.get("class_names")
        if class_names is not None and names is not None and list(names) != list(class_names):
            raise UserError(
                f"soft-label file{where} was made for classes {names[:3]}... of dataset "
                f"{self.meta.get('dataset')!r}, not this dataset's {class_names[:3]}...; "
                "use soft labels made for this dataset."
            )


def save_heatmap(labels: SoftLabels, path: Path, title: str = "AESL soft labels") -> None:
    """Write a labelled heatmap of the soft-label table as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = labels.table.numpy()
    names = labels.meta.get("class_names") or [str(i) for i in range(len(table))]
    size = min(4 + 0.45 * len(table), 24)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(table, cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="probability")
    if len(table) <= 40:
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        if len(table) <= 12:
            for (row, col), value in _cells(table):
                ax.text(
                    col,
                    row,
                    f"{value:.3f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if value < table.max() * 0.6 else "black",
                )
    ax.set_xlabel("class (soft-label mass)")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    from reffakd.utils import atomic_write_bytes

    atomic_write_bytes(Path(path), buffer.getvalue())


def _cells(table: Any) -> Any:
    rows, cols = table.shape
    return (((r, c), float(table[r, c])) for r in range(rows) for c in range(cols))


def entropy_bits(table: Tensor) -> float:
    """Mean row entropy in bits: how flat the soft labels are (log2 C is uniform)."""
    p = table.clamp_min(1e-12)
    return float((-(p * p.log()).sum(dim=1) / math.log(2)).mean())
