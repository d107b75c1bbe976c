"""The ReffAKD text autoencoder: a GRU sequence autoencoder.

The encoder GRU reads the embedded tokens; its state after each row's last real token is the
sentence embedding. The decoder GRU starts from that state and predicts every token
from the previous ones (teacher forcing): its input is ``[bos] + ids[:-1]`` with ``BOS_ID = 2``.
The model reconstructs exactly the ids it is given: when the tokenizer ends sentences with
``EOS_ID = 3`` the decoder learns to emit it; the model adds none itself.

The decoder predicts over the ``K = min(V, output_vocab)`` first ids only (default 2,000): the
vocabulary is ordered by frequency, so these are the specials and the most frequent words, and
a rarer word is reconstructed as ``<unk>`` (id 1). The vocabulary-sized softmax is what costs most
in this model; capping it keeps the autoencoder small whatever the vocabulary, and a sentence
embedding does not need to spell out rare words. Its input embedding covers all V ids.

Output logits are tied to the embedding (Press & Wolf 2017):
``logits = (W_p h + b_p) E[:K]^T + b_o`` with ``W_p: hidden -> embedding_dim``. With embedding
32 and hidden 64 (the defaults) the parameters are ``32 V + K + 39,712``: the table ``32 V``,
the output bias ``K``, two GRUs of ``3 h (e + h) + 6 h = 18,816`` and the projection ``2,080``
(361,712 for a 10k vocabulary; the 47k image autoencoder's part without the table is ~40k).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from reffakd.models.text import at_last_token, fp32_recurrence, register_text_model, token_mask

UNK_ID = 1
BOS_ID = 2
EOS_ID = 3


def final_state(
    embedding: nn.Embedding, gru: nn.GRU, ids: torch.Tensor, pad_id: int
) -> torch.Tensor:
    """The GRU's hidden state after each row's last real token, ``(1, B, hidden)``: its output
    there (the pads after it never reach it), so no host copy of the lengths is needed."""
    lengths = token_mask(ids, pad_id).sum(1)
    x = embedding(ids)
    with fp32_recurrence(x):
        outputs = gru(x.to(gru.weight_ih_l0.dtype))[0]
    return at_last_token(outputs, lengths)[None]


class SentenceEncoder(nn.Module):
    """The encoding half of a :class:`GRUAutoencoder` (shared modules): ids -> ``(B, hidden)``."""

    def __init__(self, embedding: nn.Embedding, gru: nn.GRU, pad_id: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.gru = gru
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return final_state(self.embedding, self.gru, ids, self.pad_id)[0]


class GRUAutoencoder(nn.Module):
    """``encode(ids) -> (B, hidden)``; ``forward(ids) -> logits (B, L, output_vocab)``."""

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        embedding_dim: int = 32,
        hidden: int = 64,
        output_vocab: int = 2000,
    ) -> None:
        super().__init__()
        if min(vocab_size, output_vocab) <= max(pad_id, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(
                f"vocab_size {vocab_size} and output_vocab {output_vocab} must cover pad "
                f"{pad_id}, unk {UNK_ID}, bos {BOS_ID} and eos {EOS_ID}"
            )
        self.pad_id = pad_id
        self.vocab_size = vocab_size
        self.output_vocab = min(vocab_size, output_vocab)
        self.embedding_dim = hidden  # size of the sentence embedding, as in the image CAE
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.encoder = nn.GRU(embedding_dim, hidden, batch_first=True)
        self.decoder = nn.GRU(embedding_dim, hidden, batch_first=True)
        self.project = nn.Linear(hidden, embedding_dim)
        self.output_bias = nn.Parameter(torch.zeros(self.output_vocab))

    def _encode_state(self, ids: torch.Tensor) -> torch.Tensor:
        return final_state(self.embedding, self.encoder, ids, self.pad_id)  # (1, B, hidden)

    @property
    def encoder_network(self) -> nn.Module:
        """The embedding and the encoder GRU as one network (what embedding samples costs)."""
        return SentenceEncoder(self.embedding, self.encoder, self.pad_id)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """The encoder's final hidden state after each row's last token, ``(B, hidden)``."""
        return self._encode_state(ids)[0]

    def _decoded(self, ids: torch.Tensor) -> torch.Tensor:
        """The decoder's projected outputs ``(B, L, embedding_dim)``, teacher-forced."""
        bos = torch.full_like(ids[:, :1], BOS_ID)
        inputs = self.embedding(torch.cat([bos, ids[:, :-1]], 1))
        dtype = self.decoder.weight_ih_l0.dtype
        with fp32_recurrence(inputs):
            outputs, _ = self.decoder(inputs.to(dtype), self._encode_state(ids).to(dtype))
        return self.project(outputs)

    def _logits(self, projected: torch.Tensor) -> torch.Tensor:
        return F.linear(projected, self.embedding.weight[: self.output_vocab], self.output_bias)

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        """What the decoder must predict: ``ids``, with ids beyond the output vocabulary as UNK."""
        return torch.where(ids < self.output_vocab, ids, torch.full_like(ids, UNK_ID))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._logits(self._decoded(ids))

    def _token_losses(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of every position ``(B, L)`` (0 at pads) and the pad mask ``(B, L)``.

        Every position runs through the output layer and pads are masked after it: selecting
        the real positions first would size a tensor by their count, a device sync per batch
        (batches are trimmed to their longest row, so few pads remain)."""
        real = ids != self.pad_id
        logits = self._logits(self._decoded(ids))
        losses = F.cross_entropy(
            logits.flatten(0, 1), self.targets(ids).flatten(), reduction="none"
        )
        return losses.view_as(ids) * real, real

    def per_sample_loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean token cross-entropy of each row over its non-pad tokens, ``(B,)`` (0 if none)."""
        losses, real = self._token_losses(ids)
        return losses.sum(1) / real.sum(1).clamp(min=1)

    def reconstruction_loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Token cross-entropy averaged over all non-pad tokens of the batch (the training loss)."""
        losses, real = self._token_losses(ids)
        return losses.sum() / real.sum().clamp(min=1)


@register_text_model("rnn_ae")
def rnn_ae(
    num_classes: int, vocab_size: int, max_len: int = 128, pad_id: int = 0
) -> GRUAutoencoder:
    """The ReffAKD text autoencoder; ``num_classes`` and ``max_len`` are not used."""
    del num_classes, max_len
    return GRUAutoencoder(vocab_size, pad_id=pad_id)
