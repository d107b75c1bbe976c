"""From a data config to what training needs, whatever the modality.

:func:`prepare_data` reads the dataset, holds out validation and returns a :class:`PreparedData`
of the dataset's modality (picked from :data:`PREPARERS` by ``spec.modality``). Everything the
rest of the package needs to know about the inputs goes through it:

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

Options of one modality set on a dataset of another are refused, never ignored.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from reffakd.config import AugmentConfig, DataConfig
from reffakd.data.augment import AugmentPolicy, BatchTransform, channel_stats
from reffakd.data.dataset import (
    DataSplits,
    check_classes,
    hold_out_validation,
    require_every_class,
)
from reffakd.data.fingerprint import data_fingerprint
from reffakd.data.hf_text import (
    TOKENIZER_FILE,
    HFTokenizer,
    get_tokenizer,
    read_tokenizer_record,
)
from reffakd.data.loader import Transform
from reffakd.data.locate import load_dataset
from reffakd.data.readers.text import TextFileOptions
from reffakd.data.spec import DatasetSpec, get_spec
from reffakd.data.text import (
    PAD,
    UNK,
    VOCAB_FILE,
    TextBatchTransform,
    TextDataSplits,
    TextSplit,
    Vocab,
    default_max_len,
    encode_words,
    prepare_text_splits,
    split_texts,
)
from reffakd.data.text_catalog import load_text_dataset
from reffakd.errors import DataError, UserError


class PreparedData(ABC):
    """A dataset ready for training. Subclasses: :class:`PreparedImages`, :class:`PreparedText`.

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


@dataclass
class PreparedImages(PreparedData):
    """Images: uint8 splits, the model's input size and the train split's channel statistics."""

    modality: ClassVar[str] = "image"
    data_options: ClassVar[frozenset[str]] = frozenset({"image_size"})
    augment_options: ClassVar[frozenset[str]] = frozenset({"crop_padding", "flip", "rotation"})

    spec: DatasetSpec
    splits: DataSplits
    image_size: int
    mean: list[float]
    std: list[float]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, size, size) of a model input."""
        return (self.splits.in_channels, self.image_size, self.image_size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.input_shape

    @property
    def model_input(self) -> dict[str, int]:
        return {"in_channels": self.splits.in_channels, "image_size": self.image_size}

    def example_input(self, batch_size: int = 1) -> Tensor:
        return torch.zeros(batch_size, *self.input_shape)

    def batch_transform(self, augment: AugmentConfig) -> BatchTransform:
        _refuse_foreign(augment, self.augment_options, AUGMENT_OPTIONS, "augment", self.spec)
        policy = augment_policy(self.spec, augment)
        return BatchTransform(self.image_size, self.mean, self.std, policy)

    def input_mismatch(self, run: Path, config: DataConfig) -> str | None:
        spec = get_spec(config.name)
        theirs = {
            "input channels": spec.in_channels,
            "pixels per side": config.image_size or spec.default_image_size,
        }
        ours = {"input channels": self.splits.in_channels, "pixels per side": self.image_size}
        for what, value in theirs.items():
            if value is not None and value != ours[what]:
                return f"its model reads {value} {what}, this run's {ours[what]}"
        return None

    def input_text(self) -> str:
        return "x".join(map(str, self.input_shape)) + " images"


@dataclass
class PreparedText(PreparedData):
    """Text: padded token-id splits (raw strings kept) and the vocabulary built on train."""

    modality: ClassVar[str] = "text"
    data_options: ClassVar[frozenset[str]] = frozenset(
        {"min_freq", "max_vocab", "max_len", "textfile", "train_limit"}
    )
    augment_options: ClassVar[frozenset[str]] = frozenset({"token_dropout"})

    spec: DatasetSpec
    splits: TextDataSplits

    @property
    def vocab(self) -> Vocab:
        return self.splits.vocab

    @property
    def model_input(self) -> dict[str, int]:
        return {"vocab_size": len(self.vocab), "max_len": self.splits.max_len, "pad_id": PAD}

    @property
    def tokens_per_sample(self) -> int:
        """The mean length of the training texts, rounded up: what a text is counted at."""
        lengths = self.splits.train.lengths
        mean = math.ceil(float(lengths.double().mean())) if len(lengths) else 1
        return min(max(mean, 1), self.splits.max_len)

    def example_input(self, batch_size: int = 1) -> Tensor:
        """``tokens_per_sample`` real tokens (``<unk>``) per row, no padding."""
        return torch.full((batch_size, self.tokens_per_sample), UNK, dtype=torch.int64)

    def batch_transform(self, augment: AugmentConfig) -> TextBatchTransform:
        _refuse_foreign(augment, self.augment_options, AUGMENT_OPTIONS, "augment", self.spec)
        return TextBatchTransform(augment.token_dropout if augment.enabled else 0.0)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "tokens_per_sample": self.tokens_per_sample,
            "vocab_fingerprint": self.vocab.fingerprint(),
            "truncated": dict(self.splits.truncated),
            **self.splits.extra,
        }

    def save_inputs(self, folder: Path) -> None:
        """Write ``vocab.json``; one already there (a resumed run) must be the same vocabulary."""
        path = Path(folder) / VOCAB_FILE
        if path.exists():
            mismatch = _vocab_mismatch(Vocab.load(path), self.vocab)
            if mismatch:
                raise UserError(
                    f"{path} holds another vocabulary than this data gives ({mismatch}); the data "
                    "or its settings changed since the run started: start a new run with a new "
                    "--out."
                )
            return
        self.vocab.save(path)

    def input_mismatch(self, run: Path, config: DataConfig) -> str | None:
        path = Path(run) / VOCAB_FILE
        if not path.is_file():
            return f"it has no {VOCAB_FILE}, so its token ids cannot be matched to this run's"
        try:
            theirs = Vocab.load(path)
        except DataError as err:
            return str(err).rstrip(".")
        mismatch = _vocab_mismatch(theirs, self.vocab)
        return f"it was trained with another vocabulary ({mismatch})" if mismatch else None

    def input_text(self) -> str:
        return f"token ids of length {self.splits.max_len} (vocabulary {len(self.vocab):,})"

    def inputs_for(self, tokenizer: str | None, run: Path, config: DataConfig) -> PreparedData:
        if tokenizer is None:
            return self
        return PreparedHFText.encode(
            self.spec, self.splits, get_tokenizer(tokenizer), _recorded_max_len(run, config)
        )


@dataclass
class PreparedHFText(PreparedText):
    """Text as the ids of a Hugging Face tokenizer (:mod:`reffakd.data.hf_text`), for models
    that bring their own (``hf:DIR_OR_ID``). ``splits.vocab`` is the :class:`HFTokenizer`."""

    data_options: ClassVar[frozenset[str]] = frozenset({"max_len", "textfile", "train_limit"})

    @property
    def tokenizer(self) -> HFTokenizer:
        return self.splits.vocab  # type: ignore[return-value]

    @classmethod
    def encode(
        cls, spec: DatasetSpec, splits: TextDataSplits, tokenizer: HFTokenizer, config: DataConfig
    ) -> PreparedHFText:
        """The samples of ``splits`` (same order) as ``tokenizer`` ids; ``max_len``: the
        config's, else the 99th percentile of the training lengths (at most 128)."""
        parts = split_texts(splits)
        max_len = config.max_len or spec.max_len
        if max_len is None:
            max_len = default_max_len(tokenizer.lengths(parts["train"].texts))
        encoded, truncated = {}, {}
        for name, part in parts.items():
            ids, lengths, truncated[name] = tokenizer.encode(part.texts, max_len)
            encoded[name] = TextSplit(ids, lengths, part.labels, splits.class_names, part.texts)
        hf_splits = dataclasses.replace(splits, **encoded, vocab=tokenizer, truncated=truncated)
        return cls(spec, hf_splits)

    @property
    def model_input(self) -> dict[str, int]:
        tokenizer = self.tokenizer
        max_len = self.splits.max_len
        return {"vocab_size": len(tokenizer), "max_len": max_len, "pad_id": tokenizer.pad_id}

    def example_input(self, batch_size: int = 1) -> Tensor:
        """``tokens_per_sample`` real tokens (the tokenizer's unknown token) per row."""
        return torch.full((batch_size, self.tokens_per_sample), self.tokenizer.unk_id)

    def batch_transform(self, augment: AugmentConfig) -> TextBatchTransform:
        _refuse_foreign(augment, self.augment_options, AUGMENT_OPTIONS, "augment", self.spec)
        tokenizer = self.tokenizer
        dropout = augment.token_dropout if augment.enabled else 0.0
        return TextBatchTransform(
            dropout, tokenizer.pad_id, tokenizer.unk_id, tokenizer.special_ids
        )

    def describe(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            **self.model_input,
            "tokenizer": self.tokenizer.reference,
            "tokenizer_fingerprint": self.tokenizer.fingerprint(),
            "tokens_per_sample": self.tokens_per_sample,
            "truncated": dict(self.splits.truncated),
            **self.splits.extra,
        }

    def save_inputs(self, folder: Path) -> None:
        """Write ``tokenizer.json``; one already there (a resumed run) must name the same
        tokenizer."""
        if (Path(folder) / TOKENIZER_FILE).exists():
            mismatch = self.input_mismatch(Path(folder), DataConfig())
            if mismatch:
                raise UserError(
                    f"{folder} was made with another tokenizer ({mismatch}); start a new run "
                    "with a new --out."
                )
            return
        self.tokenizer.save(Path(folder), self.splits.max_len)

    def input_mismatch(self, run: Path, config: DataConfig) -> str | None:
        if not (Path(run) / TOKENIZER_FILE).is_file():
            return f"it has no {TOKENIZER_FILE}, so it does not read {self.tokenizer.reference} ids"
        try:
            record = read_tokenizer_record(Path(run))
        except DataError as err:
            return str(err).rstrip(".")
        if record.get("fingerprint") != self.tokenizer.fingerprint():
            return (
                f"it was trained with another tokenizer ({record.get('tokenizer')}, fingerprint "
                f"{str(record.get('fingerprint'))[:12]}; this run {self.tokenizer.reference}, "
                f"{self.tokenizer.fingerprint()[:12]})"
            )
        return None

    def input_text(self) -> str:
        return f"{self.tokenizer.reference} ids of length {self.splits.max_len}"

    def inputs_for(self, tokenizer: str | None, run: Path, config: DataConfig) -> PreparedData:
        if tokenizer is None:  # a word-level model: its run's vocabulary
            path = Path(run) / VOCAB_FILE
            if not path.is_file():
                raise UserError(
                    f"{run} has no {VOCAB_FILE}, so its token ids cannot be made for this run's "
                    "texts; pass a run trained on this dataset."
                )
            words = encode_words(self.splits, Vocab.load(path), config.max_len)
            return PreparedText(self.spec, words)
        theirs = get_tokenizer(tokenizer)
        if theirs.fingerprint() == self.tokenizer.fingerprint():
            return self
        return PreparedHFText.encode(self.spec, self.splits, theirs, _recorded_max_len(run, config))


def _recorded_max_len(run: Path, config: DataConfig) -> DataConfig:
    """``config`` with the ``max_len`` an hf run recorded in its ``tokenizer.json`` (its own
    default, measured on its training texts) when the config leaves it to the default."""
    path = Path(run) / TOKENIZER_FILE
    if config.max_len is not None or not path.is_file():
        return config
    return dataclasses.replace(config, max_len=read_tokenizer_record(Path(run)).get("max_len"))


def _vocab_mismatch(theirs: Vocab, ours: Vocab) -> str | None:
    if theirs == ours:
        return None
    return (
        f"{len(theirs):,} tokens, fingerprint {theirs.fingerprint()[:12]}; this run "
        f"{len(ours):,} tokens, {ours.fingerprint()[:12]}"
    )


# ---------------------------------------------------------------------------------------------
# Preparing


def prepare_images(spec: DatasetSpec, config: DataConfig) -> PreparedImages:
    """Load the images, hold out validation, and compute normalisation from the train part."""
    raw = load_dataset(config.name, data_dir=config.data_dir, download=config.download)
    splits = hold_out_validation(raw, config.val_fraction, config.split_seed)
    check_classes(raw, splits, config.val_fraction)
    mean, std = channel_stats(splits.train.images)
    image_size = config.image_size or spec.default_image_size or splits.train.shape[-1]
    return PreparedImages(spec, splits, image_size, mean, std)


def prepare_text(spec: DatasetSpec, config: DataConfig) -> PreparedText:
    """Load the texts, hold out validation, build the vocabulary on the rest of train, encode."""
    try:
        options = TextFileOptions(**config.textfile)
    except TypeError:
        known = ", ".join(f.name for f in dataclasses.fields(TextFileOptions))
        raise UserError(
            f"unknown key in data.textfile {sorted(config.textfile)}; its keys are: {known}."
        ) from None
    raw = load_text_dataset(config.name, config.data_dir, config.download, options)
    splits = prepare_text_splits(
        raw,
        config.val_fraction,
        config.split_seed,
        min_freq=config.min_freq,
        max_size=config.max_vocab,
        max_len=config.max_len or spec.max_len,
        train_limit=config.train_limit,
    )
    require_every_class(
        spec.name,
        list(splits.class_names),
        splits.train.labels,
        "add texts of that class, or lower data.val_fraction or raise data.train_limit.",
    )
    return PreparedText(spec, splits)


def prepare_tokenized_text(spec: DatasetSpec, config: DataConfig, tokenizer: str) -> PreparedData:
    """Text read as in :func:`prepare_text`, then encoded with ``tokenizer``'s ids."""
    defaults = DataConfig()
    for key in sorted(PreparedText.data_options - PreparedHFText.data_options):
        if getattr(config, key) != getattr(defaults, key):
            raise UserError(
                f"data.{key} shapes the word-level vocabulary, and the model reads the ids of "
                f"its own tokenizer ({tokenizer}); drop that setting."
            )
    loaded = get_tokenizer(tokenizer)  # before the data: an unloadable tokenizer fails fast
    words = prepare_text(spec, dataclasses.replace(config, max_len=None))
    return PreparedHFText.encode(spec, words.splits, loaded, config)


PREPARERS: dict[str, Callable[[DatasetSpec, DataConfig], PreparedData]] = {
    "image": prepare_images,
    "text": prepare_text,
}
PREPARED_TYPES: dict[str, type[PreparedData]] = {"image": PreparedImages, "text": PreparedText}
DATA_OPTIONS = {name: kind.data_options for name, kind in PREPARED_TYPES.items()}
AUGMENT_OPTIONS = {name: kind.augment_options for name, kind in PREPARED_TYPES.items()}


def prepare_data(config: DataConfig, tokenizer: str | None = None) -> PreparedData:
    """Read the dataset of ``config`` and prepare it for its modality.

    ``tokenizer``: the tokenizer the model brings (``hf:DIR_OR_ID``, see
    :func:`reffakd.models.input_tokenizer`); text is then encoded with its ids."""
    spec = get_spec(config.name)
    own = PREPARED_TYPES[spec.modality].data_options
    _refuse_foreign(config, own, DATA_OPTIONS, "data", spec)
    prepared = PREPARERS[spec.modality](spec, config) if tokenizer is None else None
    if prepared is not None:
        return prepared
    if spec.modality != "text":
        raise UserError(
            f"a model with its own tokenizer ({tokenizer}) reads text, and {spec.name} is "
            f"{spec.modality} data; use a text dataset."
        )
    return prepare_tokenized_text(spec, config, tokenizer)


def _refuse_foreign(
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
                    f"{section}.{key} applies to {modality} datasets, and {spec.name} is a "
                    f"{spec.modality} dataset; drop that setting."
                )


def augment_policy(spec: DatasetSpec, config: AugmentConfig) -> AugmentPolicy:
    """The dataset's default policy with any explicitly set field replaced."""
    if not config.enabled:
        return AugmentPolicy()
    defaults = spec.augment
    return AugmentPolicy(
        crop_padding=int(_pick(config.crop_padding, defaults.get("crop_padding", 0))),
        flip=bool(_pick(config.flip, defaults.get("flip", False))),
        rotation=float(_pick(config.rotation, defaults.get("rotation", 0.0))),
    )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value
