"""Checkpoint files: written atomically by the engine, read back with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

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


RESUME_KEYS = ("epoch", "model", "optimizer", "scheduler", "history", "data_generator")


def check_checkpoint(path: Path, module: nn.Module) -> dict[str, Any]:
    """Load ``path`` and check, without changing anything, that a resume can continue from it:
    every entry a resume reads, a history, and ``module``'s weights (names and shapes).
    Returns the checkpoint."""
    state = load_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in state]
    problem = f"it has no {', '.join(missing)}" if missing else None
    if problem is None and not isinstance(state["history"], list):
        problem = "its history is not a list"
    if problem is None:
        problem = _weights_mismatch(state["model"], module)
    if problem:
        raise UserError(
            f"checkpoint {path} does not match this run ({problem}); it is corrupt or from "
            "another run: start a new run with a new --out."
        )
    return state


def _weights_mismatch(saved: Any, module: nn.Module) -> str | None:
    if not isinstance(saved, dict):
        return "its model state is not a mapping"
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(getattr(v, "shape", ())) for k, v in saved.items()}
    absent, extra = expected.keys() - found, found.keys() - expected
    for problem, keys in (("no weights for", absent), ("weights the model lacks:", extra)):
        if keys:
            first, *more = sorted(keys)
            return f"{problem} {first}" + (f" and {len(more)} more" if more else "")
    for key, shape in expected.items():
        if found[key] != shape:
            return f"{key} has shape {list(found[key])}, the model's is {list(shape)}"
    return None
