"""Soft labels for your own data: ``AESL.fit(data, num_classes)`` trains ReffAKD's autoencoder on
it and returns the (C, C) soft-label table, ready for :class:`~reffakd.aesl.loss.ReffAKDLoss`.

``data`` is any form :mod:`reffakd.data.user` reads (a torch ``Dataset``, a Hugging Face
dataset, tensors, an iterable of batches). The autoencoder is chosen by what the inputs are,
through the :data:`MODALITIES` table: each entry says which inputs it accepts and trains its
autoencoder with the project's machinery (for images: the CAE, the ``Reconstruction`` task on
the standard engine, :func:`~reffakd.aesl.autoencoder.make_soft_labels`), so the labels are the
ones ``reffakd soft-labels`` makes for the same data and recipe. ``modality=`` picks an entry
by name. Another input type adds an entry with ``@MODALITIES.register(name)`` in its module,
listed in the table's ``autoload`` (or through the ``reffakd.modalities`` entry-point group).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.config import AugmentConfig, DataConfig, OptimConfig, SoftLabelConfig, from_dict
from reffakd.data.dataset import RawDataset, hold_out_validation
from reffakd.data.user import (
    DEFAULT_KEYS,
    USER_DATA,
    class_names_of,
    gather,
    image_split,
    prepare_user_data,
)
from reffakd.errors import UserError
from reffakd.kd.source_base import check_options
from reffakd.registry import Registry


class Modality(Protocol):
    """An input type with an autoencoder that makes soft labels for it."""

    accepts_text: str  # what it takes, for error messages

    def accepts(self, inputs: Tensor) -> bool: ...

    def fit(
        self,
        inputs: Tensor,
        labels: Tensor,
        class_names: list[str],
        config: SoftLabelConfig,
        out: Path,
        **options: Any,
    ) -> SoftLabels: ...


COMPLEX = (torch.complex64, torch.complex128)
MODALITIES: Registry[Modality] = Registry("input modality", entry_points="reffakd.modalities")


class ImageModality:
    """Images (N, C, H, W) or (N, H, W), uint8 or float in [0, 1], of any size and channel count:
    the convolutional autoencoder, at the side rounded up to a multiple of 8."""

    accepts_text = "images (N, C, H, W) or (N, H, W), uint8 or float in [0, 1]"

    def accepts(self, inputs: Tensor) -> bool:
        return inputs.dim() in (3, 4) and inputs.dtype not in (torch.bool, *COMPLEX)

    def fit(
        self,
        inputs: Tensor,
        labels: Tensor,
        class_names: list[str],
        config: SoftLabelConfig,
        out: Path,
        image_size: int | None = None,
        augment: dict[str, Any] | None = None,
    ) -> SoftLabels:
        """``image_size``: the side images are resized to (default: their larger side);
        ``augment``: augmentation while the autoencoder trains, e.g. ``{"flip": True}``
        (default none)."""
        split = image_split(inputs, labels, class_names)
        empty = split.subset(labels[:0])
        raw = RawDataset(USER_DATA, split, empty, source=USER_DATA)
        splits = hold_out_validation(raw, config.data.val_fraction, config.data.split_seed)
        size = image_size or max(split.shape[1:])
        config.augment = from_dict(AugmentConfig, augment or {}, "augment.")
        return make_soft_labels(config, out, data=prepare_user_data(splits, size))


MODALITIES.add("image", ImageModality())


class AESL:
    """ReffAKD's autoencoder soft labels (AESL) for your own data.

    >>> labels = AESL.fit((images, targets), num_classes=10)      # doctest: +SKIP
    >>> criterion = ReffAKDLoss(labels)                           # doctest: +SKIP
    """

    modalities = MODALITIES

    @staticmethod
    def fit(
        data: Any,
        num_classes: int,
        *,
        class_names: Sequence[str] | None = None,
        epochs: int = 4,
        batch_size: int = 128,
        lr: float = 0.1,
        samples_per_class: int = 40,
        boost: float | None = None,
        temperature: float = 1.0,
        val_fraction: float = 0.1,
        seed: int = 0,
        device: str = "auto",
        progress: bool = True,
        keys: Sequence[str] = DEFAULT_KEYS,
        modality: str | None = None,
        out: str | Path | None = None,
        **options: Any,
    ) -> SoftLabels:
        """Train the autoencoder on ``data`` and return its soft labels.

        The recipe is ``reffakd soft-labels``'s: SGD for ``epochs`` (the learning rate drops
        by 5x for the last epoch), the best epoch on a stratified ``val_fraction`` hold-out,
        then ``samples_per_class`` embeddings per class give the class similarity S and
        ``softmax((S + boost I) / temperature)`` (``boost`` None: 0.008). Seeded by ``seed``;
        a progress bar shows while ``progress``. ``keys`` name the input and label of mapping
        items (Hugging Face rows). ``out`` keeps the autoencoder's run directory (checkpoints,
        curves, heatmap, summary.json for ``reffakd report``); by default it is a temporary
        folder, removed afterwards. Other keyword options go to the modality (images:
        ``image_size``, ``augment``).
        """
        inputs, labels = gather(data, keys)
        names = _class_names(data, num_classes, class_names, keys)
        name = _pick_modality(inputs, modality)
        kind = MODALITIES.get(name)
        check_options(kind.fit, options, f"modality {name!r}", "modality", skip=5)
        config = SoftLabelConfig(
            data=DataConfig(name=USER_DATA, val_fraction=val_fraction, split_seed=seed),
            optim=OptimConfig(
                epochs=epochs, batch_size=batch_size, lr=lr, milestones=[max(epochs - 1, 1)]
            ),
            samples_per_class=samples_per_class,
            boost=boost,
            temperature=temperature,
            seed=seed,
            device=device,
            progress=progress,
        )
        if out is not None:
            return kind.fit(inputs, labels, names, config, Path(out), **options)
        with tempfile.TemporaryDirectory(prefix="reffakd-aesl-") as folder:
            return kind.fit(inputs, labels, names, config, Path(folder) / "aesl", **options)

    @staticmethod
    def load(path: str | Path) -> SoftLabels:
        """Soft labels saved with ``labels.save(path)`` or made by ``reffakd soft-labels``."""
        return SoftLabels.load(path)


def _class_names(
    data: Any, num_classes: int, given: Sequence[str] | None, keys: Sequence[str]
) -> list[str]:
    if num_classes < 2:
        raise UserError(f"soft labels need num_classes >= 2, got {num_classes}.")
    names = list(given) if given is not None else class_names_of(data, keys[1])
    if names is None:
        return [str(k) for k in range(num_classes)]
    if len(names) != num_classes:
        raise UserError(
            f"{len(names)} class names for num_classes={num_classes}; pass matching ones."
        )
    return [str(n) for n in names]


def _pick_modality(inputs: Tensor, modality: str | None) -> str:
    """The modality named, or the only one that accepts ``inputs``."""
    if modality is not None:
        if not MODALITIES.get(modality).accepts(inputs):
            raise UserError(
                f"modality {modality!r} takes {MODALITIES.get(modality).accepts_text}; got "
                f"{inputs.dtype} inputs of shape {tuple(inputs.shape)}."
            )
        return modality
    matches = [name for name in MODALITIES if MODALITIES.get(name).accepts(inputs)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = "; ".join(f"{n}: {MODALITIES.get(n).accepts_text}" for n in MODALITIES)
        raise UserError(
            f"no autoencoder takes {inputs.dtype} inputs of shape {tuple(inputs.shape)} "
            f"(known: {known})."
        )
    raise UserError(
        f"inputs of shape {tuple(inputs.shape)} fit several modalities ({', '.join(matches)}); "
        "pick one with modality=."
    )
