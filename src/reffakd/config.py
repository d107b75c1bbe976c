"""Run configuration: small dataclasses per concern, YAML files, ``--set key=value`` overrides.

Each component owns its section (``data``, ``augment``, ``optim``, ``source``, ``loss``, ...);
source and loss sections are free-form option dicts validated by the component that takes them.
Precedence: defaults < ``--config FILE`` < command-line flags < ``--set`` overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from reffakd.errors import UserError


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    data_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    image_size: int | None = None  # None: the dataset's default model input size
    download: bool = True


@dataclass
class AugmentConfig:
    """None means the dataset's default policy (METHODS §2.8)."""

    enabled: bool = True
    crop_padding: int | None = None
    flip: bool | None = None
    rotation: float | None = None


@dataclass
class OptimConfig:
    """SGD with step decay: the reference recipe (METHODS §2.8) by default."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    milestones: list[int] = field(default_factory=lambda: [60, 120, 160])
    gamma: float = 0.2
    eval_batch_size: int = 1000


@dataclass
class TrainConfig:
    """Student training: ``student`` learns on ``data`` with ``method`` (a preset or source×loss).

    ``ae`` is the recipe used when the method needs AESL and no soft-label file is given: the
    autoencoder is then trained inside the run directory (its data, seed and device follow this
    config's).
    """

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    student: str = "lenet5"
    method: str = "ce"
    source: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    ae: SoftLabelConfig = field(default_factory=lambda: SoftLabelConfig())
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class SoftLabelConfig:
    """Autoencoder training and the AESL recipe (METHODS §2)."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Soft labels converge long before the reference's 200 epochs: see docs/reffakd.md.
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=4, milestones=[3]))
    samples_per_class: int = 40
    boost: float | None = None  # None: the dataset's default
    temperature: float = 1.0
    seed: int = 0
    device: str = "auto"
    progress: bool = True


C = TypeVar("C")


def from_dict(cls: type[C], values: dict[str, Any] | None, prefix: str = "") -> C:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys by name."""
    values = dict(values or {})
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(
            f"unknown config key '{prefix}{unknown[0]}'; "
            f"known keys here: {', '.join(sorted(names))}."
        )
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        target = _dataclass_in(hints[name])
        if target is not None and isinstance(value, dict):
            kwargs[name] = from_dict(target, value, f"{prefix}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in getattr(hint, "__args__", ()):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``optim.lr=0.05`` -> (["optim", "lr"], 0.05). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise UserError(f"--set expects key=value (e.g. optim.lr=0.05), got {text!r}.")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set nested keys in a plain dict (a config's ``to_dict`` form)."""
    for text in overrides:
        path, value = parse_override(text)
        node = values
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {text}: {part!r} is not a section.")
            node = child
        node[path[-1]] = value
    return values


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found.")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise UserError(f"config file {path} is not valid YAML: {first}") from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values.")
    return values


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
