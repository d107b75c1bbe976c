"""One prepared check for the first GPU a run gets, under 10 minutes; writes one JSON.

1. versions: torch, CUDA, cuDNN, the device, bf16 support, the CPU and its bf16 units;
2. ``pytest -m cuda`` (the CUDA-marked tests; skipped with ``--quick``);
3. host syncs in training steps (ce and dkd; lenet5, textcnn, bilstm): on CUDA with
   ``torch.cuda.set_sync_debug_mode``, on the CPU with a dispatch-mode sentinel;
4. ResNet-18 on CIFAR-size inputs: step time in fp32, bf16 + channels-last and bf16 +
   channels-last + ``torch.compile`` (CUDA events on GPUs), and the engine's epoch over the
   pure compute of its steps;
5. the dtypes LSTM/GRU layers run in under bf16 autocast (must be fp32);
6. resume bit-identity in bf16: max |Δw| between a run cut after epoch 1 and resumed and an
   uninterrupted one;
7. ``torchrun`` with 2 processes, when 2 GPUs are visible.

Each part is timed and guarded: a failure is recorded in the JSON and the next part runs.

Usage: python benchmarks/gpu_check.py [--device cuda] [--quick] [--out gpu_check.json]
``--device cpu --quick`` runs everything small on the CPU (under a minute, for CI).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import reffakd
from reffakd.config import ComputeConfig, OptimConfig
from reffakd.data.augment import AugmentPolicy, BatchTransform
from reffakd.data.dataset import DataSplits, ImageSplit
from reffakd.data.text import TextSplit
from reffakd.data.text_augment import TextBatchTransform
from reffakd.kd.loss_objectives import build_objective
from reffakd.kd.source_teachers import ClassTableSource, smoothing_table
from reffakd.kd.task import Distiller
from reffakd.models import build_model
from reffakd.training import engine
from reffakd.training.checkpoint import load_checkpoint
from reffakd.training.precision import cpu_bf16_units
from reffakd.training.rundir import RunDir
from reffakd.training.syncs import SyncSentinel

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- data
def image_splits(n: int, size: int, channels: int, classes: int = 10) -> DataSplits:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 255, (n, channels, size, size), generator=g, dtype=torch.uint8)
    split = ImageSplit(images, labels, [str(c) for c in range(classes)])
    held = split.subset(torch.arange(min(n, 2 * classes)))
    return DataSplits("synthetic", split, held, held)


def text_splits(n: int, length: int = 24, vocab: int = 200, classes: int = 2) -> DataSplits:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, length + 1, (n,), generator=g)
    tokens = torch.randint(4, vocab, (n, length), generator=g)
    tokens[torch.arange(length)[None] >= lengths[:, None]] = 0
    labels = torch.arange(n) % classes
    split = TextSplit(tokens, lengths, labels, [str(c) for c in range(classes)], [""] * n)
    held = split.subset(torch.arange(min(n, 8)))
    return DataSplits("synthetic", split, held, held)  # type: ignore[arg-type]


def trainer(
    out: Path,
    student: str,
    device: torch.device,
    compute: ComputeConfig,
    *,
    n: int,
    batch: int,
    epochs: int = 1,
    loss: str = "ce",
) -> engine.Trainer:
    torch.manual_seed(0)
    if student in ("textcnn", "bilstm"):
        splits, transform = text_splits(n), TextBatchTransform()
        model = build_model(student, 2, vocab_size=200, max_len=24)
    else:
        channels, size = (1, 32) if student == "lenet5" else (3, 32)
        splits = image_splits(n, size, channels)
        transform = BatchTransform(
            size, [0.5] * channels, [0.25] * channels, AugmentPolicy(4, True)
        )
        model = build_model(student, 10, channels, size)
    classes = splits.num_classes
    source = ClassTableSource(smoothing_table(classes)) if loss == "dkd" else None
    objective = build_objective(loss, {})
    optim = OptimConfig(epochs=epochs, batch_size=batch, lr=0.02, milestones=[])
    return engine.Trainer(
        Distiller(model, source, objective),
        splits,
        transform,
        optim,
        RunDir(out),
        device=device,
        progress=False,
        compute=compute,
    )


# ----------------------------------------------------------------------------- parts
def versions(device: torch.device) -> dict[str, Any]:
    found: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "reffakd": reffakd.__version__,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_bf16_units": cpu_bf16_units(),
    }
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found["cpu"] = capabilities().get("cpu_name", found["cpu"])
    if device.type == "cuda":
        found.update(
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            gpu=torch.cuda.get_device_name(device),
            capability=".".join(map(str, torch.cuda.get_device_capability(device))),
            gpus=torch.cuda.device_count(),
            bf16=torch.cuda.is_bf16_supported(),
        )
    return found


def cuda_tests(quick: bool) -> dict[str, Any]:
    if quick:
        return {"skipped": "--quick"}
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = done.stdout.strip().splitlines()
    return {"returncode": done.returncode, "last_line": lines[-1] if lines else ""}


@contextlib.contextmanager
def watched_steps(device: torch.device) -> Iterator[list[str]]:
    """Syncs found in the engine's training steps (the epoch-end check and means left out)."""
    found: list[str] = []
    sentinel = SyncSentinel()
    original = engine.Trainer.train_one_epoch
    check, means = engine.FiniteCheck.run, engine._means

    def paused(function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            sentinel.paused = True
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode(0)
            try:
                return function(*args, **kwargs)
            finally:
                sentinel.paused = False
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(1)

        return run

    def steps(self: engine.Trainer, *args: Any, **kwargs: Any) -> Any:
        if device.type != "cuda":
            with sentinel:
                return original(self, *args, **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode(1)  # warn on every synchronizing call
            try:
                return original(self, *args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(0)
                found.extend(
                    str(w.message).splitlines()[0] for w in caught if "sync" in str(w.message)
                )

    engine.Trainer.train_one_epoch = steps  # type: ignore[method-assign]
    engine.FiniteCheck.run, engine._means = paused(check), paused(means)  # type: ignore[method-assign]
    try:
        yield found
    finally:
        engine.Trainer.train_one_epoch = original  # type: ignore[method-assign]
        engine.FiniteCheck.run, engine._means = check, means  # type: ignore[method-assign]
        found.extend(sentinel.found)


def sync_check(device: torch.device, work: Path) -> dict[str, Any]:
    compute = ComputeConfig(precision="bf16" if device.type == "cuda" else "fp32")
    result = {}
    for student in ("lenet5", "textcnn", "bilstm"):
        for loss in ("ce", "dkd"):
            with watched_steps(device) as found:
                out = work / f"sync-{student}-{loss}"
                trainer(out, student, device, compute, n=96, batch=32, loss=loss).fit()
            result[f"{student}/{loss}"] = sorted(set(found))
    result["ok"] = not any(v for k, v in result.items() if k != "ok")
    return result


def _timer(device: torch.device) -> Callable[[Callable[[], None]], float]:
    def seconds(work: Callable[[], None]) -> float:
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            work()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        started = time.perf_counter()
        work()
        return time.perf_counter() - started

    return seconds


def throughput(device: torch.device, work: Path, quick: bool) -> dict[str, Any]:
    """ResNet-18 (ResNet-8 with --quick) step times per setting, and engine epoch / compute."""
    name = "resnet8" if quick else "resnet18"
    batch, steps, n = (32, 3, 96) if quick else (256, 20, 256 * 20)
    settings = {
        "fp32": ComputeConfig(precision="fp32"),
        "bf16_cl": ComputeConfig(precision="bf16", channels_last=True),
        "bf16_cl_compile": ComputeConfig(precision="bf16", channels_last=True, compile=True),
    }
    if quick and device.type == "cpu":
        settings.pop("bf16_cl_compile")  # compiling takes minutes on a small CPU
    result: dict[str, Any] = {"model": name, "batch": batch}
    seconds = _timer(device)
    for key, compute in settings.items():
        run = trainer(work / f"speed-{key}", name, device, compute, n=n, batch=batch)
        step = _pure_step(run, batch, device)
        for _ in range(3):  # warm-up (and compilation)
            step()
        pure = statistics.median(seconds(step) for _ in range(steps))
        epoch = run.run_epoch(1, *_loaders(run))["train_seconds"]
        result[key] = {
            "step_ms": round(1e3 * pure, 3),
            "images_per_s": round(batch / pure, 1),
            "epoch_over_compute": round(epoch / (pure * run.steps_per_epoch), 3),
        }
    result["bf16_cl_over_fp32"] = round(result["bf16_cl"]["step_ms"] / result["fp32"]["step_ms"], 3)
    return result


def _pure_step(run: engine.Trainer, batch: int, device: torch.device) -> Callable[[], None]:
    """One training step of the run's student on a batch already on the device."""
    inputs = run.precision.inputs(torch.randn(batch, 3, 32, 32, device=device))
    labels = torch.randint(0, 10, (batch,), device=device)
    student = run.task.student
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01)

    def step() -> None:
        with run.precision.autocast():
            loss = F.cross_entropy(student(inputs).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _loaders(run: engine.Trainer) -> tuple[Any, dict[str, Any]]:
    from reffakd.data.loader import BatchLoader

    loader = BatchLoader(
        run.splits.train,
        run.optim.batch_size,
        device=run.device,
        shuffle=True,
        generator=run.data_generator,
    )
    return loader, {}


def rnn_dtypes(device: torch.device) -> dict[str, Any]:
    """Output dtypes of every recurrent layer and of the logits under bf16 autocast."""
    result = {}
    for name in ("bilstm", "rnn_ae"):
        model = build_model(name, 2, vocab_size=200, max_len=24).to(device)
        seen: set[str] = set()
        for module in [*model.modules(), *getattr(model, "recurrent_calls", ())]:
            if isinstance(module, torch.nn.RNNBase):
                module.register_forward_hook(
                    lambda m, i, out, seen=seen: seen.add(str(out[0].dtype))
                )
        ids = text_splits(8).train.tokens.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            model(ids).float().sum().backward()
        result[name] = sorted(seen)
    result["ok"] = all(v == ["torch.float32"] for k, v in result.items() if k != "ok")
    return result


class Stop(Exception):
    pass


def resume_identity(device: torch.device, work: Path, quick: bool) -> dict[str, Any]:
    """max |Δw| of a bf16 run cut after epoch 1 and resumed against an uninterrupted one."""
    compute = ComputeConfig(precision="bf16", channels_last=True)
    n, batch = (64, 16) if quick else (512, 64)

    def make(out: Path) -> engine.Trainer:
        return trainer(out, "resnet8", device, compute, n=n, batch=batch, epochs=2)

    make(work / "full").fit()
    cut = make(work / "cut")
    save = cut._save

    def save_then_stop(epoch: int, record: Any, state: Any) -> None:
        save(epoch, record, state)
        raise Stop

    cut._save = save_then_stop  # type: ignore[method-assign]
    with contextlib.suppress(Stop):
        cut.fit()
    resumed = make(work / "cut")
    resumed.resume()
    resumed.fit()
    full = load_checkpoint(work / "full" / "checkpoints" / "last.pt")["model"]
    again = load_checkpoint(work / "cut" / "checkpoints" / "last.pt")["model"]
    delta = max(float((full[k].float() - again[k].float()).abs().max()) for k in full)
    return {"max_abs_delta_w": delta, "bit_identical": delta == 0.0}


def _torchrun(device: torch.device, work: Path) -> dict[str, Any]:
    """2 processes on synthetic Fashion-MNIST files (IDX), one epoch of LeNet-5."""
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        return {"skipped": "fewer than 2 GPUs"}
    import gzip
    import struct

    root = work / "data" / "fashion-mnist"
    root.mkdir(parents=True)
    for prefix, n in (("train", 2000), ("t10k", 500)):
        images = torch.randint(0, 255, (n, 28, 28), dtype=torch.uint8)
        labels = (torch.arange(n) % 10).to(torch.uint8)
        header = struct.pack(">IIII", 2051, n, 28, 28)
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(header + images.numpy().tobytes())
        )
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(struct.pack(">II", 2049, n) + labels.numpy().tobytes())
        )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "reffakd", "train", "--dataset", "fashion-mnist"]
    command += ["--data-dir", str(work / "data"), "--student", "lenet5", "--epochs", "1"]
    command += ["--no-progress", "--out", str(work / "ddp")]
    env = {**os.environ, "REFFAKD_NO_DOWNLOAD": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    return {"returncode": done.returncode, "tail": done.stderr.strip().splitlines()[-3:]}


# ----------------------------------------------------------------------------- main
def guarded(name: str, work: Callable[[], Any], report: dict[str, Any]) -> None:
    started = time.perf_counter()
    try:
        report[name] = work()
    except Exception as exc:  # one part failing must not lose the others
        report[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    seconds = round(time.perf_counter() - started, 2)
    if isinstance(report[name], dict):
        report[name]["seconds"] = seconds
    print(f"{name}: {json.dumps(report[name])[:300]}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes (CI on the CPU)")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON written")
    args = parser.parse_args()
    device = torch.device(args.device)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="reffakd-gpu-check-") as folder:
        work = Path(folder)
        parts: dict[str, Callable[[], Any]] = {
            "versions": lambda: versions(device),
            "cuda_tests": lambda: cuda_tests(args.quick),
            "syncs": lambda: sync_check(device, work),
            "throughput": lambda: throughput(device, work, args.quick),
            "rnn_dtypes": lambda: rnn_dtypes(device),
            "resume_bf16": lambda: resume_identity(device, work, args.quick),
            "torchrun_2": lambda: _torchrun(device, work),
        }
        for name, part in parts.items():
            guarded(name, part, report)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    failed = [k for k, v in report.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
