"""Batch-wise augmentation with tensor ops, on whatever device the batch lives on.

Random crop with padding, horizontal flip, rotation and the resize to the model's input size are
folded into one affine map per sample and applied with a single ``grid_sample`` call, so a batch
costs one resampling pass whatever the policy (the sampling grid is computed by broadcasting,
see :meth:`BatchTransform.affine_grid`). Sampling uses ``align_corners=False`` and zero
padding: an integer translation lands on pixel centres (an exact crop of the zero-padded image).
Evaluation resizes through the same identity map, so train and eval images agree everywhere,
borders included (a plain ``interpolate`` would repeat edge pixels where ``grid_sample`` fades
them towards the zero padding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentPolicy:
    """Training-time augmentation. ``rotation`` is the maximum angle in degrees."""

    crop_padding: int = 0
    flip: bool = False
    rotation: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self.crop_padding == 0 and not self.flip and self.rotation == 0.0


_IDENTITY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).unsqueeze(0)


class BatchTransform:
    """uint8 (B, C, H, W) -> float (B, C, S, S): augment (train only), resize, normalise.

    ``mean``/``std`` are per-channel in [0, 1] units; pass ``mean=(0,)``, ``std=(1,)`` to keep
    the [0, 1] image (the autoencoder's reconstruction target).
    """

    def __init__(
        self,
        out_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        policy: AugmentPolicy | None = None,
    ) -> None:
        self.out_size = out_size
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        self.policy = policy or AugmentPolicy()
        self._device_constants: tuple[Tensor, Tensor, Tensor] = (_IDENTITY, self.mean, self.std)
        self._base_xy: tuple[Tensor, Tensor] | None = None

    @property
    def augments(self) -> bool:
        """Whether training batches are augmented (evaluation ones never are)."""
        return not self.policy.is_identity

    def __call__(
        self,
        images: Tensor,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
        rows: slice | None = None,
        total: int | None = None,
    ) -> Tensor:
        """``rows``/``total``: ``images`` are rows ``rows`` of a batch of ``total`` split over
        processes; the random maps are drawn for the whole batch and this share kept, so every
        process draws the same numbers and the images are those of a one-process run."""
        x = images.to(torch.float32).div_(255.0)
        augment = train and not self.policy.is_identity
        if augment or x.shape[-2:] != (self.out_size, self.out_size):
            if augment:
                theta = self.random_affine(x.shape[0] if total is None else total, generator)
                if rows is not None:
                    theta = theta[rows]
                theta = theta.to(x.device, non_blocking=True)
            else:
                theta = self._on(x.device)[0].expand(x.shape[0], 2, 3)
            grid = self.affine_grid(theta)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        _, mean, std = self._on(x.device)
        return x.sub_(mean).div_(std)

    def affine_grid(self, theta: Tensor) -> Tensor:
        """``F.affine_grid(theta, [N, C, S, S], align_corners=False)`` by broadcasting:

            grid[n, h, w, i] = (θ[n, i, 0] · x_w + θ[n, i, 1] · y_h) + θ[n, i, 2]

        with x_w, y_h the sampling grid's own pixel-centre coordinates. These are the products
        and sums of ``affine_grid``'s batched (S²×3)·(3×2) matrix product, whose tiny inner
        dimension made it cost several times the ``grid_sample`` itself on a CPU; the grid
        is equal to the last bit on the CPUs this was measured on.
        """
        x, y = self._base(theta.device)
        grid = theta.new_empty(theta.shape[0], self.out_size, self.out_size, 2)
        for i in range(2):
            across = (theta[:, i, 0, None] * x)[:, None, :]
            down = (theta[:, i, 1, None] * y)[:, :, None]
            torch.add(across, down, out=grid[..., i])
            grid[..., i] += theta[:, i, 2, None, None]
        return grid

    def _base(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Pixel-centre coordinates in [-1, 1] along x (width) and y (height): those of
        ``F.affine_grid``'s identity map, so that both grids start from the same numbers."""
        if self._base_xy is None or self._base_xy[0].device != device:
            size = self.out_size
            identity = F.affine_grid(
                _IDENTITY.to(device), [1, 1, size, size], align_corners=False
            )[0]
            self._base_xy = (identity[0, :, 0].contiguous(), identity[:, 0, 1].contiguous())
        return self._base_xy

    def _on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """The identity map, mean and std on ``device``, copied there once (a copy per batch
        would wait for the device's queue on CUDA)."""
        if self._device_constants[1].device != device:
            self._device_constants = tuple(t.to(device) for t in self._device_constants)
        return self._device_constants

    def random_affine(self, batch: int, generator: torch.Generator | None) -> Tensor:
        """Per-sample (B, 2, 3) maps from output to input coordinates (normalised units).

        The crop offset is in pixels of the output (training) size, as a crop taken after the
        resize would be.

        Random numbers are drawn on the CPU from ``generator`` so that a seed gives the same
        augmentation on any device.
        """
        policy = self.policy
        uniform = torch.rand(batch, 3, generator=generator, dtype=torch.float64)
        angle = (uniform[:, 0] * 2 - 1) * math.radians(policy.rotation)
        cos, sin = torch.cos(angle), torch.sin(angle)
        flip = torch.ones(batch, dtype=torch.float64)
        if policy.flip:
            flip = torch.where(uniform[:, 1] < 0.5, -1.0, 1.0).to(torch.float64)
        theta = torch.zeros(batch, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 1] = flip * cos, -flip * sin
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
        if policy.crop_padding:
            pad = policy.crop_padding
            shifts = torch.randint(-pad, pad + 1, (batch, 2), generator=generator)
            theta[:, :, 2] = shifts.to(torch.float64) * 2.0 / self.out_size
        return theta.to(torch.float32)


def channel_stats(images: Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of a uint8 (N, C, H, W) tensor."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].to(torch.float64) / 255.0
        total += part.sum(dim=(0, 2, 3))
        total_sq += (part * part).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()
