"""What a run records about its data, to refuse a resume or a teacher on other data.

Two datasets of the same shape and class count (two image folders, two label files) build the
same models, so nothing else notices when ``--data-dir`` points at another one. The fingerprint
(``data.json`` in a run directory) holds the class names, the split sizes and a hash of each
split's labels; :func:`fingerprint_difference` names what differs. A run without the file (made
before it existed) has nothing to compare and is accepted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reffakd.files import write_json

FINGERPRINT_FILE = "data.json"
SPLITS = ("train", "val", "test")


def data_fingerprint(splits: Any) -> dict[str, Any]:
    """Class names, split sizes and the SHA-256 of each split's int64 labels, in order."""
    return {
        "class_names": [str(name) for name in splits.class_names],
        "split_sizes": dict(splits.sizes()),
        "labels_sha256": {name: _labels_hash(getattr(splits, name).labels) for name in SPLITS},
    }


def _labels_hash(labels: Tensor) -> str:
    data = labels.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def fingerprint_difference(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """What differs between two fingerprints, in words, or None when they match."""
    old_names, new_names = recorded.get("class_names"), current.get("class_names")
    if old_names != new_names:
        return f"class names {_short(old_names)} -> {_short(new_names)}"
    old_sizes, new_sizes = recorded.get("split_sizes") or {}, current.get("split_sizes") or {}
    sizes = [
        f"{s} {old_sizes.get(s)} -> {new_sizes.get(s)}"
        for s in SPLITS
        if old_sizes.get(s) != new_sizes.get(s)
    ]
    if sizes:
        return "split sizes " + ", ".join(sizes)
    old_hash, new_hash = recorded.get("labels_sha256") or {}, current.get("labels_sha256") or {}
    changed = [s for s in SPLITS if old_hash.get(s) != new_hash.get(s)]
    if changed:
        splits = f"{'/'.join(changed)} split{'s' if len(changed) > 1 else ''}"
        return f"other labels in the {splits} at the same sizes"
    return None


def _short(names: Any, shown: int = 6) -> str:
    if not isinstance(names, list) or len(names) <= shown:
        return repr(names)
    listed = ", ".join(repr(name) for name in names[:shown])
    return f"[{listed}, ...] ({len(names)} classes)"


def read_fingerprint(folder: Path) -> dict[str, Any] | None:
    """The fingerprint a run recorded, or None when it has none (or it is unreadable)."""
    path = Path(folder) / FINGERPRINT_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def write_fingerprint(folder: Path, fingerprint: dict[str, Any]) -> None:
    write_json(Path(folder) / FINGERPRINT_FILE, fingerprint)
