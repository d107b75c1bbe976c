"""Hugging Face encoders (``hf:DIR_OR_ID``, the optional ``transformers`` package).

:class:`HFClassifier` is the pretrained encoder (``AutoModel``) with a fresh linear head on the
mean of its last hidden states over the real tokens:

    e = sum_t m_t h_t / max(sum_t m_t, 1),   logits = W dropout(e) + b,

where ``m_t = [id_t != pad_id]`` is also the encoder's attention mask, built from the ids, so
the model reads one tensor of padded int64 ids ``(B, L)`` like the word-level text models. Mean
pooling is how sentence-transformers models are trained (their ``1_Pooling`` config). Every
weight is fine-tuned; the head's dropout is the encoder's ``hidden_dropout_prob``.

:class:`HFEncoder` is the encoder alone, giving ``e`` (the embeddings for the ``embedder``
option of soft labels). The ids must come from the model's own tokenizer
(:mod:`reffakd.data.hf_text`); :func:`input_tokenizer` in :mod:`reffakd.models` says so.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from reffakd.errors import UserError, first_line
from reffakd.hub import canonical_reference, hub_location, import_transformers


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """``(B, L, d), (B, L) -> (B, d)``: the mean of the rows of ``hidden`` where ``mask``."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class HFEncoder(nn.Module):
    """A pretrained encoder reading padded ids: ``(B, L) -> (B, d)`` mean-pooled states."""

    def __init__(self, encoder: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.pad_id = pad_id

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def forward(self, ids: Tensor) -> Tensor:
        mask = ids != self.pad_id
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return mean_pool(hidden, mask)

    def encode(self, ids: Tensor) -> Tensor:
        return self(ids)


class HFClassifier(nn.Module):
    """:class:`HFEncoder` and a fresh linear head: ``(B, L) ids -> (B, C)`` logits."""

    def __init__(self, encoder: HFEncoder, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.body = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.hidden_size, num_classes)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.dropout(self.body(ids)))


@lru_cache(maxsize=2)
def _pretrained_state(target: str, local: bool) -> tuple[Any, dict[str, Tensor]]:
    """The config and weights of a pretrained encoder, read once per process."""
    transformers = import_transformers(f"model 'hf:{target}'")
    try:
        model = transformers.AutoModel.from_pretrained(target, local_files_only=local)
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot load model 'hf:{target}' ({first_line(err)}); pass hf: and a folder "
            "holding a transformers model (config.json and weights), or a hub id, online."
        ) from None
    return model.config, {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_encoder(name: str, pad_id: int | None = None) -> HFEncoder:
    """The pretrained encoder of ``hf:DIR_OR_ID`` (weights read from disk once per process)."""
    transformers = import_transformers(f"model {name!r}")
    target, local = hub_location(name)
    config, state = _pretrained_state(target, local)
    encoder = _without_pooler(transformers, config)
    kept = encoder.state_dict().keys()
    encoder.load_state_dict({k: v for k, v in state.items() if k in kept or POOLER not in k})
    encoder.train()
    pad = config.pad_token_id if pad_id is None else pad_id
    if pad is None:
        raise UserError(f"model {name!r} declares no pad token id; use a BERT-like encoder.")
    return HFEncoder(encoder, int(pad))


POOLER = "pooler."


def _without_pooler(transformers: Any, config: Any) -> nn.Module:
    """The encoder without its pooler (``add_pooling_layer=False``, for models that have one):
    mean pooling never reads it, so its weights would get no gradient, which DDP refuses at the
    second step."""
    try:
        return transformers.AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # a model without a pooler takes no such option
        return transformers.AutoModel.from_config(config)


def build_hf_classifier(
    name: str,
    num_classes: int,
    vocab_size: int | None = None,
    max_len: int | None = None,
    pad_id: int | None = None,
) -> HFClassifier:
    """``hf:DIR_OR_ID`` as a classifier of ``num_classes`` (its head seeded by the caller)."""
    encoder = load_encoder(name, pad_id)
    config = encoder.encoder.config
    if vocab_size is not None and vocab_size > config.vocab_size:
        raise UserError(
            f"model {name!r} embeds {config.vocab_size:,} token ids, the data holds "
            f"{vocab_size:,}; encode the text with this model's own tokenizer."
        )
    positions = getattr(config, "max_position_embeddings", None)
    if max_len is not None and positions is not None and max_len > positions:
        raise UserError(
            f"model {name!r} reads at most {positions} tokens, data.max_len is {max_len}; "
            f"set --set data.max_len={positions} or less."
        )
    dropout = float(getattr(config, "hidden_dropout_prob", 0.1) or 0.0)
    return HFClassifier(encoder, num_classes, dropout)


def check_hf_name(name: str) -> None:
    """Fail fast when transformers is missing or a folder holds no model config."""
    import_transformers(f"model {name!r}")
    target, _ = hub_location(name)
    if Path(target).is_dir() and not (Path(target) / "config.json").is_file():
        raise UserError(f"{target} holds no config.json; pass hf: and a transformers model folder.")


def tokenizer_of(name: str) -> str:
    """The tokenizer reference of ``hf:DIR_OR_ID``: the model's own (same folder or id)."""
    return canonical_reference(name)
