"""The one training loop: train, evaluate, checkpoint, resume.

The engine trains a :class:`~reffakd.training.task.Task` and never needs to know which method
produced its losses. Checkpoint selection uses the validation split only; the test split is
evaluated and reported each epoch but never drives a decision. Each epoch ends with an atomic
checkpoint holding model, optimizer, scheduler, epoch, metric history and every RNG state, so
``resume`` continues bit-identically on CPU.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from reffakd.config import OptimConfig
from reffakd.data.loader import BatchLoader, Splits, Transform
from reffakd.errors import NonFiniteLossError, UserError, first_line
from reffakd.files import atomic_torch_save, atomic_write_text
from reffakd.runtime import capture_rng_state, restore_rng_state
from reffakd.training.checkpoint import FORMAT, load_checkpoint
from reffakd.training.rundir import RunDir
from reffakd.training.sinks import EpochSink, metrics_csv
from reffakd.training.summary import summarize
from reffakd.training.task import Task

FAULT_ENV = "REFFAKD_FAULT_AFTER_EPOCH"  # testing hook: SIGKILL self after this epoch's checkpoint


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    summary: dict[str, Any]


@dataclass
class Trainer:
    """Runs ``task`` on ``splits`` with SGD + MultiStepLR, writing into ``run_dir``."""

    task: Task
    splits: Splits
    transform: Transform
    optim: OptimConfig
    run_dir: RunDir
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    desc: str = "train"
    sinks: list[EpochSink] = field(default_factory=list)  # per-epoch records (TensorBoard)

    def __post_init__(self) -> None:
        self.task.to(self.device)
        self.optimizer = torch.optim.SGD(
            list(self.task.learnable_parameters()),
            lr=self.optim.lr,
            momentum=self.optim.momentum,
            weight_decay=self.optim.weight_decay,
            nesterov=self.optim.nesterov,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(self.optim.milestones), gamma=self.optim.gamma
        )
        self.data_generator = torch.Generator().manual_seed(self.seed)
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 1

    # ----------------------------------------------------------------- checkpointing
    def state(self, epoch: int) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "epoch": epoch,
            "model": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "rng": capture_rng_state(),
            "data_generator": self.data_generator.get_state(),
            "extra": self.task.extra_state(),
        }

    def resume(self) -> None:
        """Load ``last.pt`` and continue after its epoch."""
        path = self.run_dir.last_checkpoint
        state = load_checkpoint(path)
        try:
            self.task.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.data_generator.set_state(state["data_generator"])
            self.task.load_extra_state(state.get("extra") or {})
            restore_rng_state(state["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UserError(
                f"checkpoint {path} does not match this run ({first_line(exc)}); "
                "it is corrupt or from another run: start a new run with a new --out."
            ) from None
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"]) + 1
        self._write_metrics()

    def _write_metrics(self) -> None:
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        atomic_write_text(self.run_dir.metrics, lines)
        atomic_write_text(self.run_dir.metrics_csv, metrics_csv(self.history))

    # ----------------------------------------------------------------- the loop
    def fit(self) -> FitResult:
        train_loader = BatchLoader(
            self.splits.train,
            self.optim.batch_size,
            device=self.device,
            shuffle=True,
            generator=self.data_generator,
        )
        eval_loaders = {
            name: BatchLoader(split, self.optim.eval_batch_size, device=self.device)
            for name, split in (("val", self.splits.val), ("test", self.splits.test))
            if len(split)
        }
        try:
            for epoch in range(self.start_epoch, self.optim.epochs + 1):
                self._finish_epoch(epoch, self.run_epoch(epoch, train_loader, eval_loaders))
        finally:
            for sink in self.sinks:
                sink.close()
        summary = summarize(self.history, *self.selection)
        return FitResult(self.history, summary)

    def _finish_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """Keep the record, write the checkpoints and metrics, then tell the sinks."""
        self.history.append(record)
        # best.pt first: a crash between the two writes re-runs this epoch on resume, which
        # rewrites best.pt identically, instead of leaving a best.pt older than the history.
        if self._is_best(record):
            atomic_torch_save(
                {"model": self.task.state_dict(), "epoch": epoch, "record": record},
                self.run_dir.best_checkpoint,
            )
        atomic_torch_save(self.state(epoch), self.run_dir.last_checkpoint)
        self._write_metrics()
        for sink in self.sinks:
            sink.write(record)
        if os.environ.get(FAULT_ENV) == str(epoch):
            os.kill(os.getpid(), signal.SIGKILL)

    @property
    def selection(self) -> tuple[str, str]:
        metric = self.task.selection_metric
        split = "val" if len(self.splits.val) else "train"
        return f"{split}_{metric}", self.task.selection_mode

    def _is_best(self, record: dict[str, Any]) -> bool:
        """True when ``record`` is the first epoch with the best (non-NaN) selection metric."""
        key, mode = self.selection
        values = [r[key] for r in self.history if key in r and not math.isnan(r[key])]
        if not values or key not in record or math.isnan(record[key]):
            return False
        best = max(values) if mode == "max" else min(values)
        return record[key] == best and values.index(best) == len(values) - 1

    def run_epoch(
        self, epoch: int, loader: BatchLoader, eval_loaders: dict[str, BatchLoader]
    ) -> dict[str, Any]:
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        train = self.train_one_epoch(epoch, loader)
        train_seconds = time.perf_counter() - started
        self.scheduler.step()
        record: dict[str, Any] = {"epoch": epoch, "lr": lr}
        record.update({f"train_{k}": v for k, v in train.items()})
        for name, eval_loader in eval_loaders.items():
            metrics = self.evaluate(eval_loader)
            record.update({f"{name}_{k}": v for k, v in metrics.items()})
        record["train_seconds"] = round(train_seconds, 4)
        record["seconds"] = round(time.perf_counter() - started, 4)
        return record

    def train_one_epoch(self, epoch: int, loader: BatchLoader) -> dict[str, float]:
        self.task.train()
        sums: dict[str, torch.Tensor] = {}
        seen = 0
        bar = tqdm(
            loader,
            desc=f"{self.desc} {epoch}/{self.optim.epochs}",
            disable=not self.progress,
            leave=False,
            mininterval=0.5,
            dynamic_ncols=True,
        )
        for step, batch in enumerate(bar):
            inputs = self.transform(batch.inputs, train=True, generator=self.data_generator)
            outputs, losses = self.task.forward_train(inputs, batch.labels, batch.indices, epoch)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step}; "
                    f"the last good checkpoint is kept in {self.run_dir.checkpoints}. "
                    "Lower the learning rate or check the inputs."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.task.after_step(outputs, batch.labels, epoch)
            count = len(batch.labels)
            seen += count
            batch_sums = {"loss": loss.detach() * count}
            batch_sums.update({k: v.detach() * count for k, v in losses.items()})
            batch_sums.update(self.task.train_sums(outputs.detach(), batch.labels))
            for key, value in batch_sums.items():
                sums[key] = sums.get(key, 0) + value
            if self.progress and step % 20 == 0:
                bar.set_postfix(self._postfix(sums, seen), refresh=False)
        bar.close()
        return {k: round(float(v) / max(seen, 1), 6) for k, v in sums.items()}

    @staticmethod
    def _postfix(sums: dict[str, torch.Tensor], seen: int) -> dict[str, str]:
        shown = {"loss": f"{float(sums['loss']) / seen:.4f}"}
        if "top1" in sums:
            shown["acc"] = f"{float(sums['top1']) / seen:.2f}"
        return shown

    @torch.no_grad()
    def evaluate(self, loader: BatchLoader) -> dict[str, float]:
        return evaluate_task(self.task, loader, self.transform)


@torch.no_grad()
def evaluate_task(
    task: nn.Module, loader: BatchLoader, transform: Transform
) -> dict[str, float]:
    """Mean of ``task.eval_sums`` over a split, in eval mode and without augmentation."""
    was_training = task.training
    task.eval()
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    for batch in loader:
        inputs = transform(batch.inputs, train=False)
        for key, value in task.eval_sums(inputs, batch.labels).items():
            sums[key] = sums.get(key, 0) + value
        seen += len(batch.labels)
    task.train(was_training)
    return {k: round(float(v) / max(seen, 1), 6) for k, v in sums.items()}
