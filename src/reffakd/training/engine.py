"""The one training loop: train, evaluate, checkpoint, resume.

The engine trains a :class:`~reffakd.training.task.Task` and never needs to know which method
produced its losses. Checkpoint selection uses the validation split only; the test split is
evaluated and reported each epoch but never drives a decision. Each epoch ends with an atomic
checkpoint holding model, optimizer, scheduler, epoch, metric history and every RNG state, so
``resume`` continues bit-identically on CPU.

The loop never waits for the device within a step: losses and metrics are summed on the device,
and the host looks at them every ``compute.check_every`` steps and at the end of the epoch (the
non-finite-loss check and the progress bar). The optimizer and schedule come from
:mod:`~reffakd.training.optim`, autocast and the gradient scaler from
:mod:`~reffakd.training.precision`, and the multi-process parts from
:mod:`~reffakd.training.distributed`.
"""

from __future__ import annotations

import contextlib
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

from reffakd.config import ComputeConfig, OptimConfig
from reffakd.data.loader import BatchLoader, Splits, Transform
from reffakd.errors import NonFiniteLossError, UserError, first_line
from reffakd.files import atomic_torch_save, atomic_write_text
from reffakd.runtime import capture_rng_state, restore_rng_state
from reffakd.training.checkpoint import FORMAT, load_checkpoint
from reffakd.training.distributed import DistContext, ddp_train_step
from reffakd.training.optim import build_optimizer, build_schedule, clip_gradients
from reffakd.training.precision import Precision, prepare_networks, resolve_compute
from reffakd.training.rundir import RunDir
from reffakd.training.sinks import EpochSink, metrics_csv
from reffakd.training.summary import summarize
from reffakd.training.task import ExtraSamples, Task

FAULT_ENV = "REFFAKD_FAULT_AFTER_EPOCH"  # testing hook: SIGKILL self after this epoch's checkpoint


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    summary: dict[str, Any]


@dataclass
class Trainer:
    """Runs ``task`` on ``splits`` with the optimizer and schedule of ``optim``, writing into
    ``run_dir`` (rank 0 only, under DDP)."""

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
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    dist: DistContext = field(default_factory=DistContext)

    def __post_init__(self) -> None:
        self.compute = resolve_compute(self.compute, self.device)
        self.task.to(self.device)
        prepare_networks(self.task.networks().values(), self.compute, self.device)
        self.precision = Precision(self.compute, self.device)
        self.optimizer = build_optimizer(self.task.learnable_parameters(), self.optim)
        self.steps_per_epoch = -(-len(self.splits.train) // self.optim.batch_size)
        self.schedule = build_schedule(self.optimizer, self.optim, self.steps_per_epoch)
        self.forward_train = self.task.forward_train
        if self.dist.enabled:
            self.forward_train = ddp_train_step(self.task, self.device, self.compute.sync_bn)
        self.data_generator = torch.Generator().manual_seed(self.seed)
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 1

    # ----------------------------------------------------------------- checkpointing
    def state(self, epoch: int) -> dict[str, Any]:
        """The checkpoint of ``epoch``; under DDP every rank's RNG states are gathered in."""
        rng = capture_rng_state(self.device)
        state = {
            "format": FORMAT,
            "epoch": epoch,
            "model": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "history": self.history,
            "rng": rng,
            "data_generator": self.data_generator.get_state(),
            "extra": self.task.extra_state(),
        }
        if self.precision.scaler is not None:
            state["scaler"] = self.precision.state_dict()
        if self.dist.enabled:
            state["rng_ranks"] = self.dist.gather_objects(rng)
        return state

    def resume(self) -> None:
        """Load ``last.pt`` and continue after its epoch."""
        path = self.run_dir.last_checkpoint
        state = load_checkpoint(path)
        try:
            self.task.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["scheduler"])
            self.data_generator.set_state(state["data_generator"])
            self.task.load_extra_state(state.get("extra") or {})
            self.precision.load_state_dict(state.get("scaler") or {})
            restore_rng_state(self._rank_rng(state), self.device)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UserError(
                f"checkpoint {path} does not match this run ({first_line(exc)}); "
                "it is corrupt or from another run: start a new run with a new --out."
            ) from None
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"]) + 1
        if self.dist.is_main:
            self._write_metrics()

    def _rank_rng(self, state: dict[str, Any]) -> dict[str, Any]:
        """This rank's RNG states; rank 0's when the checkpoint has none for it (a job resumed
        with more processes than it had: it continues, though not bit-identically)."""
        ranks = state.get("rng_ranks") or []
        return ranks[self.dist.rank] if self.dist.rank < len(ranks) else state["rng"]

    def _write_metrics(self) -> None:
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        atomic_write_text(self.run_dir.metrics, lines)
        atomic_write_text(self.run_dir.metrics_csv, metrics_csv(self.history))

    # ----------------------------------------------------------------- the loop
    def fit(self) -> FitResult:
        shard = {"rank": self.dist.rank, "world_size": self.dist.world_size}
        train_loader = BatchLoader(
            self.splits.train,
            self.optim.batch_size,
            device=self.device,
            shuffle=True,
            generator=self.data_generator,
            **shard,
        )
        eval_loaders = {
            name: BatchLoader(split, self.optim.eval_batch_size, device=self.device, **shard)
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
        """Keep the record; rank 0 writes the checkpoints and metrics and tells the sinks."""
        self.history.append(record)
        state = self.state(epoch)  # a collective under DDP: every rank takes part
        if self.dist.is_main:
            self._save(epoch, record, state)
        self.dist.barrier()  # nobody runs ahead of (or is killed before) the checkpoint
        if os.environ.get(FAULT_ENV) == str(epoch):
            os.kill(os.getpid(), signal.SIGKILL)

    def _save(self, epoch: int, record: dict[str, Any], state: dict[str, Any]) -> None:
        # best.pt first: a crash between the two writes re-runs this epoch on resume, which
        # rewrites best.pt identically, instead of leaving a best.pt older than the history.
        if self._is_best(record):
            atomic_torch_save(
                {"model": self.task.state_dict(), "epoch": epoch, "record": record},
                self.run_dir.best_checkpoint,
            )
        atomic_torch_save(state, self.run_dir.last_checkpoint)
        self._write_metrics()
        for sink in self.sinks:
            sink.write(record)

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
        self.schedule.at_step(epoch, 0)
        lr = self.optimizer.param_groups[0]["lr"]
        train = self.train_one_epoch(epoch, loader)
        self.task.end_epoch(epoch)
        train_seconds = time.perf_counter() - started
        self.schedule.end_epoch()
        record: dict[str, Any] = {"epoch": epoch, "lr": lr}
        record.update({f"train_{k}": v for k, v in train.items()})
        self.dist.broadcast_buffers(self.task.learnable_module())
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
        check = FiniteCheck(epoch, self.run_dir, self.dist, self.device)
        bar = tqdm(
            loader,
            desc=f"{self.desc} {epoch}/{self.optim.epochs}",
            disable=not (self.progress and self.dist.is_main),
            leave=False,
            mininterval=0.5,
            dynamic_ncols=True,
        )
        for step, batch in enumerate(bar):
            self.schedule.at_step(epoch, step)
            inputs, extra = self._train_inputs(batch, loader)
            with self.precision.autocast():
                outputs, losses = self.forward_train(
                    inputs, batch.labels, batch.indices, epoch, **extra
                )
            loss = sum(losses.values())
            check.add(loss)
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.backward(self._rank_weighted(loss, batch))
            if self.optim.clip_grad_norm is not None:
                self.precision.unscale(self.optimizer)
                clip_gradients(self.task.learnable_parameters(), self.optim.clip_grad_norm)
            self.precision.step(self.optimizer)
            self.task.after_step(outputs, batch.labels, epoch)
            count = len(batch.labels)
            seen += count
            batch_sums = {"loss": loss.detach() * count}
            batch_sums.update({k: v.detach() * count for k, v in losses.items()})
            batch_sums.update(self.task.train_sums(outputs.detach(), batch.labels))
            for key, value in batch_sums.items():
                sums[key] = sums.get(key, 0) + value
            if (step + 1) % self.compute.check_every == 0:
                check.run(step)
                if self.progress and self.dist.is_main:
                    bar.set_postfix(self._postfix(sums, seen), refresh=False)
        check.run(len(loader) - 1)
        bar.close()
        return _means(sums, seen, self.dist)

    def _train_inputs(self, batch: Any, loader: BatchLoader) -> tuple[torch.Tensor, dict]:
        """The batch's model inputs, and the samples the task adds to it (``extra``), gathered
        from the split and augmented in the same transform call."""
        raw, wanted = batch.inputs, self.task.extra_indices(batch.indices, batch.labels)
        if wanted is not None:
            if self.dist.enabled:
                raise UserError(
                    "this method adds samples to each batch (CS-KD, DLB), which torchrun runs "
                    "do not support yet: train it in one process."
                )
            if raw.shape[1:] != loader.inputs.shape[1:]:  # a trimmed text batch: full width
                raw = loader.inputs[batch.indices]
            raw = torch.cat([raw, loader.inputs[wanted]])
        inputs = self.transform(
            raw, train=True, generator=self.data_generator, rows=batch.rows, total=batch.total
        )
        inputs = self.precision.inputs(inputs)
        if wanted is None:
            return inputs, {}
        own = len(batch.labels)
        extra = ExtraSamples(inputs[own:], loader.labels[wanted], wanted)
        return inputs[:own], {"extra": extra}

    def _rank_weighted(self, loss: torch.Tensor, batch: Any) -> torch.Tensor:
        """Under DDP, the rank's mean loss × n_r·W/N: DDP's gradient average (÷W) then gives
        the gradient of the mean over the whole batch of N, even when the shares differ."""
        if not self.dist.enabled:
            return loss
        return loss * (len(batch.labels) * self.dist.world_size / batch.whole_size)

    @staticmethod
    def _postfix(sums: dict[str, torch.Tensor], seen: int) -> dict[str, str]:
        shown = {"loss": f"{float(sums['loss']) / seen:.4f}"}
        if "top1" in sums:
            shown["acc"] = f"{float(sums['top1']) / seen:.2f}"
        return shown

    @torch.no_grad()
    def evaluate(self, loader: BatchLoader) -> dict[str, float]:
        return evaluate_task(self.task, loader, self.transform, self.precision, self.dist)


class FiniteCheck:
    """The non-finite-loss check, one host sync per ``check_every`` steps instead of one per
    step: the losses of the steps since the last check are kept on the device and looked at
    together. On a NaN or inf the run stops; the last checkpoint, written at the end of the
    previous epoch (after its own check), is the last good one."""

    def __init__(
        self, epoch: int, run_dir: RunDir, dist: DistContext, device: torch.device
    ) -> None:
        self.epoch, self.run_dir, self.dist, self.device = epoch, run_dir, dist, device
        self.losses: list[torch.Tensor] = []
        self.first_step = 0

    def add(self, loss: torch.Tensor) -> None:
        self.losses.append(loss.detach())

    def run(self, last_step: int) -> None:
        """Check the steps since the last check, up to ``last_step``; raise on any bad one.

        Under DDP every rank takes part (the offsets of the first bad step are reduced with
        min), so all ranks stop together."""
        if not self.losses and not self.dist.enabled:
            return
        window = torch.stack(self.losses) if self.losses else torch.zeros(0, device=self.device)
        bad = ~torch.isfinite(window)
        first = torch.zeros(1, dtype=torch.int64, device=window.device)  # == len: none bad
        if len(window):
            first = torch.where(bad.any(), bad.to(torch.int64).argmax(), len(window)).reshape(1)
        offset = int(self.dist.min_over_ranks(first).item())  # the one host sync
        self.losses, start = [], self.first_step
        self.first_step = last_step + 1
        if offset < len(window):
            value = window[offset]
            seen = f"({float(value)})" if not torch.isfinite(value) else "(on another process)"
            raise NonFiniteLossError(
                f"non-finite loss {seen} at epoch {self.epoch}, step {start + offset} (found "
                f"by the check after step {last_step}); the last good checkpoint is kept in "
                f"{self.run_dir.checkpoints}. Lower the learning rate or check the inputs."
            )


@torch.no_grad()
def evaluate_task(
    task: nn.Module,
    loader: BatchLoader,
    transform: Transform,
    precision: Precision | None = None,
    dist: DistContext | None = None,
) -> dict[str, float]:
    """Mean of ``task.eval_sums`` over a split, in eval mode and without augmentation; under
    DDP each rank evaluates its share of every batch and the sums are added over the ranks."""
    dist = dist or DistContext()
    was_training = task.training
    task.eval()
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    for batch in loader:
        inputs = transform(batch.inputs, train=False)
        if precision is not None:
            inputs = precision.inputs(inputs)
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            batch_sums = task.eval_sums(inputs, batch.labels)
        for key, value in batch_sums.items():
            sums[key] = sums.get(key, 0) + value
        seen += len(batch.labels)
    task.train(was_training)
    return _means(sums, seen, dist)


def _means(sums: dict[str, torch.Tensor], seen: int, dist: DistContext) -> dict[str, float]:
    """Per-sample means of summed metrics, over every rank's samples under DDP."""
    values = {k: float(v) for k, v in sums.items()}
    if dist.enabled:
        values, seen = dist.sum_over_ranks(values, seen)
    return {k: round(v / max(seen, 1), 6) for k, v in values.items()}
