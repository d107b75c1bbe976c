"""Text classification data in memory: raw texts and labels, padded token splits, and the
encoding of one into the other.

A reader returns a :class:`RawTextDataset` (strings and labels of the official train and test
splits). :func:`prepare_text_splits` holds out validation from train (the same seeded,
stratified rule as for images), builds the :class:`~reffakd.data.vocab.Vocab` on what is left of
train (tokenized by :func:`~reffakd.data.vocab.tokenize`), and encodes train, validation and
test into :class:`TextSplit` s of padded int64 token ids.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from reffakd.data.dataset import SplitTrio, stratified_split
from reffakd.data.vocab import BOS, EOS, PAD, Vocab, tokenize
from reffakd.errors import DataError, UserError

# default max_len: the 99th percentile of the training lengths, at most MAX_LEN_CAP tokens
MAX_LEN_QUANTILE = 0.99
MAX_LEN_CAP = 128
GROUP_BATCHES = 50  # training batches sorted by length together (TextSplit.batch_order)


# ---------------------------------------------------------------------------------------------
# In-memory splits


@dataclass
class TextSplit:
    """One split held in memory.

    ``tokens`` is int64 (N, L), row i holding ``lengths[i]`` ids followed by ``PAD``;
    ``labels`` is int64 (N,) in ``[0, len(class_names))``; ``texts`` are the raw strings (for
    models that bring their own tokenizer). Batches gather ``split.inputs[idx]``.
    """

    tokens: Tensor
    lengths: Tensor
    labels: Tensor
    class_names: list[str]
    texts: list[str]

    def __post_init__(self) -> None:
        if self.tokens.dtype != torch.int64 or self.tokens.dim() != 2:
            raise DataError(
                f"tokens must be an int64 tensor of shape (N, L), got {self.tokens.dtype} "
                f"{tuple(self.tokens.shape)}; check the encoder for this dataset."
            )
        self.labels = self.labels.to(torch.int64)
        self.lengths = self.lengths.to(torch.int64)
        counts = {len(self.tokens), len(self.lengths), len(self.labels), len(self.texts)}
        if self.labels.dim() != 1 or self.lengths.dim() != 1 or len(counts) != 1:
            raise DataError(
                f"text/label count mismatch: {len(self.tokens)} token rows, "
                f"{len(self.lengths)} lengths, {self.labels.numel()} labels and "
                f"{len(self.texts)} texts; the data files are inconsistent."
            )
        _check_labels(self.labels, len(self.class_names))
        if len(self.lengths) and (
            int(self.lengths.min()) < 0 or int(self.lengths.max()) > self.tokens.shape[1]
        ):
            raise DataError(
                f"lengths must lie in [0, {self.tokens.shape[1]}]; the encoding is corrupt."
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def max_len(self) -> int:
        """L, the padded width."""
        return self.tokens.shape[1]

    @property
    def inputs(self) -> Tensor:
        """What a batch gathers from: the padded token ids."""
        return self.tokens

    def batch_order(
        self, order: Tensor, batch_size: int, generator: torch.Generator | None
    ) -> Tensor:
        """``order`` rearranged so that each batch holds texts of similar length.

        Batches are trimmed to their longest text, so this saves the work on padding. Without a
        ``generator`` (evaluation) the texts are sorted by length. With one (training), ``order``
        (already random) is cut into chunks of ``GROUP_BATCHES`` batches, each chunk is sorted by
        length (stably) and cut into batches, and the full batches are shuffled with
        ``generator``; a final short batch stays last (the bucketing of torchtext's
        ``BucketIterator``).
        """
        if generator is None:
            return order[torch.sort(self.lengths[order], stable=True).indices]
        chunks = [
            part[torch.sort(self.lengths[part], stable=True).indices]
            for part in order.split(batch_size * GROUP_BATCHES)
        ]
        arranged = torch.cat(chunks) if chunks else order
        full = len(arranged) // batch_size
        batches = arranged[: full * batch_size].view(full, batch_size)
        shuffled = batches[torch.randperm(full, generator=generator)].reshape(-1)
        return torch.cat([shuffled, arranged[full * batch_size :]])

    def subset(self, indices: Tensor) -> TextSplit:
        return TextSplit(
            self.tokens[indices],
            self.lengths[indices],
            self.labels[indices],
            list(self.class_names),
            [self.texts[i] for i in indices.tolist()],
        )


def _check_labels(labels: Tensor, num_classes: int) -> None:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"labels must lie in [0, {num_classes}), found "
            f"[{int(labels.min())}, {int(labels.max())}]; the label data is corrupt."
        )


@dataclass
class LabelledTexts:
    """Strings and their int64 class ids, before tokenization."""

    texts: list[str]
    labels: Tensor

    def __post_init__(self) -> None:
        self.labels = self.labels.to(torch.int64)
        if self.labels.dim() != 1 or len(self.labels) != len(self.texts):
            raise DataError(
                f"text/label count mismatch: {len(self.texts)} texts but {self.labels.numel()} "
                "labels; the data files are inconsistent."
            )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Tensor) -> LabelledTexts:
        return LabelledTexts([self.texts[i] for i in indices.tolist()], self.labels[indices])


@dataclass
class RawTextDataset:
    """What a text reader returns: the official (or recorded, seeded) train and test splits."""

    name: str
    train: LabelledTexts
    test: LabelledTexts
    class_names: list[str]
    source: str = ""  # where it was read from, for the run record
    extra: dict = field(default_factory=dict)  # e.g. how a test split was drawn

    def __post_init__(self) -> None:
        _check_labels(self.train.labels, len(self.class_names))
        _check_labels(self.test.labels, len(self.class_names))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def facts(self) -> dict[str, int]:
        """What the data says about itself, checked against the dataset's spec."""
        return {"classes": self.num_classes}


def hold_out_texts(
    whole: LabelledTexts, fraction: float, seed: int, num_classes: int
) -> tuple[LabelledTexts, LabelledTexts]:
    """``(kept, held)``: a seeded, stratified ``fraction`` of every class held out."""
    kept, held = stratified_split(whole.labels, fraction, seed, num_classes)
    return whole.subset(kept), whole.subset(held)


def limit_train(train: LabelledTexts, limit: int, seed: int, num_classes: int) -> LabelledTexts:
    """A seeded, stratified subset of about ``limit`` texts: ``round(n_c * limit / n)`` of every
    class c, in their original order (all of them when ``limit >= n``)."""
    if limit >= len(train):
        return train
    _, chosen = stratified_split(train.labels, limit / len(train), seed, num_classes)
    return train.subset(chosen)


def split_texts(splits: TextDataSplits) -> dict[str, LabelledTexts]:
    """The raw strings and labels of train / validation / test, in their split order."""
    return {
        name: LabelledTexts(list(part.texts), part.labels)
        for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test))
    }


def encode_words(splits: TextDataSplits, vocab: Vocab, max_len: int | None) -> TextDataSplits:
    """The same samples (same order, so the same sample indices) as word ids of ``vocab``;
    ``max_len`` defaults to :func:`default_max_len` of the training texts."""
    parts = split_texts(splits)
    tokenized = {name: [tokenize(t) for t in part.texts] for name, part in parts.items()}
    if max_len is None:
        max_len = default_max_len([len(t) for t in tokenized["train"]])
    encoded, truncated = {}, {}
    for name, part in parts.items():
        encoded[name], truncated[name] = _split(
            part, tokenized[name], vocab, max_len, splits.class_names, False
        )
    return dataclasses.replace(splits, **encoded, vocab=vocab, truncated=truncated)


@dataclass
class TextDataSplits(SplitTrio):
    """Train / validation / test of a text dataset, with the vocabulary built on train."""

    name: str
    train: TextSplit
    val: TextSplit
    test: TextSplit
    vocab: Vocab
    truncated: dict[str, int]  # per split: how many texts were longer than max_len
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def max_len(self) -> int:
        return self.train.max_len


# ---------------------------------------------------------------------------------------------
# Encoding


def default_max_len(lengths: Sequence[int], cap: int = MAX_LEN_CAP) -> int:
    """The smallest length covering ``MAX_LEN_QUANTILE`` of ``lengths``, in ``[1, cap]``."""
    if not lengths:
        return 1
    ordered = sorted(lengths)
    at = max(math.ceil(MAX_LEN_QUANTILE * len(ordered)) - 1, 0)
    return min(max(ordered[at], 1), cap)


def encode_tokens(
    token_lists: Sequence[Sequence[str]], vocab: Vocab, max_len: int, bos_eos: bool = False
) -> tuple[Tensor, Tensor, int]:
    """``(tokens (N, max_len), lengths (N,), truncated)``: ids padded with ``PAD``.

    With ``bos_eos`` each row is ``BOS ids EOS``. Longer sequences keep their first tokens
    (and their EOS); ``truncated`` counts them.
    """
    room = max_len - 2 if bos_eos else max_len
    if room < 1:
        raise UserError(f"max_len must be >= {3 if bos_eos else 1}, got {max_len}")
    rows: list[list[int]] = []
    truncated = 0
    for tokens in token_lists:
        ids = vocab.encode(tokens[:room])
        truncated += len(tokens) > room
        rows.append([BOS, *ids, EOS] if bos_eos else ids)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    flat = torch.tensor([i for r in rows for i in r], dtype=torch.int64)
    starts = torch.cumsum(lengths, 0) - lengths
    row_of = torch.repeat_interleave(torch.arange(len(rows)), lengths)
    col_of = torch.arange(len(flat)) - torch.repeat_interleave(starts, lengths)
    padded = torch.full((len(rows), max_len), PAD, dtype=torch.int64)
    padded[row_of, col_of] = flat
    return padded, lengths, truncated


def _split(
    texts: LabelledTexts,
    token_lists: Sequence[Sequence[str]],
    vocab: Vocab,
    max_len: int,
    class_names: list[str],
    bos_eos: bool,
) -> tuple[TextSplit, int]:
    tokens, lengths, truncated = encode_tokens(token_lists, vocab, max_len, bos_eos)
    return TextSplit(tokens, lengths, texts.labels, list(class_names), list(texts.texts)), truncated


def prepare_text_splits(
    raw: RawTextDataset,
    val_fraction: float,
    split_seed: int,
    *,
    min_freq: int = 1,
    max_size: int | None = None,
    max_len: int | None = None,
    bos_eos: bool = False,
    vocab: Vocab | None = None,
    train_limit: int | None = None,
) -> TextDataSplits:
    """Hold out validation, build the vocabulary on the rest of train, encode all three splits.

    Validation is a seeded, stratified ``val_fraction`` of train (as for images); the vocabulary
    (unless one is given, e.g. a teacher's) sees only the remaining training texts, so words
    found only in validation or test map to ``UNK``. ``max_len`` defaults to
    :func:`default_max_len` of the training token counts (plus 2 with ``bos_eos``).
    ``train_limit``: train on a seeded, stratified subset of about that many of the remaining
    training texts (:func:`limit_train`); validation and test are untouched.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train, val = hold_out_texts(raw.train, val_fraction, split_seed, raw.num_classes)
    extra = dict(raw.extra)
    if train_limit is not None:
        extra.update(train_limit=train_limit, train_before_limit=len(train))
        train = limit_train(train, train_limit, split_seed, raw.num_classes)
    tokenized = {
        name: [tokenize(t) for t in part.texts]
        for name, part in (("train", train), ("val", val), ("test", raw.test))
    }
    if vocab is None:
        vocab = Vocab.build(tokenized["train"], min_freq, max_size)
    if max_len is None:
        max_len = default_max_len([len(t) for t in tokenized["train"]]) + (2 if bos_eos else 0)
    parts = {}
    truncated = {}
    for name, texts in (("train", train), ("val", val), ("test", raw.test)):
        parts[name], truncated[name] = _split(
            texts, tokenized[name], vocab, max_len, raw.class_names, bos_eos
        )
    return TextDataSplits(
        name=raw.name,
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        vocab=vocab,
        truncated=truncated,
        source=raw.source,
        extra=extra,
    )
