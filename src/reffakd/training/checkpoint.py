"""Checkpoint files: written atomically by the engine, read back with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reffakd.errors import UserError

FORMAT = "reffakd-checkpoint/1"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by the engine; unreadable files raise UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint at {path}; there is nothing to resume in this directory.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "model" not in state:
            raise ValueError("not a reffakd checkpoint")
    except Exception as exc:  # any unpickling failure means the same thing to the user
        raise UserError(
            f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); "
            "delete the run directory and start again, or restore the file from a backup."
        ) from None
    return state
