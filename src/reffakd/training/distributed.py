"""Multi-process data-parallel training under ``torchrun`` (DDP).

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`process_group` joins them (nccl on CUDA, gloo on CPU). Without those
variables (or with a world of 1) nothing here touches ``torch.distributed``.

The contract (docs/scale.md, "Training at scale"):

* ``--batch-size`` is global; every rank walks the same seeded permutation and takes an equal,
  contiguous share of each batch (:func:`reffakd.data.loader.shard_rows`);
* each rank scales its loss by n_r · W / N (its n_r of the batch's N samples, W ranks), so
  DDP's gradient average is the gradient of the global batch mean, uneven last batch included;
* evaluation is sharded the same way and its sums are added over ranks;
* only rank 0 writes; work that writes (the run lock, an inline autoencoder, a light teacher)
  runs on rank 0 first, and the other ranks follow once it succeeded (:meth:`main_first`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from reffakd.errors import NonFiniteLossError, UserError
from reffakd.runtime import resolve_device

T = TypeVar("T")
# Long enough for rank 0 to train an autoencoder or a light teacher while the others wait.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; ``DistContext()`` is a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    # a gloo group for waiting (main_first): NCCL's watchdog aborts a collective that waits
    # while rank 0 trains an autoencoder or a light teacher; None: the default group
    wait_group: Any = field(default=None, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device_for(self, name: str) -> torch.device:
        """The device of this process: ``name`` resolved, and ``cuda:LOCAL_RANK`` under DDP."""
        device = resolve_device(name)
        if not self.enabled or device.type == "cpu":
            return device
        if device.type != "cuda":
            raise UserError(
                f"torchrun runs on CUDA (nccl) or CPU (gloo), not on {device.type}; "
                "use --device cuda or --device cpu."
            )
        if ":" in name:
            raise UserError(
                f"under torchrun every process takes the GPU of its LOCAL_RANK; use --device "
                f"cuda or auto instead of {name} (choose GPUs with CUDA_VISIBLE_DEVICES)."
            )
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise UserError(
                f"this process has LOCAL_RANK {self.local_rank}, but the machine shows {count} "
                f"CUDA device(s); start at most {count} processes per node (--nproc-per-node)."
            )
        return torch.device("cuda", self.local_rank)

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def main_first(self, work: Callable[[], T], *, others: bool = True) -> T | None:
        """Run ``work`` on rank 0; then, once it succeeded, on the other ranks (``others``).

        The other ranks wait in :attr:`wait_group` (gloo, not NCCL), however long rank 0 takes.
        If any rank fails, every rank raises (the failing rank its own error, the others the
        same one-line error), so no rank waits forever.
        """
        if not self.enabled:
            return work()
        result: T | None = None
        if self.is_main:
            result = self._agreed(work)
        else:
            self._agreed(None)
        if others:
            if self.is_main:
                self._agreed(None)
            else:
                result = self._agreed(work)
        return result

    def _agreed(self, work: Callable[[], T] | None) -> T | None:
        """Run ``work`` (on the ranks that pass one), then tell every rank whether any failed."""
        result: T | None = None
        failure: BaseException | None = None
        if work is not None:
            try:
                result = work()
            except BaseException as exc:  # every rank must hear of it, whatever it is
                failure = exc
        told = (type(failure).__name__, str(failure)) if failure is not None else None
        reports: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(reports, told, group=self.wait_group)
        if failure is not None:
            raise failure
        for rank, report in enumerate(reports):
            if report is not None:
                raise _error_of_rank(rank, *report)
        return result

    def sum_over_ranks(self, values: dict[str, float], count: int) -> tuple[dict[str, float], int]:
        """Each key's sum, and the counts' sum, over the ranks (a rank may lack keys, e.g. when
        its share of every batch was empty)."""
        if not self.enabled:
            return values, count
        total: dict[str, float] = {}
        counts = 0
        for part, part_count in self.gather_objects((values, count)):
            counts += part_count
            for key, value in part.items():
                total[key] = total.get(key, 0.0) + value
        return total, counts

    def min_over_ranks(self, value: Tensor) -> Tensor:
        if self.enabled:
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
        return value

    def gather_objects(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (a list of one without DDP). Values go through
        ``torch.save`` (tensors, numbers, strings, lists, tuples and dicts of them)."""
        if not self.enabled:
            return [value]
        buffer = io.BytesIO()
        torch.save(value, buffer)
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, buffer.getvalue())
        return [torch.load(io.BytesIO(data), weights_only=True) for data in gathered]

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank: the ones that are
        checkpointed, so that evaluation and a resumed run use the same."""
        if self.enabled:
            for buffer in module.buffers():
                torch.distributed.broadcast(buffer, src=0)


def _error_of_rank(rank: int, kind: str, message: str) -> Exception:
    if kind == "NonFiniteLossError":
        return NonFiniteLossError(message)
    if kind in ("UserError", "DataError"):
        return UserError(message)
    return RuntimeError(f"rank {rank} failed with {kind}: {message}")


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s global RNGs (dropout, per-sample draws): ``seed`` itself on
    rank 0, so that one process is a plain run, and an independent stream on every other rank.
    The data order and augmentation come from a generator shared by all ranks instead."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def world_from_env() -> DistContext:
    """The job this process belongs to, from torchrun's environment variables."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    return DistContext(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[DistContext]:
    """Join the job's process group for the block (if there is a job of several processes and
    no group yet), and leave it afterwards."""
    context = world_from_env()
    if not context.enabled or torch.distributed.is_initialized():
        yield context
        return
    device = context.device_for(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
        wait_group = torch.distributed.new_group(backend="gloo", timeout=TIMEOUT)
        context = dataclasses.replace(context, wait_group=wait_group)
    else:
        torch.distributed.init_process_group("gloo", timeout=TIMEOUT)
    try:
        yield context
    finally:
        torch.distributed.destroy_process_group()


class _TrainStep(nn.Module):
    """``forward`` is the task's training forward, so that DDP's hooks see it; only the task's
    learnable module is registered, so DDP syncs its parameters and buffers and nothing else
    (not a frozen teacher, not a discriminator with its own optimizer)."""

    def __init__(self, task: Any) -> None:
        super().__init__()
        self.learnable = task.learnable_module()
        object.__setattr__(self, "task", task)

    def forward(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, epoch: int, **extra: Any
    ) -> Any:
        return self.task.forward_train(inputs, labels, indices, epoch, **extra)


def ddp_train_step(task: Any, device: torch.device, sync_bn: bool) -> nn.Module:
    """The task's training forward wrapped in DistributedDataParallel."""
    from torch.nn.parallel import DistributedDataParallel

    step = _TrainStep(task)
    if sync_bn:
        nn.SyncBatchNorm.convert_sync_batchnorm(step.learnable)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(step, device_ids=device_ids)


def in_process_group() -> bool:
    """True inside an initialised torch.distributed process group (a torchrun job)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """``tensor`` summed over the processes, in place; unchanged without a process group."""
    if in_process_group():
        torch.distributed.all_reduce(tensor)
    return tensor


def average_gradients(params: Iterable[nn.Parameter], count: int) -> None:
    """Gradients averaged over the ranks, weighted by each rank's ``count`` samples:
    g = Σ_r n_r g_r / Σ_r n_r. For networks outside DDP (e.g. a discriminator trained in a
    task's ``after_step``); nothing happens without a process group."""
    if not in_process_group():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads] + [grads[0].new_zeros(1)])
    flat[:-1] *= count
    flat[-1] = count
    torch.distributed.all_reduce(flat)
    flat[:-1] /= flat[-1]
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()
