"""Loading what a finished (or interrupted) run left behind: its config, a checkpoint, and the
accuracy recorded for it. Shared by every source that uses a trained network: the vanilla-KD
teacher, the Tf-KD self-teacher and LW-KD's light teacher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from reffakd.config import TrainConfig, from_dict, load_yaml
from reffakd.errors import UserError, first_line
from reffakd.training.checkpoint import load_checkpoint
from reffakd.training.summary import RunSummary, read_summary

CHECKPOINTS = ("best", "last")
SOFT_LABEL_KEYS = frozenset({"samples_per_class", "boost"})


@dataclass
class TrainedRun:
    """A run directory and one of its checkpoints (``best`` on validation, or ``last``)."""

    path: Path
    checkpoint: Path
    state: dict[str, Any]
    summary: RunSummary | None

    @property
    def kind(self) -> str:
        """``best`` when the checkpoint is the best-on-validation one, else ``last``."""
        return "best" if "record" in self.state else "last"

    @property
    def finished(self) -> bool:
        return self.summary is not None

    def record(self) -> tuple[dict[str, Any], int | None]:
        """The metrics and epoch of the loaded checkpoint (from summary.json when finished)."""
        if self.summary is not None and self.checkpoint.parent == self.path / "checkpoints":
            summary = self.summary
            if self.kind == "best" and summary.best and summary.best_epoch is not None:
                return dict(summary.best), summary.best_epoch
            if self.kind == "last" and summary.last and summary.epochs is not None:
                return dict(summary.last), summary.epochs
        if isinstance(self.state.get("record"), dict):
            return self.state["record"], self.state.get("epoch")
        history = self.state.get("history") or [{}]
        return history[-1], self.state.get("epoch")


def run_kind(path: Path) -> str | None:
    """``train``, ``soft-labels`` or ``light-teacher`` from a run's config.yaml; None if none."""
    file = Path(path) / "config.yaml"
    if not file.is_file():
        return None
    values = load_yaml(file)
    if values.get("kind") == "lwkd-light-teacher":
        return "light-teacher"
    if SOFT_LABEL_KEYS & set(values):
        return "soft-labels"
    return "train"


def load_run_config(run: str | Path) -> TrainConfig:
    """The resolved config of a ``reffakd train`` run directory. A run recorded before
    ``compute.precision`` existed (no concrete value written) trained in fp32."""
    path = Path(run)
    check_training_run(path)
    values = load_yaml(path / "config.yaml")
    if isinstance(values, dict) and "precision" not in (values.get("compute") or {}):
        values.setdefault("compute", {})
        if isinstance(values["compute"], dict):
            values["compute"]["precision"] = "fp32"
    return from_dict(TrainConfig, values)


def check_training_run(run: str | Path) -> None:
    """Refuse, saying what it is instead, a folder that is not a ``reffakd train`` run."""
    if not Path(run).is_dir():
        raise UserError(f"run {run} not found; pass the folder of a `reffakd train` run.")
    kind = run_kind(Path(run))
    if kind is None:
        raise UserError(
            f"{run} is not a run directory (no config.yaml); pass the folder of a "
            "`reffakd train` run."
        )
    if kind == "soft-labels":
        raise UserError(
            f"{run} is a soft-labels run, not a training run; pass its soft_labels.pt with "
            f"--soft-labels {Path(run) / 'soft_labels.pt'}."
        )
    if kind == "light-teacher":
        raise UserError(f"{run} is an LW-KD light-teacher run, not a training run.")


def locate_checkpoint(run: str | Path, which: str, what: str) -> tuple[Path, Path]:
    """(run directory, checkpoint file) for a run directory or a ``.pt`` file inside one."""
    path = Path(run)
    if path.suffix == ".pt":
        if not path.is_file():
            raise UserError(f"{what} checkpoint {run} not found; check the path.")
        return run_folder(path), path
    if which not in CHECKPOINTS:
        raise UserError(f"{what} checkpoint must be best or last, got {which!r}.")
    if not path.is_dir():
        raise UserError(f"{what} run {run} not found; pass the run directory of a trained run.")
    if run_kind(path) is None:
        raise UserError(
            f"{what} run {run} is not a run directory (no config.yaml); pass the folder of a "
            "trained run."
        )
    file = path / "checkpoints" / f"{which}.pt"
    if not file.exists():
        raise UserError(
            f"{what} run {run} is unfinished: it has no checkpoints/{which}.pt yet; finish its "
            f"training first (reffakd train --resume {run})."
        )
    return path, file


def run_folder(run: str | Path) -> Path:
    """The run directory of ``run``: itself, or the run holding a ``.pt`` checkpoint."""
    path = Path(run)
    if path.suffix != ".pt":
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def open_trained_run(run: str | Path, which: str = "best", what: str = "teacher") -> TrainedRun:
    """The checkpoint ``which`` of ``run`` (a run directory or a ``.pt`` inside one)."""
    run_dir, checkpoint = locate_checkpoint(run, which, what)
    return TrainedRun(run_dir, checkpoint, load_checkpoint(checkpoint), read_summary(run_dir))


def load_weights(model: nn.Module, run: TrainedRun, expected: str, fix: str) -> None:
    """Load the run's weights into ``model``; ``expected`` describes the model for the error."""
    try:
        model.load_state_dict(run.state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise UserError(
            f"checkpoint {run.checkpoint} does not fit {expected} ({first_line(exc)}); {fix}"
        ) from None
