"""Speed of the training-at-scale options, as ratios measured in one run.

1. Precision: the median time of a training step (autocast forward, backward, SGD step) with
   ``compute.precision: auto`` against fp32, for LeNet-5 (1x32x32), ResNet-8 / ResNet-20 /
   ResNet-18 (3x32x32) and Kim's CNN (64 tokens), batch 128, random data made before the clock
   starts. ``auto`` is bf16 with channels-last where the CPU (or GPU) has bf16 matrix units
   (AMX or AVX512-BF16 on a CPU, as torch reports them) and fp32 elsewhere; the explicit bf16 +
   channels-last ratio is printed too, so a CPU without the units shows what it would cost.
   The CPU model and its bf16 units are printed first.
2. Recurrent layers: the BiLSTM's LSTM and the text autoencoder's GRU, fp32 against bf16
   autocast (the models run them in fp32 whatever the precision; this says whether bf16
   would help them on this CPU).
3. The engine: one epoch of the engine (index gather, augmentation, method, metrics), after a
   warm-up epoch, over the pure compute of its steps, for LeNet-5 and ResNet-8 at ``auto``.
4. ``torch.compile`` against eager, fp32 step time, LeNet-5 and ResNet-8 (``--skip-compile``
   to leave out; compiling takes minutes on a small CPU).
5. DDP: the training time of one epoch of LeNet-5 on Fashion-MNIST, the whole machine as one
   process against ``torchrun`` with 2 processes (gloo) and the same global batch. Each DDP
   process gets the machine's threads / 2, so both sides use the same cores; on 2 cores there
   is no speed-up to expect (the same arithmetic, plus the gradient all-reduce).

Usage: python benchmarks/scale.py [--data-dir DIR] [--steps 10] [--device cpu] [--json FILE]
       [--parts precision,recurrent,engine,compile,ddp]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from reffakd.config import ComputeConfig, OptimConfig
from reffakd.data.augment import AugmentPolicy, BatchTransform
from reffakd.data.dataset import DataSplits, ImageSplit
from reffakd.data.loader import BatchLoader
from reffakd.kd.loss_objectives import CrossEntropy
from reffakd.kd.task import Distiller
from reffakd.models import build_model
from reffakd.training.engine import Trainer
from reffakd.training.precision import Precision, cpu_bf16_units, resolve_compute
from reffakd.training.rundir import RunDir

BATCH = 128
# (name, input): image channels, or None for token ids (B, 64)
MODELS = (("lenet5", 1), ("resnet8", 3), ("resnet20", 3), ("resnet18", 3), ("textcnn", None))
BF16_CL = ComputeConfig(precision="bf16", channels_last=True)
FP32 = ComputeConfig(precision="fp32")


def cpu_name() -> str:
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        return str(capabilities().get("cpu_name", "?"))
    return "?"


def _model_and_batch(
    name: str, channels: int | None, device: torch.device
) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if channels is None:
        model = build_model(name, 10, vocab_size=10_000, max_len=64)
        return model.to(device), torch.randint(4, 10_000, (BATCH, 64), device=device)
    model = build_model(name, 10, channels, 32).to(device)
    return model, torch.randn(BATCH, channels, 32, 32, device=device)


def step_seconds(
    name: str,
    channels: int | None,
    compute: ComputeConfig,
    steps: int,
    device: torch.device,
    compile_model: bool = False,
) -> float:
    """Median seconds of one training step of ``name`` (after 3 warm-up steps)."""
    model, inputs = _model_and_batch(name, channels, device)
    precision = Precision(compute, device)
    if compute.channels_last:
        model.to(memory_format=torch.channels_last)
    inputs = precision.inputs(inputs)
    if compile_model:
        model.compile()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    labels = torch.randint(0, 10, (BATCH,), device=device)

    def step() -> None:
        with precision.autocast():
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return median_seconds(step, steps, device)


def median_seconds(step: Callable[[], None], steps: int, device: torch.device) -> float:
    times = []
    for at in range(steps + 3):
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if at >= 3:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def precision_ratios(steps: int, device: torch.device) -> dict[str, float | str]:
    auto = resolve_compute(ComputeConfig(), device)
    print(f"  auto resolves to {auto.precision} (channels-last {auto.channels_last})")
    result: dict[str, float | str] = {"auto": auto.precision}
    for name, channels in MODELS:
        fp32 = step_seconds(name, channels, FP32, steps, device)
        bf16 = step_seconds(name, channels, BF16_CL, steps, device)
        chosen = bf16 if auto.precision == "bf16" else fp32
        result[f"{name}_fp32_step_ms"] = round(1e3 * fp32, 2)
        result[f"{name}_auto_over_fp32"] = round(chosen / fp32, 3)
        result[f"{name}_bf16_cl_over_fp32"] = round(bf16 / fp32, 3)
        print(
            f"  {name:9s} fp32 {1e3 * fp32:8.1f} ms/step  auto {chosen / fp32:.2f}x  "
            f"bf16+channels-last {bf16 / fp32:.2f}x the fp32 time"
        )
    return result


def recurrent_ratios(steps: int, device: torch.device) -> dict[str, float]:
    """fp32 against bf16 autocast for the recurrent layers alone (forward and backward)."""
    layers = {
        "bilstm_lstm": torch.nn.LSTM(300, 300, batch_first=True, bidirectional=True),
        "rnn_ae_gru": torch.nn.GRU(32, 64, batch_first=True),
    }
    result = {}
    for name, layer in layers.items():
        layer.to(device)
        x = torch.randn(64, 32, layer.input_size, device=device, requires_grad=True)
        times = {}
        for key, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            times[key] = median_seconds(_recurrent_step(layer, x, dtype), steps, device)
        result[f"{name}_fp32_step_ms"] = round(1e3 * times["fp32"], 2)
        result[f"{name}_bf16_over_fp32"] = round(times["bf16"] / times["fp32"], 3)
        print(
            f"  {name:12s} fp32 {1e3 * times['fp32']:7.1f} ms  bf16 autocast "
            f"{times['bf16'] / times['fp32']:.2f}x the fp32 time"
        )
    return result


def _recurrent_step(
    layer: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None
) -> Callable[[], None]:
    def step() -> None:
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            out = layer(x)[0]
        out.float().sum().backward()

    return step


def engine_ratios(steps: int, device: torch.device) -> dict[str, float]:
    """One engine epoch over ``steps`` batches against ``steps`` pure-compute steps."""
    result = {}
    compute = resolve_compute(ComputeConfig(), device)
    for name, channels in (("lenet5", 1), ("resnet8", 3)):
        assert channels is not None
        trainer = _synthetic_trainer(name, channels, steps, compute, device)
        loader = BatchLoader(
            trainer.splits.train,
            BATCH,
            device=device,
            shuffle=True,
            generator=trainer.data_generator,
        )
        trainer.run_epoch(1, loader, {})  # warm-up: kernels made, caches filled
        epoch = trainer.run_epoch(2, loader, {})["train_seconds"]
        pure = step_seconds(name, channels, compute, steps, device) * trainer.steps_per_epoch
        result[f"{name}_epoch_over_compute"] = round(epoch / pure, 3)
        print(f"  {name:9s} engine epoch {epoch:.2f} s = {epoch / pure:.2f}x pure compute")
    return result


def _synthetic_trainer(
    name: str, channels: int, steps: int, compute: ComputeConfig, device: torch.device
) -> Trainer:
    torch.manual_seed(0)
    n = BATCH * steps
    images = torch.randint(0, 255, (n, channels, 32, 32), dtype=torch.uint8)
    split = ImageSplit(images, torch.arange(n) % 10, [str(c) for c in range(10)])
    splits = DataSplits(
        "synthetic", split, split.subset(torch.arange(0)), split.subset(torch.arange(0))
    )
    policy = AugmentPolicy(4, True)
    transform = BatchTransform(32, [0.5] * channels, [0.25] * channels, policy)
    optim = OptimConfig(epochs=2, batch_size=BATCH, lr=0.05, milestones=[])
    model = build_model(name, 10, channels, 32)
    return Trainer(
        Distiller(model, None, CrossEntropy()),
        splits,
        transform,
        optim,
        RunDir(tempfile.mkdtemp(prefix="reffakd-scale-")),
        device=device,
        progress=False,
        compute=compute,
    )


def compile_ratios(steps: int, device: torch.device) -> dict[str, float]:
    result = {}
    for name, channels in (("lenet5", 1), ("resnet8", 3)):
        eager = step_seconds(name, channels, FP32, steps, device)
        started = time.perf_counter()
        compiled = step_seconds(name, channels, FP32, steps, device, compile_model=True)
        total = time.perf_counter() - started
        result[f"{name}_compile_over_eager"] = round(compiled / eager, 3)
        result[f"{name}_compile_and_run_s"] = round(total, 1)
        print(
            f"  {name:9s} eager {1e3 * eager:7.1f} ms/step  compiled {compiled / eager:.2f}x "
            f"the eager time ({total:.0f} s with compiling)"
        )
    return result


def train_seconds(command: list[str], out: Path, env: dict[str, str]) -> float:
    """The epoch's training seconds that the run recorded in metrics.jsonl."""
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"run failed:\n{done.stderr[-2000:]}")
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return float(record["train_seconds"])


def ddp_ratio(data_dir: str | None, threads: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="reffakd-scale-"))
    args = ["train", "--dataset", "fashion-mnist", "--student", "lenet5", "--method", "ce"]
    args += ["--epochs", "1", "--batch-size", "128", "--lr", "0.05", "--no-progress"]
    args += ["--device", "cpu"] + (["--data-dir", data_dir] if data_dir else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    one = train_seconds(
        [sys.executable, "-m", "reffakd", *args, "--out", str(work / "one")], work / "one", env
    )
    per_process = {**env, "OMP_NUM_THREADS": str(max(1, threads // 2))}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun += ["--nproc-per-node", "2", "-m", "reffakd", *args, "--out", str(work / "two")]
    two = train_seconds(torchrun, work / "two", per_process)
    print(
        f"  one process ({threads} threads) {one:.1f} s, 2 DDP processes "
        f"({max(1, threads // 2)} thread each) {two:.1f} s: {two / one:.2f}x the time"
    )
    return {
        "ddp1_epoch_s": round(one, 2),
        "ddp2_epoch_s": round(two, 2),
        "ddp2_over_ddp1": round(two / one, 3),
    }


PARTS = {
    "precision": "precision (step time)",
    "recurrent": "recurrent layers",
    "engine": "engine epoch against pure compute",
    "compile": "torch.compile against eager",
    "ddp": "DDP",
}
MEASURES = {
    "precision": precision_ratios,
    "recurrent": recurrent_ratios,
    "engine": engine_ratios,
    "compile": compile_ratios,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding fashion-mnist/ (else REFFAKD_DATA)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts, comma-separated")
    parser.add_argument("--json", help="also write the ratios to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    units = ", ".join(cpu_bf16_units()) or "none"
    print(f"torch {torch.__version__}, {device}, {threads} threads")
    print(f"CPU {cpu_name()}, bf16 matrix units: {units} (AMX: {'amx_bf16' in units})")
    result: dict[str, object] = {"cpu": cpu_name(), "cpu_bf16_units": units}
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    for part in parts:
        print(f"{PARTS[part]}:")
        if part == "ddp":
            result.update(ddp_ratio(args.data_dir, threads))
        else:
            result.update(MEASURES[part](args.steps, device))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
