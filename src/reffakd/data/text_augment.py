"""Batch-wise augmentation of token ids: token dropout, and the engine's transform for text
(the counterpart of :mod:`reffakd.data.augment` for images)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from reffakd.data.vocab import PAD, SPECIALS, UNK
from reffakd.errors import UserError


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
    """The engine's transform for token ids: token dropout when training.

    Batches come trimmed from the loader (:class:`reffakd.data.loader.BatchLoader` drops the pad
    columns after the batch's longest row, from the CPU lengths); trimming here would read the
    device once per batch.
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
        return self.dropout(inputs, train=train, generator=generator, rows=rows, total=total)
