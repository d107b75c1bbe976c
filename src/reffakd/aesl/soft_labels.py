"""The soft-label file: a C×C table, the similarity it came from, and how it was made."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reffakd.errors import UserError
from reffakd.files import atomic_write_bytes


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
        buffer = io.BytesIO()
        payload = {"soft_labels": self.table, "similarity": self.similarity, "meta": self.meta}
        torch.save(payload, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> SoftLabels:
        path = _soft_label_file(Path(path))
        if not path.is_file():
            raise UserError(
                f"soft-label file {path} not found; make one with "
                "`reffakd soft-labels --dataset NAME --out DIR` and pass DIR/soft_labels.pt."
            )
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unpickling failure means the same thing to the user
            raise UserError(
                f"cannot read soft-label file {path} ({type(exc).__name__}); it is not a file "
                "written by `reffakd soft-labels`. Regenerate it."
            ) from None
        table = payload.get("soft_labels") if isinstance(payload, dict) else None
        if not isinstance(table, Tensor) or not table.is_floating_point():
            found = type(payload).__name__ if table is None else type(table).__name__
            raise UserError(
                f"soft-label file {path} holds a {found}, not a soft-label table; pass the "
                "soft_labels.pt written by `reffakd soft-labels`."
            )
        similarity = payload.get("similarity")
        meta = payload.get("meta")
        return cls(
            table.to(torch.float32),
            similarity if isinstance(similarity, Tensor) else None,
            meta if isinstance(meta, dict) else {},
        )

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


def _soft_label_file(path: Path) -> Path:
    """``path``, or for a folder the soft labels of the run it holds: a `reffakd soft-labels`
    run's ``soft_labels.pt``, or those a training run made inline (``ae/soft_labels.pt``)."""
    if not path.is_dir():
        return path
    for candidate in (path / "soft_labels.pt", path / "ae" / "soft_labels.pt"):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"folder {path} holds no soft_labels.pt; pass a `reffakd soft-labels` run directory "
        "(or its soft_labels.pt), or make one with `reffakd soft-labels --dataset NAME --out DIR`."
    )
