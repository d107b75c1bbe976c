"""Text prepared for training: :class:`PreparedText` (word ids of the vocabulary built on
train) and :class:`PreparedHFText` (the ids of a model's own Hugging Face tokenizer), and the
functions that read and encode a text dataset into them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from reffakd.config import AugmentConfig, DataConfig
from reffakd.data.dataset import require_every_class
from reffakd.data.hf_text import TOKENIZER_FILE, HFTokenizer, get_tokenizer, read_tokenizer_record
from reffakd.data.prepared import AUGMENT_OPTIONS, DATA_OPTIONS, PreparedData, refuse_foreign
from reffakd.data.readers.textfile import TextFileOptions
from reffakd.data.spec import DatasetSpec
from reffakd.data.text import (
    TextDataSplits,
    TextSplit,
    default_max_len,
    encode_words,
    prepare_text_splits,
    split_texts,
)
from reffakd.data.text_augment import TextBatchTransform
from reffakd.data.text_catalog import load_text_dataset
from reffakd.data.vocab import PAD, UNK, VOCAB_FILE, Vocab
from reffakd.errors import DataError, UserError


@dataclass
class PreparedText(PreparedData):
    """Text: padded token-id splits (raw strings kept) and the vocabulary built on train."""

    modality: ClassVar[str] = "text"
    data_options: ClassVar[frozenset[str]] = DATA_OPTIONS["text"]
    augment_options: ClassVar[frozenset[str]] = AUGMENT_OPTIONS["text"]

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
        refuse_foreign(augment, self.augment_options, AUGMENT_OPTIONS, "augment", self.spec)
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
        refuse_foreign(augment, self.augment_options, AUGMENT_OPTIONS, "augment", self.spec)
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
