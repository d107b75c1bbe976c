"""Text classification data in memory: tokenizer, vocabulary, padded token splits.

A reader returns a :class:`RawTextDataset` (strings and labels of the official train and test
splits). :func:`prepare_text_splits` holds out validation from train (the same seeded,
stratified rule as for images), builds the :class:`Vocab` on what is left of train, and encodes
train, validation and test into :class:`TextSplit` s of padded int64 token ids.

Tokenization (:func:`tokenize`) is word level and deterministic: NFC-normalise, lowercase, map the
typographic apostrophe to ``'``, then split into words (runs of letters and digits of any
script), the English clitics ``n't 's 're 've 'll 'd 'm`` as tokens of their own (Penn Treebank
style, as SST is already tokenized: ``don't`` -> ``do n't``, ``can't`` -> ``ca n't``, ``it's`` ->
``it 's``), and every other visible character as a one-character token (``"3.5!"`` ->
``3 . 5 !``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from reffakd.data.dataset import SplitTrio, stratified_split
from reffakd.errors import DataError, UserError
from reffakd.files import atomic_write_text

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
VOCAB_FORMAT = "reffakd-vocab"
VOCAB_VERSION = 1
VOCAB_FILE = "vocab.json"  # the vocabulary's name in a run directory
# default max_len: the 99th percentile of the training lengths, at most MAX_LEN_CAP tokens
MAX_LEN_QUANTILE = 0.99
MAX_LEN_CAP = 128
GROUP_BATCHES = 50  # training batches sorted by length together (TextSplit.batch_order)

_WORD_END = r"(?![^\W_])"
_TOKEN = re.compile(
    rf"n't{_WORD_END}"  # negation clitic, also when already split off ("does n't")
    rf"|'(?:s|re|ve|ll|d|m){_WORD_END}"  # 's 're 've 'll 'd 'm
    rf"|[^\W_]+?(?=n't{_WORD_END})"  # the word before n't: do|n't, ca|n't
    r"|[^\W_]+"  # letters and digits of any script
    r"|\S"  # anything else visible, one character at a time
)


def tokenize(text: str) -> list[str]:
    """Lowercased word-level tokens of ``text`` (rules in the module docstring)."""
    normal = unicodedata.normalize("NFC", text).lower().replace("\u2019", "'")
    return _TOKEN.findall(normal)


# ---------------------------------------------------------------------------------------------
# Vocabulary


class Vocab:
    """Token <-> id map. Ids 0-3 are the specials ``<pad> <unk> <bos> <eos>``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with the specials {SPECIALS}")
        self.itos = tokens
        self.stoi = {token: i for i, token in enumerate(tokens)}
        if len(self.stoi) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """The specials, then tokens seen at least ``min_freq`` times, most frequent first.

        Ties in frequency are broken alphabetically. ``max_size`` caps the whole vocabulary,
        specials included (the rows of an embedding table); None means no cap.
        """
        if min_freq < 1:
            raise UserError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < len(SPECIALS):
            raise UserError(f"max_size must be >= {len(SPECIALS)} (the specials), got {max_size}")
        counts = Counter(token for tokens in token_lists for token in tokens)
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __hash__(self) -> int:
        return hash(tuple(self.itos))

    def index(self, token: str) -> int:
        """The id of ``token``; unknown tokens map to ``UNK``."""
        return self.stoi.get(token, UNK)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(token, UNK) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def fingerprint(self) -> str:
        """sha256 (hex) of the token list as compact UTF-8 JSON: equal iff the ids mean the same."""
        payload = json.dumps(self.itos, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as JSON (tokens in id order, and their fingerprint)."""
        document = {
            "format": VOCAB_FORMAT,
            "version": VOCAB_VERSION,
            "fingerprint": self.fingerprint(),
            "tokens": self.itos,
        }
        atomic_write_text(Path(path), json.dumps(document, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a vocabulary written by :meth:`save`; a damaged file raises DataError."""
        try:
            document = json.loads(Path(path).read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _bad_vocab(path, f"cannot be read ({' '.join(str(err).split())})") from err
        if not isinstance(document, dict) or document.get("format") != VOCAB_FORMAT:
            raise _bad_vocab(path, "is not a reffakd vocabulary file")
        tokens = document.get("tokens")
        if document.get("version") != VOCAB_VERSION:
            raise _bad_vocab(path, f"has unsupported version {document.get('version')!r}")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise _bad_vocab(path, "has no list of string tokens")
        try:
            vocab = cls(tokens)
        except ValueError as err:
            raise _bad_vocab(path, f"is inconsistent ({err})") from err
        if vocab.fingerprint() != document.get("fingerprint"):
            raise _bad_vocab(path, "does not match its recorded fingerprint (the file was altered)")
        return vocab


def _bad_vocab(path: object, problem: str) -> DataError:
    return DataError(f"vocabulary file {path} {problem}; rebuild it from the training data.")


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


def limit_train(
    train: LabelledTexts, limit: int, seed: int, num_classes: int
) -> LabelledTexts:
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


# ---------------------------------------------------------------------------------------------
# Augmentation


class TokenDropout:
    """Training-time token dropout: each non-special token becomes ``UNK`` with probability ``p``.

    Same call signature as the image ``BatchTransform``: the identity (the same tensor) when not
    training or ``p == 0``. Random numbers are drawn on the CPU from ``generator`` so that a seed
    gives the same result on any device.
    """

    def __init__(
        self, p: float = 0.0, unk_id: int = UNK, special_ids: Sequence[int] | None = None
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise UserError(f"token dropout must be in [0, 1], got {p}")
        self.p = p
        self.unk_id = unk_id
        # None: the word-level specials, ids below len(SPECIALS); else the tokenizer's own
        self.special_ids = None if special_ids is None else torch.tensor(list(special_ids))

    @property
    def augments(self) -> bool:
        """Whether training batches are changed (evaluation ones never are)."""
        return self.p > 0.0

    def __call__(
        self,
        inputs: Tensor,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
        rows: slice | None = None,
        total: int | None = None,
    ) -> Tensor:
        """``rows``/``total``: ``inputs`` are rows ``rows`` of a batch of ``total`` split over
        processes; the draws are made for the whole batch and this share kept, so every process
        drops the tokens a one-process run would."""
        if not train or self.p == 0.0:
            return inputs
        shape = inputs.shape if total is None else (total, inputs.shape[1])
        draw = torch.rand(shape, generator=generator) < self.p
        if rows is not None:
            draw = draw[rows]
        drop = draw.to(inputs.device) & self._droppable(inputs)
        return torch.where(drop, torch.full_like(inputs, self.unk_id), inputs)

    def _droppable(self, inputs: Tensor) -> Tensor:
        if self.special_ids is None:
            return inputs >= len(SPECIALS)
        return ~torch.isin(inputs, self.special_ids.to(inputs.device))


class TextBatchTransform:
    """The engine's transform for token ids: trim the batch, then token dropout when training.

    Trimming drops the pad columns after the batch's longest row, ``(B, L) -> (B, L')`` with
    ``L' = max_i length_i`` (at least 1). Text models ignore trailing pads (their outputs do not
    change, up to float rounding), so this only saves the work of running them over padding.
    """

    def __init__(
        self,
        dropout: float = 0.0,
        pad_id: int = PAD,
        unk_id: int = UNK,
        special_ids: Sequence[int] | None = None,
    ) -> None:
        self.dropout = TokenDropout(dropout, unk_id, special_ids)
        self.pad_id = pad_id

    @property
    def augments(self) -> bool:
        return self.dropout.augments

    def __call__(
        self,
        inputs: Tensor,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
        rows: slice | None = None,
        total: int | None = None,
    ) -> Tensor:
        # Dropout before trimming: the draws then have the padded width on every process.
        inputs = self.dropout(inputs, train=train, generator=generator, rows=rows, total=total)
        real = (inputs != self.pad_id).sum(1)
        width = max(int(real.max()), 1) if len(inputs) else inputs.shape[1]
        return inputs[:, :width]
