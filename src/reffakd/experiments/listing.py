"""``reffakd list WHAT``: the registered names, as small tables."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from reffakd.config import OptimConfig, to_dict
from reffakd.data.spec import DATASETS, DatasetSpec
from reffakd.errors import UserError
from reffakd.experiments.bench import load_suite, packaged_suites
from reffakd.kd.loss_objectives import OBJECTIVES
from reffakd.kd.methods import PRESETS
from reffakd.kd.source_base import SOURCES
from reffakd.models import MODELS, TOKENIZED_MODELS
from reffakd.training.cost import count_parameters

DEFAULT_CLASSES = 10
DEFAULT_INPUT = {"in_channels": 3, "image_size": 32}


def table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _options(options: dict[str, Any], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{k}={v}" for k, v in options.items())


def list_methods() -> str:
    rows = []
    for name in PRESETS.names():
        spec = PRESETS.get(name)
        options = [_options(spec.source_options, "source."), _options(spec.loss_options, "loss.")]
        shown = "; ".join(o for o in options if o) or "the loss's defaults"
        rows.append([name, spec.source or "-", spec.loss, shown, spec.description])
    return table(["method", "source", "loss", "preset options", "description"], rows)


def list_models() -> str:
    rows = []
    for name in MODELS.names():
        factory = MODELS.get(name)
        shape = default_input(factory)
        try:
            parameters = f"{count_parameters(factory(num_classes=DEFAULT_CLASSES, **shape)):,}"
        except UserError:  # e.g. a plugin's model that needs another input
            parameters = "?"
        rows.append([name, parameters, _options(shape) or "-"])
    note = f"parameters with {DEFAULT_CLASSES} classes at the input shown"
    forms = "".join(
        f"\n{prefix}:DIR_OR_ID  {kind.listed}" for prefix, kind in TOKENIZED_MODELS.items()
    )
    return table(["model", "parameters", "input"], rows) + f"\n({note})" + forms


def default_input(factory: Callable[..., Any]) -> dict[str, Any]:
    """The input a model factory is listed at: its ``default_input``, else the defaults of its
    ``in_channels`` / ``image_size`` parameters, else 3x32x32."""
    declared = getattr(factory, "default_input", None)
    if declared is not None:
        return dict(declared)
    parameters = inspect.signature(factory).parameters
    shape = {}
    for key, fallback in DEFAULT_INPUT.items():
        default = parameters[key].default if key in parameters else inspect.Parameter.empty
        shape[key] = fallback if default is inspect.Parameter.empty else default
    return shape


def _image_input(spec: DatasetSpec) -> str:
    if spec.in_channels is None:
        return "images, shape from the data"
    return f"{spec.in_channels}x{spec.native_size}x{spec.native_size} images"


def _text_input(spec: DatasetSpec) -> str:
    return "text (word tokens)"


INPUT_DESCRIPTIONS: dict[str, Callable[[DatasetSpec], str]] = {
    "image": _image_input,
    "text": _text_input,
}


def list_datasets() -> str:
    rows = []
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        inputs = INPUT_DESCRIPTIONS[spec.modality](spec)
        rows.append([name, str(spec.num_classes or "from the data"), inputs, _recipe(spec)])
    return table(["dataset", "classes", "input", "train schedule (default)"], rows)


def _recipe(spec: DatasetSpec) -> str:
    """The dataset's `reffakd train` schedule, e.g. ``10 epochs, lr 0.05, x0.2 after 6, 8``."""
    optim = {**to_dict(OptimConfig()), **spec.recipe}
    after = ", ".join(map(str, optim["milestones"]))
    return (
        f"{optim['epochs']} epochs, lr {optim['lr']:g}, batch {optim['batch_size']}, "
        f"x{optim['gamma']:g} after {after}"
    )


def _first_doc_line(obj: Callable[..., Any]) -> str:
    """The first sentence of a docstring, on one line."""
    paragraph = (inspect.getdoc(obj) or "").split("\n\n")[0]
    text = " ".join(paragraph.split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def list_sources() -> str:
    rows = [[name, _first_doc_line(SOURCES.get(name))] for name in SOURCES.names()]
    return table(["source", "description"], rows)


def list_losses() -> str:
    rows = [[name, _first_doc_line(OBJECTIVES.get(name))] for name in OBJECTIVES.names()]
    return table(["loss", "description"], rows)


def list_suites() -> str:
    rows = []
    for name in packaged_suites():
        suite = load_suite(name)
        rows.append(
            [name, ", ".join(suite.datasets), str(len(suite.methods)), str(len(suite.seeds))]
        )
    return table(["suite", "datasets", "methods", "seeds"], rows)


LISTINGS: dict[str, Callable[[], str]] = {
    "datasets": list_datasets,
    "models": list_models,
    "methods": list_methods,
    "sources": list_sources,
    "losses": list_losses,
    "suites": list_suites,
}
