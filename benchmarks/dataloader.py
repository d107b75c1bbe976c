"""Batch data pipeline versus a standard per-sample ``torch.utils.data.DataLoader``.

Both feed the same LeNet-5 training step (SGD, batch 128) on Fashion-MNIST with the same
augmentation (resize 28->32, horizontal flip, rotation ±15°, normalisation):

* baselines: a ``Dataset`` whose ``__getitem__`` augments one image, batched by a ``DataLoader``
  with 2 worker processes. ``pil`` is the usual torchvision-style pipeline (PIL resize, flip and
  rotate, then to-tensor and normalise, as ``torchvision.transforms`` does it); ``tensor`` does
  the same with one ``affine_grid`` + ``grid_sample`` per image;
* ours: uint8 data held in memory, a batch is an index gather, one ``grid_sample`` per batch.

Prints seconds for each and the ratio (baseline / ours), measured in one run.
Usage: python benchmarks/dataloader.py [--data-dir DIR] [--steps N] [--baselines pil,tensor]
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reffakd.config import DataConfig
from reffakd.data.augment import AugmentPolicy, BatchTransform
from reffakd.data.loader import BatchLoader
from reffakd.data.prepare import prepare_data
from reffakd.models import build_model


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


class PerSamplePIL(Dataset):
    """One image at a time through PIL, the way ``torchvision.transforms`` augments: Resize,
    RandomHorizontalFlip, RandomRotation (bilinear), ToTensor, Normalize."""

    def __init__(self, images, labels, size: int, mean, std, rotation: float) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy()  # N, H, W, C for PIL
        self.labels, self.size, self.rotation = labels, size, rotation
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        array = self.images[index]
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        if random.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        angle = random.uniform(-self.rotation, self.rotation)
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
        x = pixels.view(self.size, self.size, -1).permute(2, 0, 1).float().div(255.0)
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
    parser.add_argument(
        "--baselines", default="pil,tensor", help="comma-separated: pil, tensor (default: both)"
    )
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

    datasets = {"pil": PerSamplePIL, "tensor": PerSampleAugmented}
    baselines = {}
    for name in args.baselines.split(","):
        dataset = datasets[name](train.images, train.labels, size, data.mean, data.std, 15.0)
        baseline_loader = DataLoader(
            dataset, batch_size=128, shuffle=True, num_workers=args.workers
        )
        baselines[name] = train_steps(iter(baseline_loader), steps, size)
    print(
        f"{steps} steps of LeNet-5, batch 128, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"  batch pipeline (index gather + one grid_sample per batch): {ours:7.2f}s")
    for name, seconds in baselines.items():
        print(
            f"  DataLoader, per-sample {name} augmentation, {args.workers} workers: "
            f"{seconds:7.2f}s  ratio baseline / ours: {seconds / ours:.2f}x"
        )


if __name__ == "__main__":
    main()
