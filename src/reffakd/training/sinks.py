"""Where the engine's per-epoch records go besides ``metrics.jsonl``: ``metrics.csv`` (the same
columns, rewritten atomically with it) and epoch sinks such as TensorBoard.

A sink is anything with ``write(record)`` and ``close()``; the trainer calls ``write`` once per
finished epoch with the record it logs (``epoch``, ``lr``, ``train_*``, ``val_*``, ``test_*``,
``seconds``). An empty sink list writes nothing, which is how a process that must not log (a
non-zero rank) opts out.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Protocol

from reffakd.errors import UserError

TENSORBOARD_DIR = "tensorboard"
INSTALL_TENSORBOARD = "pip install 'reffakd[tensorboard]' (or pip install tensorboard)"


class EpochSink(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def metrics_csv(history: list[dict[str, Any]]) -> str:
    """The epoch records as CSV: one column per key, in order of first appearance."""
    columns: dict[str, None] = {}
    for record in history:
        columns.update(dict.fromkeys(record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def epoch_line(desc: str, epoch: int, epochs: int, record: dict[str, Any], metric: str) -> str:
    """One log line for a finished epoch: its loss, ``metric`` on each split, lr and time."""
    parts = [f"{desc}, epoch {epoch}/{epochs}"]
    if "train_loss" in record:
        parts.append(f"loss {record['train_loss']:.4f}")
    for split in ("train", "val", "test"):
        value = record.get(f"{split}_{metric}")
        if isinstance(value, int | float):
            shown = f"{value:.2f}%" if metric == "top1" else f"{value:.4g}"
            parts.append(f"{split} {'' if metric == 'top1' else metric + ' '}{shown}")
    parts.append(f"lr {record.get('lr', float('nan')):.3g}")
    parts.append(f"{record.get('seconds', 0.0):.1f}s")
    return " | ".join(parts)


def scalar_tag(key: str) -> str:
    """TensorBoard tag of a record key: ``train_kd`` -> ``train/kd``, ``seconds`` ->
    ``time/seconds``, ``lr`` -> ``lr``."""
    if key in ("seconds", "train_seconds"):
        return f"time/{key}"
    split, _, name = key.partition("_")
    return f"{split}/{name}" if name and split in ("train", "val", "test") else key


class TensorBoardSink:
    """Every numeric value of an epoch record as a scalar at step ``epoch``, in ``log_dir``."""

    def __init__(self, log_dir: Path) -> None:
        self.writer = summary_writer(Path(log_dir))

    def write(self, record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        for key, value in record.items():
            if key == "epoch" or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(scalar_tag(key), value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def require_tensorboard() -> None:
    """UserError with the install command when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError(
            f"--tensorboard needs the optional package tensorboard: {INSTALL_TENSORBOARD}."
        ) from None


def summary_writer(log_dir: Path) -> Any:
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def epoch_sinks(run_path: Path, tensorboard: bool) -> list[EpochSink]:
    """The sinks a run asked for: TensorBoard events in ``RUN/tensorboard`` when ``tensorboard``."""
    return [TensorBoardSink(Path(run_path) / TENSORBOARD_DIR)] if tensorboard else []
