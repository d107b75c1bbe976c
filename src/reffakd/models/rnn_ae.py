"""The ReffAKD text autoencoder: a GRU sequence autoencoder.

The encoder GRU reads the embedded tokens (packed, so only real tokens run); its final hidden
state is the sentence embedding. The decoder GRU starts from that state and predicts every token
from the previous ones (teacher forcing): its input is ``[bos] + ids[:-1]`` with ``BOS_ID = 2``.
The model reconstructs exactly the ids it is given: when the tokenizer ends sentences with
``EOS_ID = 3`` the decoder learns to emit it; the model adds none itself.

Output logits are tied to the embedding (Press & Wolf 2017):
``logits = (W_p h + b_p) E^T + b_o`` with ``W_p: hidden -> embedding_dim``. With embedding 32
and hidden 64 (the defaults) the parameters are ``33 V + 39,712``: the table ``32 V``, the output
bias ``V``, two GRUs of ``3 h (e + h) + 6 h = 18,816`` and the projection ``2,080``
(369,712 for a 10k vocabulary; the 47k image autoencoder's part without the table is ~40k).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from reffakd.models import register_model
from reffakd.models.text import token_mask

BOS_ID = 2
EOS_ID = 3


class GRUAutoencoder(nn.Module):
    """``encode(ids) -> (B, hidden)``; ``forward(ids) -> logits (B, L, vocab_size)``."""

    def __init__(
        self, vocab_size: int, pad_id: int = 0, embedding_dim: int = 32, hidden: int = 64
    ) -> None:
        super().__init__()
        if vocab_size <= max(pad_id, BOS_ID, EOS_ID):
            raise ValueError(
                f"vocab_size {vocab_size} must cover pad {pad_id}, bos {BOS_ID} and eos {EOS_ID}"
            )
        self.pad_id = pad_id
        self.vocab_size = vocab_size
        self.embedding_dim = hidden  # size of the sentence embedding, as in the image CAE
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.encoder = nn.GRU(embedding_dim, hidden, batch_first=True)
        self.decoder = nn.GRU(embedding_dim, hidden, batch_first=True)
        self.project = nn.Linear(hidden, embedding_dim)
        self.output_bias = nn.Parameter(torch.zeros(vocab_size))

    def _encode_state(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = token_mask(ids, self.pad_id).sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths, batch_first=True, enforce_sorted=False
        )
        return self.encoder(packed)[1]  # (1, B, hidden)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """The encoder's final hidden state after each row's last token, ``(B, hidden)``."""
        return self._encode_state(ids)[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        bos = torch.full_like(ids[:, :1], BOS_ID)
        inputs = self.embedding(torch.cat([bos, ids[:, :-1]], 1))
        outputs, _ = self.decoder(inputs, self._encode_state(ids))
        return F.linear(self.project(outputs), self.embedding.weight, self.output_bias)

    def per_sample_loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean token cross-entropy of each row over its non-pad tokens, ``(B,)`` (0 if none)."""
        logits = self(ids)
        losses = F.cross_entropy(
            logits.transpose(1, 2), ids, ignore_index=self.pad_id, reduction="none"
        )
        counts = (ids != self.pad_id).sum(1)
        return losses.sum(1) / counts.clamp(min=1)

    def reconstruction_loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Token cross-entropy averaged over all non-pad tokens of the batch (the training loss)."""
        return F.cross_entropy(self(ids).transpose(1, 2), ids, ignore_index=self.pad_id)


@register_model("rnn_ae")
def rnn_ae(
    num_classes: int, vocab_size: int, max_len: int = 128, pad_id: int = 0
) -> GRUAutoencoder:
    """The ReffAKD text autoencoder; ``num_classes`` and ``max_len`` are not used."""
    del num_classes, max_len
    return GRUAutoencoder(vocab_size, pad_id=pad_id)
