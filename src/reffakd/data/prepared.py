"""What training gets from a dataset, whatever the modality: the :class:`PreparedData` contract.

:func:`reffakd.data.prepare.prepare_data` returns one per modality
(:class:`~reffakd.data.prepared_images.PreparedImages`,
:class:`~reffakd.data.prepared_text.PreparedText`). Everything the rest of the package needs to
know about the inputs goes through it:

* ``splits``: train / validation / test (:class:`ImageSplit` s or :class:`TextSplit` s);
* ``model_input``: the keyword inputs of a model factory of that modality (images:
  ``in_channels``, ``image_size``; text: ``vocab_size``, ``max_len``, ``pad_id``), so
  ``build_model(name, num_classes, **data.model_input)`` builds any model for the data;
* ``example_input(batch)``: a model-ready batch for cost counting (zero images at the model's
  size; token ids of the mean training length, every position a real token: batches are
  grouped by length and trimmed to their longest text, so a text costs about its own length);
* ``batch_transform(augment)``: the engine's transform (images: augment, resize, normalise;
  text: trim each batch to its longest row, token dropout (off by default));
* ``save_inputs(folder)`` / ``input_mismatch(run, config)``: what a run directory records about
  its inputs (the vocabulary) and whether another run's model reads the same inputs.

Options of one modality set on a dataset of another are refused (:func:`refuse_foreign`),
never ignored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor

from reffakd.config import AugmentConfig, DataConfig
from reffakd.data.fingerprint import data_fingerprint
from reffakd.data.loader import Transform
from reffakd.data.spec import DatasetSpec
from reffakd.errors import UserError

# The config keys that only one modality reads, by modality (each PreparedData subclass names
# its own set from here).
DATA_OPTIONS: dict[str, frozenset[str]] = {
    "image": frozenset({"image_size", "train_limit"}),
    "text": frozenset({"min_freq", "max_vocab", "max_len", "textfile", "train_limit"}),
}
AUGMENT_OPTIONS: dict[str, frozenset[str]] = {
    "image": frozenset({"crop_padding", "flip", "rotation"}),
    "text": frozenset({"token_dropout"}),
}


class PreparedData(ABC):
    """A dataset ready for training; one subclass per modality (see the module docstring).

    ``data_options`` / ``augment_options`` name the config keys that only this modality reads.
    """

    modality: ClassVar[str]
    data_options: ClassVar[frozenset[str]]
    augment_options: ClassVar[frozenset[str]]
    spec: DatasetSpec
    splits: Any  # DataSplits or TextDataSplits: train, val, test, class_names, sizes()

    @property
    @abstractmethod
    def model_input(self) -> dict[str, int]:
        """The keyword inputs of a model factory for this data (see the module docstring)."""

    @abstractmethod
    def example_input(self, batch_size: int = 1) -> Tensor:
        """A model-ready batch of ``batch_size`` samples, for counting FLOPs."""

    @abstractmethod
    def batch_transform(self, augment: AugmentConfig) -> Transform:
        """The transform the engine applies to every batch."""

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(channels, size, size) of a model input, or None when the inputs are not images."""
        return None

    def describe(self) -> dict[str, Any]:
        """What a run summary records about the inputs."""
        return {"modality": self.modality, **self.model_input}

    def fingerprint(self) -> dict[str, Any]:
        """Class names, split sizes and label hashes (:mod:`reffakd.data.fingerprint`)."""
        return data_fingerprint(self.splits)

    def save_inputs(self, folder: Path) -> None:
        """Record in a run directory what its model's inputs mean (default: nothing to record)."""
        return None

    def input_mismatch(self, run: Path, config: DataConfig) -> str | None:
        """Why a model trained by ``run`` (with data ``config``) cannot read these inputs, or
        None when it can."""
        return None

    def input_text(self) -> str:
        """The model input in words, for messages."""
        return ", ".join(f"{k} {v}" for k, v in self.model_input.items())

    def inputs_for(self, tokenizer: str | None, run: Path, config: DataConfig) -> PreparedData:
        """These samples as the model of ``run`` (trained with data ``config``) reads them.

        ``tokenizer``: the tokenizer that model brings (None: it reads the dataset's own
        encoding). Returns ``self`` when it reads these very inputs, else the same samples (same
        splits, same order, so the same sample indices) in that model's encoding.
        """
        if tokenizer is not None:
            raise UserError(
                f"a model with its own tokenizer ({tokenizer}) reads text, and {self.spec.name} "
                f"is {self.modality} data; use a text dataset."
            )
        return self


def refuse_foreign(
    config: Any,
    own: frozenset[str],
    by_modality: dict[str, frozenset[str]],
    section: str,
    spec: DatasetSpec,
) -> None:
    """UserError for a key of another modality set away from its default."""
    defaults = type(config)()
    for modality, keys in by_modality.items():
        for key in sorted(keys - own):
            if getattr(config, key) != getattr(defaults, key):
                raise UserError(
                    f"{section}.{key} applies to {modality} datasets, and {spec.name} is "
                    f"{_article(spec.modality)} {spec.modality} dataset; drop that setting."
                )


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
