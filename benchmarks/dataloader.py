"""Batch data pipeline versus a standard per-sample ``torch.utils.data.DataLoader``.

Both feed the same LeNet-5 training step (SGD, batch 128) on Fashion-MNIST with the same
augmentation (resize 28->32, horizontal flip, rotation ±15°, normalisation):

* baseline: a ``Dataset`` whose ``__getitem__`` augments one image with tensor ops, batched by a
  ``DataLoader`` with 2 worker processes (the usual torchvision-style pipeline);
* ours: uint8 data held in memory, a batch is an index gather, one ``grid_sample`` per batch.

Prints seconds per epoch for each and the ratio (baseline / ours), measured in one run.
Usage: python benchmarks/dataloader.py [--data-dir DIR] [--steps N]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from reffakd.config import DataConfig
from reffakd.data.augment import AugmentPolicy, BatchTransform
from reffakd.data.loader import BatchLoader
from reffakd.models import build_model
from reffakd.pipeline import prepare_data


class PerSampleAugmented(Dataset):
    """One image at a time: the same affine augmentation, per sample."""

    def __init__(self, images, labels, size: int, mean, std, rotation: float) -> None:
        self.images, self.labels, self.size = images, labels, size
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.rotation = math.radians(rotation)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        x = self.images[index].float().div(255.0).unsqueeze(0)
        angle = (torch.rand(()) * 2 - 1) * self.rotation
        flip = -1.0 if torch.rand(()) < 0.5 else 1.0
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.tensor([[flip * cos, -flip * sin, 0.0], [sin, cos, 0.0]]).unsqueeze(0)
        grid = F.affine_grid(theta, [1, x.shape[1], self.size, self.size], align_corners=False)
        x = F.grid_sample(x, grid, align_corners=False)[0]
        return (x - self.mean) / self.std, self.labels[index]


def train_steps(batches, steps: int, image_size: int) -> float:
    torch.manual_seed(0)
    model = build_model("lenet5", 10, 1, image_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    started = time.perf_counter()
    for step, (x, y) in enumerate(batches):
        if step == steps:
            break
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--steps", type=int, default=0, help="steps to time (default: 1 epoch)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    data = prepare_data(DataConfig(name="fashion-mnist", data_dir=args.data_dir))
    train, size = data.splits.train, data.image_size
    steps = args.steps or math.ceil(len(train) / 128)
    policy = AugmentPolicy(flip=True, rotation=15.0)

    transform = BatchTransform(size, data.mean, data.std, policy)
    generator = torch.Generator().manual_seed(0)
    loader = BatchLoader(train, 128, shuffle=True, generator=generator)
    ours_batches = (
        (transform(b.images, train=True, generator=generator), b.labels) for b in loader
    )
    ours = train_steps(ours_batches, steps, size)

    dataset = PerSampleAugmented(train.images, train.labels, size, data.mean, data.std, 15.0)
    baseline_loader = DataLoader(
        dataset, batch_size=128, shuffle=True, num_workers=args.workers, persistent_workers=False
    )
    baseline = train_steps(iter(baseline_loader), steps, size)
    print(
        f"{steps} steps of LeNet-5, batch 128, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"  DataLoader, per-sample augmentation, {args.workers} workers: {baseline:7.2f}s")
    print(f"  batch pipeline (index gather + one grid_sample per batch):  {ours:7.2f}s")
    print(f"  ratio baseline / ours: {baseline / ours:.2f}x")


if __name__ == "__main__":
    main()
