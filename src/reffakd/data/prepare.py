"""From a data config to what training needs, whatever the modality.

:func:`prepare_data` reads the dataset, holds out validation and returns the
:class:`~reffakd.data.prepared.PreparedData` of the dataset's modality (made by the function
that :data:`PREPARERS` names for ``spec.modality``). Options of one modality set on a dataset of
another are refused, never ignored.
"""

from __future__ import annotations

from collections.abc import Callable

from reffakd.config import DataConfig
from reffakd.data.prepared import DATA_OPTIONS, PreparedData, refuse_foreign
from reffakd.data.prepared_images import PreparedImages, augment_policy, prepare_images
from reffakd.data.prepared_text import PreparedText, prepare_text, prepare_tokenized_text
from reffakd.data.spec import DatasetSpec, get_spec
from reffakd.errors import UserError

__all__ = ["PREPARED_TYPES", "PREPARERS", "PreparedData", "augment_policy", "prepare_data"]

PREPARERS: dict[str, Callable[[DatasetSpec, DataConfig], PreparedData]] = {
    "image": prepare_images,
    "text": prepare_text,
}
PREPARED_TYPES: dict[str, type[PreparedData]] = {"image": PreparedImages, "text": PreparedText}


def prepare_data(config: DataConfig, tokenizer: str | None = None) -> PreparedData:
    """Read the dataset of ``config`` and prepare it for its modality.

    ``tokenizer``: the tokenizer the model brings (``hf:DIR_OR_ID``, see
    :func:`reffakd.models.input_tokenizer`); text is then encoded with its ids."""
    spec = get_spec(config.name)
    own = PREPARED_TYPES[spec.modality].data_options
    refuse_foreign(config, own, DATA_OPTIONS, "data", spec)
    prepared = PREPARERS[spec.modality](spec, config) if tokenizer is None else None
    if prepared is not None:
        return prepared
    if spec.modality != "text":
        raise UserError(
            f"a model with its own tokenizer ({tokenizer}) reads text, and {spec.name} is "
            f"{spec.modality} data; use a text dataset."
        )
    return prepare_tokenized_text(spec, config, tokenizer)
