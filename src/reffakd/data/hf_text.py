"""Text encoded by a Hugging Face tokenizer (the optional ``transformers`` package).

A model that brings its own tokenizer (``hf:DIR_OR_ID``) reads the ids of that tokenizer, not
the run's word-level vocabulary. :func:`encode_with_tokenizer` encodes every split once, at
prepare time, into the same in-memory :class:`~reffakd.data.text.TextSplit` s as word-level
text: padded int64 ids (``[CLS] ... [SEP]`` and the tokenizer's pad id after them) and lengths,
so a batch is an index gather and batches are grouped by length and trimmed as for words.

A tokenizer is named by a *reference*: ``hf:`` and a local folder (loaded with
``local_files_only``) or a hub id (downloaded only when ``HF_HUB_OFFLINE`` is not set; with it
set, only the local cache is read). A run directory records the reference and a fingerprint of
the tokenizer in ``tokenizer.json`` (instead of ``vocab.json``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reffakd.errors import DataError, UserError, first_line
from reffakd.files import atomic_write_text
from reffakd.hub import hub_location, import_transformers

TOKENIZER_FILE = "tokenizer.json"  # what a run directory records about an HF tokenizer
TOKENIZER_FORMAT = "reffakd-tokenizer"
@dataclass(frozen=True)
class HFTokenizer:
    """A loaded HF tokenizer and what the run needs from it."""

    reference: str
    tokenizer: Any

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def unk_id(self) -> int:
        return int(self.tokenizer.unk_token_id)

    @property
    def special_ids(self) -> list[int]:
        return sorted(set(self.tokenizer.all_special_ids))

    def __len__(self) -> int:
        return len(self.tokenizer)

    def fingerprint(self) -> str:
        """SHA-256 of the tokenizer class, its vocabulary and its special tokens."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        document = {
            "class": type(self.tokenizer).__name__,
            "vocab": sorted(self.tokenizer.get_vocab().items()),
            "special": self.special_ids,
            "lower": bool(getattr(self.tokenizer, "do_lower_case", False)),
        }
        return hashlib.sha256(json.dumps(document).encode()).hexdigest()

    def record(self, max_len: int) -> dict[str, Any]:
        return {
            "format": TOKENIZER_FORMAT,
            "tokenizer": self.reference,
            "fingerprint": self.fingerprint(),
            "vocab_size": len(self),
            "pad_id": self.pad_id,
            "max_len": max_len,
        }

    def save(self, folder: Path, max_len: int) -> None:
        atomic_write_text(Path(folder) / TOKENIZER_FILE, json.dumps(self.record(max_len), indent=1))

    def encode(self, texts: Sequence[str], max_len: int) -> tuple[Tensor, Tensor, int]:
        """``(ids (N, max_len), lengths (N,), truncated)``: the tokenizer's ids with its special
        tokens, cut to ``max_len`` by the tokenizer's own truncation, padded with ``pad_id``."""
        full = self.lengths(texts)
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=max_len, add_special_tokens=True
        )["input_ids"]
        lengths = torch.tensor([len(r) for r in encoded], dtype=torch.int64)
        ids = torch.full((len(encoded), max_len), self.pad_id, dtype=torch.int64)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
        truncated = sum(n > max_len for n in full)
        return ids, lengths, truncated

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts`` with the special tokens, uncut."""
        encoded = self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]
        return [len(r) for r in encoded]


@lru_cache(maxsize=4)
def load_tokenizer(reference: str) -> HFTokenizer:
    """The tokenizer of ``hf:DIR_OR_ID`` (cached: a teacher and a student may share it)."""
    transformers = import_transformers(f"tokenizer {reference!r}")
    target, local = hub_location(reference)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(target, local_files_only=local)
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot load the tokenizer of {reference!r} ({first_line(err)}); pass hf: and a "
            "model folder holding tokenizer files (or a hub id, online)."
        ) from None
    if tokenizer.pad_token_id is None or tokenizer.unk_token_id is None:
        raise UserError(
            f"the tokenizer of {reference!r} has no pad or unknown token; use an encoder "
            "model whose tokenizer pads (BERT-like)."
        )
    return HFTokenizer(reference, tokenizer)


def read_tokenizer_record(folder: Path) -> dict[str, Any]:
    """The ``tokenizer.json`` of a run directory; DataError when it is damaged."""
    path = Path(folder) / TOKENIZER_FILE
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} cannot be read ({first_line(err)}); the run is damaged.") from None
    if not isinstance(document, dict) or document.get("format") != TOKENIZER_FORMAT:
        raise DataError(f"{path} is not a reffakd tokenizer record; the run is damaged.")
    return document


TokenizerLoader = Callable[[str], HFTokenizer]
# Tokenizers by the prefix of their reference: a model named ``hf:...`` reads ``hf:...`` ids.
TOKENIZERS: dict[str, TokenizerLoader] = {"hf": load_tokenizer}


def get_tokenizer(reference: str) -> HFTokenizer:
    """The tokenizer a reference names (:data:`TOKENIZERS`, by its prefix)."""
    prefix = reference.partition(":")[0]
    if prefix not in TOKENIZERS:
        raise UserError(
            f"unknown tokenizer {reference!r}; known prefixes: {', '.join(sorted(TOKENIZERS))}."
        )
    return TOKENIZERS[prefix](reference)
