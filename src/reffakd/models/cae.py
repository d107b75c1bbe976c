"""The ReffAKD convolutional autoencoder.

Its encoder embeddings of class samples give the similarity matrix from which soft labels are
built; the decoder is only used to train it on reconstruction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reffakd.models import register_model

ENCODER_CHANNELS = (12, 24, 48)
DOWNSAMPLE = 2 ** len(ENCODER_CHANNELS)


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1)


def _deconv(in_ch: int, out_ch: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1)


class ConvAutoencoder(nn.Module):
    """Three stride-2 conv layers (C -> 12 -> 24 -> 48) and a mirrored transposed-conv decoder.

    ``encode`` returns the flattened bottleneck, of size ``48 * (image_size // 8) ** 2``;
    ``forward`` returns the reconstruction in ``[0, 1]``.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        if image_size < DOWNSAMPLE or image_size % DOWNSAMPLE:
            raise ValueError(
                f"the autoencoder needs an image size that is a multiple of {DOWNSAMPLE}, "
                f"got {image_size}"
            )
        self.in_channels = in_channels
        self.image_size = image_size
        c1, c2, c3 = ENCODER_CHANNELS
        self.encoder = nn.Sequential(
            _conv(in_channels, c1),
            nn.ReLU(inplace=True),
            _conv(c1, c2),
            nn.ReLU(inplace=True),
            _conv(c2, c3),
            nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            _deconv(c3, c2),
            nn.ReLU(inplace=True),
            _deconv(c2, c1),
            nn.ReLU(inplace=True),
            _deconv(c1, in_channels),
            nn.Sigmoid(),
        )
        self.embedding_dim = c3 * (image_size // DOWNSAMPLE) ** 2

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened encoder output, shape ``(B, embedding_dim)``."""
        return self.encoder(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @property
    def encoder_network(self) -> nn.Module:
        """The network that makes the embeddings (what embedding samples costs)."""
        return self.encoder

    def per_sample_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error of each image, ``(B,)``."""
        return F.mse_loss(self(x), x, reduction="none").flatten(1).mean(dim=1)

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error over the batch (the training loss)."""
        return F.mse_loss(self(x), x)


@register_model("cae")
def cae(num_classes: int = 0, in_channels: int = 3, image_size: int = 32) -> ConvAutoencoder:
    """The ReffAKD autoencoder; ``num_classes`` is ignored."""
    del num_classes
    return ConvAutoencoder(in_channels=in_channels, image_size=image_size)
