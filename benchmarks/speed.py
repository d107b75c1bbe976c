"""Speed of the training pipeline and of AESL, as ratios measured in one run.

1. Training throughput of LeNet-5 on Fashion-MNIST (batch 128) through the engine: batch index
   gathers, augmentation (resize 28->32, flip, rotation) on the model's device, forward,
   backward, SGD step, metrics.
2. Epoch wall time / pure compute: the same number of forward+backward+step calls of the same
   model on pre-made tensors, with plain cross-entropy. 1.0 means data path and loss are free.
3. Epoch wall time / pure compute with augmentation: the same steps on pre-gathered uint8
   batches, each augmented by the same ``BatchTransform`` and trained with the method's own loss
   (``Distiller.forward_train``). What is left above 1.0 is the engine's own work: the index
   gathers, the metrics, the non-finite check and the loop.
4. AESL from embeddings (C=100, k=40, d=768): the vectorised class pooling against the reference
   notebooks' pairwise double loop, checking the values agree to 1e-6.

``--profile`` also runs one ``reffakd`` epoch under ``torch.profiler`` and prints the operators
with the most self CPU time.

Usage: python benchmarks/speed.py [--data-dir DIR] [--epochs 2] [--skip-naive] [--profile]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from reffakd.aesl import class_similarity
from reffakd.config import AugmentConfig, DataConfig, OptimConfig
from reffakd.data.augment import BatchTransform
from reffakd.data.loader import BatchLoader
from reffakd.data.prepare import prepare_data
from reffakd.data.prepared_images import augment_policy
from reffakd.kd.loss_objectives import build_objective
from reffakd.kd.source_teachers import ClassTableSource
from reffakd.kd.task import Distiller
from reffakd.models import build_model
from reffakd.training.engine import Trainer
from reffakd.training.rundir import RunDir

BATCH = 128


def pure_compute_seconds(steps: int, batch: int, image_size: int, seed: int = 0) -> float:
    """Forward+backward+step of LeNet-5 on tensors made before the clock starts."""
    torch.manual_seed(seed)
    model = build_model("lenet5", 10, 1, image_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    inputs = torch.randn(8, batch, 1, image_size, image_size)
    targets = torch.randint(0, 10, (8, batch))
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        loss = F.cross_entropy(model(inputs[step % 8]), targets[step % 8])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def make_task(method: str, image_size: int, seed: int) -> Distiller:
    """LeNet-5 with plain cross-entropy (``ce``) or KD on a fixed class table (``reffakd``)."""
    torch.manual_seed(seed)
    student = build_model("lenet5", 10, 1, image_size)
    if method == "reffakd":
        table = torch.softmax(torch.rand(10, 10) + torch.eye(10), dim=1)
        objective = build_objective(
            "kd", {"alpha": 0.9, "temperature": 4.0, "teacher_temperature": 1.0}
        )
        return Distiller(student, ClassTableSource(table), objective)
    return Distiller(student, None, build_objective("ce", {}))


def make_transform(data) -> BatchTransform:
    policy = augment_policy(data.spec, AugmentConfig())
    return BatchTransform(data.image_size, data.mean, data.std, policy)


def augmented_compute_seconds(data, method: str, steps: int, seed: int = 0) -> float:
    """The method's step on pre-gathered uint8 batches, augmentation included: the engine's
    epoch without its loader, metrics and checks."""
    task = make_task(method, data.image_size, seed)
    transform = make_transform(data)
    optimizer = torch.optim.SGD(task.student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(seed)
    picks = [torch.randperm(len(data.splits.train), generator=generator)[:BATCH] for _ in range(8)]
    batches = [(data.splits.train.inputs[i], data.splits.train.labels[i], i) for i in picks]
    task.train()
    started = time.perf_counter()
    for step in range(steps):
        images, labels, indices = batches[step % 8]
        inputs = transform(images, train=True, generator=generator)
        _, losses = task.forward_train(inputs, labels, indices, 1)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def engine_epoch_seconds(data, method: str, tmp: str, seed: int = 0) -> tuple[float, int]:
    """Train seconds of one engine epoch (no evaluation), and the number of steps."""
    trainer = Trainer(
        make_task(method, data.image_size, seed),
        data.splits,
        make_transform(data),
        OptimConfig(epochs=1, batch_size=BATCH, lr=0.05),
        RunDir(tmp),
        progress=False,
    )
    loader = BatchLoader(data.splits.train, BATCH, shuffle=True, generator=trainer.data_generator)
    started = time.perf_counter()
    trainer.train_one_epoch(1, loader)
    return time.perf_counter() - started, len(loader)


def profile_epoch(data, tmp: str, rows: int = 15) -> None:
    """One ``reffakd`` engine epoch under torch.profiler: the operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine_epoch_seconds(data, "reffakd", tmp)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def naive_similarity(embeddings: np.ndarray, labels: np.ndarray, c: int) -> np.ndarray:
    """The reference recipe: cosine of every ordered pair of distinct samples, class-pooled."""
    sums = np.zeros((c, c))
    counts = np.zeros((c, c))
    norms = np.linalg.norm(embeddings, axis=1)
    for i, j in itertools.permutations(range(len(embeddings)), 2):
        cos = float(np.dot(embeddings[i], embeddings[j])) / (norms[i] * norms[j])
        sums[labels[i], labels[j]] += cos
        counts[labels[i], labels[j]] += 1
    return sums / counts


def aesl_benchmark(skip_naive: bool, classes: int = 100, k: int = 40, dim: int = 768) -> dict:
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(classes * k, dim, generator=generator).relu()
    labels = torch.arange(classes).repeat_interleave(k)
    class_similarity(embeddings, labels, classes)  # warm-up
    times = []
    for _ in range(20):
        started = time.perf_counter()
        fast = class_similarity(embeddings, labels, classes)
        times.append(time.perf_counter() - started)
    result = {"aesl_vectorized_ms": round(1e3 * statistics.median(times), 3)}
    if not skip_naive:
        started = time.perf_counter()
        slow = naive_similarity(embeddings.double().numpy(), labels.numpy(), classes)
        naive = time.perf_counter() - started
        result.update(
            aesl_naive_s=round(naive, 2),
            aesl_speedup=round(naive / statistics.median(times)),
            aesl_max_abs_diff=float(np.abs(slow - fast.numpy()).max()),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=2, help="engine epochs to time (median)")
    parser.add_argument("--skip-naive", action="store_true", help="skip the ~minutes-long loop")
    parser.add_argument("--profile", action="store_true", help="profile one reffakd epoch")
    parser.add_argument("--tmp", help="scratch run directory (default: a temporary folder)")
    args = parser.parse_args()
    args.tmp = args.tmp or tempfile.mkdtemp(prefix="reffakd-speed-")
    data = prepare_data(DataConfig(name="fashion-mnist", data_dir=args.data_dir))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{len(data.splits.train)} training images"
    )
    rows = []
    for epoch in range(args.epochs):
        for method in ("ce", "reffakd"):
            seconds, steps = engine_epoch_seconds(data, method, args.tmp, seed=epoch)
            pure = pure_compute_seconds(steps, BATCH, data.image_size, seed=epoch)
            augmented = augmented_compute_seconds(data, method, steps, seed=epoch)
            rows.append(
                {
                    "method": method,
                    "over_pure": seconds / pure,
                    "over_augmented": seconds / augmented,
                    "images_per_s": len(data.splits.train) / seconds,
                }
            )
            print(
                f"  {method:8s} epoch {seconds:6.2f}s  pure compute {pure:6.2f}s  "
                f"with augmentation and loss {augmented:6.2f}s  ratios {seconds / pure:.3f} "
                f"/ {seconds / augmented:.3f}  {len(data.splits.train) / seconds:,.0f} img/s"
            )
    result = {}
    for method in ("ce", "reffakd"):
        mine = [r for r in rows if r["method"] == method]
        result[f"{method}_images_per_s"] = round(statistics.median(r["images_per_s"] for r in mine))
        for key in ("over_pure", "over_augmented"):
            result[f"{method}_epoch_{key}"] = round(statistics.median(r[key] for r in mine), 3)
    result.update(aesl_benchmark(args.skip_naive))
    print(json.dumps(result, indent=2))
    if args.profile:
        profile_epoch(data, args.tmp)


if __name__ == "__main__":
    main()
