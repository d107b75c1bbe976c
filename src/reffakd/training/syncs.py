"""A sentinel for host syncs: the ops that make the host wait for a GPU.

Under :class:`SyncSentinel` every op that needs a device value on the host is recorded with
the line of reffakd that called it: reading a scalar, ``nonzero``, ``is_nonzero``,
``masked_select`` and boolean-mask indexing. On the CPU these ops are cheap, but they are the
ones that sync on a GPU, so a CPU run finds what a GPU run would wait on. An optimizer reading
its step counter is left out: that counter is a CPU tensor even for a GPU's parameters.
"""

from __future__ import annotations

import traceback
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING = {"_local_scalar_dense", "nonzero", "is_nonzero", "masked_select", "item"}
INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}


class SyncSentinel(TorchDispatchMode):
    """Records, in ``found``, each syncing op as ``"name at file:line"``; nothing while
    ``paused``."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.paused = False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
        name = func.overloadpacket.__name__
        syncs = name in SYNCING or (name in INDEXING and _masks(args))
        if syncs and not self.paused and not _step_counter(name, args):
            self.found.append(f"{name} at {_caller()}")
        return func(*args, **(kwargs or {}))


def _masks(args: Any) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


def _step_counter(name: str, args: Any) -> bool:
    """An optimizer reading its step count: a CPU tensor even for a GPU's parameters (torch's
    default, not capturable or fused), so reading it never waits for the GPU."""
    if name != "_local_scalar_dense" or args[0].ndim != 0:
        return False
    return any("/torch/optim/" in frame.filename for frame in traceback.extract_stack())


def _caller() -> str:
    frames = [f for f in traceback.extract_stack() if "/reffakd/" in f.filename]
    return f"{frames[-1].filename.split('/reffakd/')[-1]}:{frames[-1].lineno}" if frames else "?"
