"""Stand-in data for the examples: 10 classes of noisy 28x28 uint8 images, class k a bright bar
at height 2 + 2k. Replace it with your own tensors."""

import torch


def bar_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (n, 1, 28, 28) uint8 and their labels (n,) int64."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 100, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    for k in range(10):
        images[labels == k, :, 2 + 2 * k : 4 + 2 * k, 4:24] = 220
    return images, labels
