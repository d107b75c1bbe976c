"""Text classifiers: Kim's CNN, the BiLSTM student of Tang et al. and a small Transformer.

Every model reads ONE tensor of right-padded int64 token ids ``(B, L)`` and finds the tokens
itself from ``ids != pad_id``; it returns logits ``(B, num_classes)``. A row with no tokens is
read as if its first position were a token (the pad embedding, which is zero), so every row has
length >= 1. Appending pad columns never changes an output (up to float rounding).

Parameter counts, with ``V`` the vocabulary size (specials included) and ``C`` the classes:

* ``textcnn``: ``300 V + 360,300 + 301 C``
* ``bilstm``: ``300 V + 1,685,200 + 401 C``
* ``bilstm2x512``: ``300 V + 10,043,792 + 401 C``
* ``transformer``: ``256 V + 256 max_len + 3,159,552 + 257 C`` (``max_len`` 128: + 3,192,320)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from reffakd.models import ModelFactory, register_model

# The input ``reffakd list models`` counts a text model at.
DEFAULT_INPUT = {"vocab_size": 10_000, "max_len": 64}


def register_text_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a text factory, declaring the input its listing is counted at."""

    def decorator(factory: ModelFactory) -> ModelFactory:
        factory.default_input = DEFAULT_INPUT  # type: ignore[attr-defined]
        return register_model(name)(factory)

    return decorator


def token_mask(ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """``ids != pad_id`` with column 0 always True, so that no row is empty."""
    mask = ids != pad_id
    mask[:, :1] = True
    return mask


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` (B, L, E) with each row's first ``lengths[i]`` steps in reverse order and the rest
    in place (its own inverse). A forward pass over it is a backward pass over the real tokens."""
    steps = torch.arange(x.shape[1], device=x.device)
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand_as(x))


def at_last_token(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``outputs`` (B, L, H) at each row's last real step, ``(B, H)``."""
    index = (lengths - 1)[:, None, None].expand(-1, 1, outputs.shape[2])
    return outputs.gather(1, index)[:, 0]


def fp32_recurrence(x: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """Recurrent kernels run outside autocast, in their weights' dtype (fp32): cuDNN's RNN
    autocast casts to fp16 even under bf16, and bf16 recurrence has not been checked for
    accuracy (on a CPU with AVX512-BF16 it is faster for the LSTM, slower for the GRU)."""
    return torch.autocast(x.device.type, enabled=False)


def _check_text_sizes(vocab_size: int, max_len: int) -> None:
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2 (pad + one token), got {vocab_size}")
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")


class TextCNN(nn.Module):
    """Kim (2014) CNN-rand: embedding, 1-D convolutions, max over time, dropout, linear.

    For width ``k`` and a sentence of ``n`` tokens the conv output ``c_t = ReLU(w . x_{t:t+k} +
    b)`` is pooled over the windows inside the sentence, ``t = 0 .. max(n, k) - k``: a sentence
    shorter than ``k`` gives one window, its tokens followed by zero (pad) embeddings (inputs
    shorter than the widest filter are padded to it). Other positions are masked with ``-inf``
    before the max. Word vectors start uniform in [-0.25, 0.25] as in Kim's CNN-rand (the pad
    row at zero). Kim's l2 max-norm constraint on the last layer is not applied.
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        pad_id: int = 0,
        embedding_dim: int = 300,
        widths: tuple[int, ...] = (3, 4, 5),
        filters: int = 100,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.widths = widths
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        nn.init.uniform_(self.embedding.weight, -0.25, 0.25)  # Kim's random word vectors
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, filters, k) for k in widths)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(filters * len(widths), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = token_mask(ids, self.pad_id).sum(1)
        short = max(self.widths) - ids.shape[1]
        if short > 0:
            ids = F.pad(ids, (0, short), value=self.pad_id)
        x = self.embedding(ids).transpose(1, 2)  # (B, E, L)
        pooled = []
        for k, conv in zip(self.widths, self.convs, strict=True):
            c = conv(x)  # (B, F, L - k + 1)
            windows = (lengths - k + 1).clamp(min=1)
            valid = torch.arange(c.shape[2], device=ids.device) < windows[:, None]
            c = c.masked_fill(~valid[:, None, :], float("-inf"))
            pooled.append(F.relu(c.amax(2)))  # max then ReLU == ReLU then max
        return self.fc(self.dropout(torch.cat(pooled, 1)))


class BiLSTMClassifier(nn.Module):
    """Tang et al. (2019) student: embedding 300, one BiLSTM of 300 per direction, MLP head.

    The final forward and backward hidden states (after each row's last real token) are
    concatenated to 600 features; the paper's 400-unit ReLU layer is therefore
    ``Linear(600, 400) + ReLU`` followed by ``Linear(400, C)``. No dropout.

    Each layer and direction runs on the padded batch, the backward one over each row's tokens
    reversed in place (:func:`reverse_within`): the same states as a packed sequence, without
    the host copy of the lengths that packing needs (a device sync per batch on GPUs).
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        pad_id: int = 0,
        embedding_dim: int = 300,
        hidden: int = 300,
        head: int = 400,
        layers: int = 1,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(
            embedding_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True
        )
        self.head = nn.Sequential(
            nn.Linear(2 * hidden, head), nn.ReLU(inplace=True), nn.Linear(head, num_classes)
        )

        # one single-direction LSTM per layer and direction, sharing ``self.lstm``'s weights
        # (so checkpoints keep its keys); not registered, so parameters are not listed twice
        object.__setattr__(self, "recurrent_calls", self._directions())

    def _directions(self) -> list[nn.LSTM]:
        lstm, parts = self.lstm, []
        for layer in range(lstm.num_layers):
            width = lstm.input_size if layer == 0 else 2 * lstm.hidden_size
            parts += [nn.LSTM(width, lstm.hidden_size, batch_first=True) for _ in range(2)]
        return parts

    def _direction(self, x: torch.Tensor, layer: int, backward: bool) -> torch.Tensor:
        """One direction of one layer run forward over ``x``: ``(B, L, H)``. Its weights are
        bound to ``self.lstm``'s at every call, so moving, casting or loading the model (which
        may replace the parameters) always reaches them."""
        part = self.recurrent_calls[2 * layer + int(backward)]
        suffix = "_reverse" if backward else ""
        for name in part._flat_weights_names:
            setattr(part, name, getattr(self.lstm, f"{name[:-1]}{layer}{suffix}"))
        part.train(self.training)
        return part(x)[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = token_mask(ids, self.pad_id).sum(1)
        x = self.embedding(ids)
        with fp32_recurrence(x):
            x = x.to(self.lstm.weight_ih_l0.dtype)  # autocast may have made it bf16
            for layer in range(self.lstm.num_layers):
                forward = self._direction(x, layer, False)
                backward = self._direction(reverse_within(x, lengths), layer, True)
                x = torch.cat([forward, reverse_within(backward, lengths)], 2)
            last = torch.cat([at_last_token(forward, lengths), at_last_token(backward, lengths)], 1)
        return self.head(last)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm Transformer block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``.

    Attention is written out, ``softmax(q k^T / sqrt(d_head) + key_bias) v``, so that every
    matmul shows up in torch's FLOP counter (the fused kernels of ``nn.TransformerEncoder``
    do not). Parameters: ``4 d^2 + 2 d f + 9 d + f`` (789,760 for d 256, f 1024).
    """

    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not a multiple of heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, d_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads) + key_bias
        attended = (self.dropout(scores.softmax(-1)) @ v).transpose(1, 2).reshape(b, length, d)
        x = x + self.dropout(self.out(attended))
        return x + self.dropout(self.ffn(self.norm2(x)))


class TransformerClassifier(nn.Module):
    """Token + learned position embeddings, pre-LN encoder blocks, masked mean pool, linear.

    Defaults (4 layers, d_model 256, 4 heads, FFN 1024, dropout 0.1, GELU) give
    ``256 V + 256 max_len + 3,159,552 + 257 C`` parameters: 4 x 789,760 blocks, a final
    LayerNorm (512) and the head. Embeddings start at N(0, 0.02), the pad row at zero.
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        max_len: int = 128,
        pad_id: int = 0,
        d_model: int = 256,
        layers: int = 4,
        heads: int = 4,
        ffn: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.max_len = max_len
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.positions = nn.Embedding(max_len, d_model)
        for table in (self.embedding, self.positions):
            nn.init.normal_(table.weight, 0.0, 0.02)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(d_model, heads, ffn, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds max_len {self.max_len}")
        mask = token_mask(ids, self.pad_id)
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.dropout(self.embedding(ids) + self.positions(positions))
        key_bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
        key_bias = key_bias.masked_fill(~mask, float("-inf"))[:, None, None, :]
        for block in self.blocks:
            x = block(x, key_bias)
        weights = mask.to(x.dtype)[:, :, None]
        pooled = (self.norm(x) * weights).sum(1) / weights.sum(1)
        return self.fc(pooled)


@register_text_model("textcnn")
def textcnn(
    num_classes: int, vocab_size: int, max_len: int = 128, pad_id: int = 0, dropout: float = 0.5
) -> TextCNN:
    """Kim's CNN-rand; ``max_len`` is not used (any length works)."""
    _check_text_sizes(vocab_size, max_len)
    return TextCNN(num_classes, vocab_size, pad_id=pad_id, dropout=dropout)


@register_text_model("bilstm")
def bilstm(num_classes: int, vocab_size: int, max_len: int = 128, pad_id: int = 0) -> nn.Module:
    """Tang et al.'s BiLSTM student (300/300, head 600-400-C); ``max_len`` is not used."""
    _check_text_sizes(vocab_size, max_len)
    return BiLSTMClassifier(num_classes, vocab_size, pad_id=pad_id)


@register_text_model("bilstm2x512")
def bilstm2x512(
    num_classes: int, vocab_size: int, max_len: int = 128, pad_id: int = 0
) -> nn.Module:
    """A teacher-size BiLSTM: 2 layers of 512 per direction, embedding 300, head 1024-400-C.

    Parameters: ``300 V + 10,043,792 + 401 C``.
    """
    _check_text_sizes(vocab_size, max_len)
    return BiLSTMClassifier(num_classes, vocab_size, pad_id=pad_id, hidden=512, layers=2)


@register_text_model("transformer")
def transformer(
    num_classes: int, vocab_size: int, max_len: int = 128, pad_id: int = 0, dropout: float = 0.1
) -> TransformerClassifier:
    """A small Transformer encoder teacher; inputs may be at most ``max_len`` long."""
    _check_text_sizes(vocab_size, max_len)
    return TransformerClassifier(num_classes, vocab_size, max_len, pad_id, dropout=dropout)
