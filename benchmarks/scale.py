"""Speed of the training-at-scale options, as ratios measured in one run.

1. Mixed precision: the median time of a training step (autocast forward, backward, SGD step)
   in bf16 (and fp16) against fp32, for LeNet-5 (1x32x32) and ResNet-8 / ResNet-20 (3x32x32),
   batch 128, random data made before the clock starts. On a CPU without native bf16 (no
   AVX512-BF16 / AMX) expect bf16 to be slower, not faster.
2. DDP: the training time of one epoch of LeNet-5 on Fashion-MNIST, the whole machine as one
   process against ``torchrun`` with 2 processes (gloo) and the same global batch. Each DDP
   process gets the machine's threads / 2, so both sides use the same cores; on 2 cores there
   is no speed-up to expect (the same arithmetic, plus the gradient all-reduce).

Usage: python benchmarks/scale.py [--data-dir DIR] [--steps 20] [--skip-ddp] [--device cpu]
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
from pathlib import Path

import torch
import torch.nn.functional as F

from reffakd.models import build_model

MODELS = (("lenet5", 1), ("resnet8", 3), ("resnet20", 3))


def step_seconds(
    name: str, channels: int, dtype: torch.dtype | None, steps: int, device: torch.device
) -> float:
    """Median seconds of one training step of ``name`` (after 3 warm-up steps)."""
    torch.manual_seed(0)
    model = build_model(name, 10, channels, 32).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    inputs = torch.randn(128, channels, 32, 32, device=device)
    labels = torch.randint(0, 10, (128,), device=device)
    times = []
    for step in range(steps + 3):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 3:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def precision_ratios(steps: int, device: torch.device) -> dict[str, float]:
    result = {}
    for name, channels in MODELS:
        fp32 = step_seconds(name, channels, None, steps, device)
        bf16 = step_seconds(name, channels, torch.bfloat16, steps, device)
        fp16 = step_seconds(name, channels, torch.float16, steps, device)
        result[f"{name}_fp32_step_ms"] = round(1e3 * fp32, 2)
        result[f"{name}_bf16_over_fp32"] = round(bf16 / fp32, 3)
        result[f"{name}_fp16_over_fp32"] = round(fp16 / fp32, 3)
        print(
            f"  {name:9s} fp32 {1e3 * fp32:7.1f} ms/step  bf16 {bf16 / fp32:.2f}x  "
            f"fp16 {fp16 / fp32:.2f}x the fp32 time"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding fashion-mnist/ (else REFFAKD_DATA)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model (median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-ddp", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {device}, {threads} threads")
    result = precision_ratios(args.steps, device)
    if not args.skip_ddp:
        result.update(ddp_ratio(args.data_dir, threads))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
