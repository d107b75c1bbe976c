"""Run configuration: small dataclasses per concern, YAML files, ``--set key=value`` overrides.

Each component owns its section (``data``, ``augment``, ``optim``, ``source``, ``loss``, ...);
source and loss sections are free-form option dicts validated by the component that takes them.
Precedence: defaults < ``--config FILE`` < command-line flags < ``--set`` overrides.
"""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from reffakd.errors import UserError, UserTypeError, first_line


@dataclass
class DataConfig:
    """Which data, and how it becomes model input. ``image_size`` applies to image datasets;
    ``min_freq``, ``max_vocab``, ``max_len`` and ``textfile`` to text ones (the other modality's
    options are refused, see :mod:`reffakd.data.prepare`).
    """

    name: str = "fashion-mnist"
    data_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    image_size: int | None = None  # None: the dataset's default model input size
    download: bool = True
    min_freq: int = 1  # text: a token enters the vocabulary after this many training occurrences
    max_vocab: int | None = None  # text: cap on the vocabulary, the 4 specials included
    max_len: int | None = None  # text: padded length; None: 99th percentile of train, <= 128
    textfile: dict[str, Any] = field(default_factory=dict)  # text: options of dataset textfile
    # text: train on a seeded, stratified subset of about this many training texts (None: all)
    train_limit: int | None = None

    def __post_init__(self) -> None:
        _require(
            0.0 <= self.val_fraction < 1.0,
            f"data.val_fraction must be in [0, 1), got {self.val_fraction}.",
        )
        _check_seed(self.split_seed, "data.split_seed")
        if self.image_size is not None:
            _at_least(self.image_size, 8, "data.image_size")
        _at_least(self.min_freq, 1, "data.min_freq")
        if self.max_vocab is not None:
            _at_least(self.max_vocab, 5, "data.max_vocab (the 4 special tokens and one word)")
        if self.max_len is not None:
            _at_least(self.max_len, 1, "data.max_len")
        if self.train_limit is not None:
            _at_least(self.train_limit, 2, "data.train_limit")


@dataclass
class AugmentConfig:
    """None means the dataset's default policy (docs/methods.md §2.8)."""

    enabled: bool = True
    crop_padding: int | None = None
    flip: bool | None = None
    rotation: float | None = None
    token_dropout: float = 0.0  # text: probability that a word becomes <unk> in training

    def __post_init__(self) -> None:
        _require(
            0.0 <= self.token_dropout < 1.0,
            f"augment.token_dropout must be in [0, 1), got {self.token_dropout}.",
        )
        if self.crop_padding is not None:
            _at_least(self.crop_padding, 0, "augment.crop_padding")
        _require(
            self.rotation is None or 0 <= self.rotation <= 180,
            f"augment.rotation must be in [0, 180] degrees, got {self.rotation}.",
        )


OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("multistep", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class OptimConfig:
    """The optimizer and its schedule. The default is the reference recipe (docs/methods.md
    §2.8): SGD, the learning rate × ``gamma`` at each of ``milestones`` (epochs).

    ``name``: ``sgd`` (``momentum``, ``nesterov``) or ``adamw`` (``betas``, ``eps``; decoupled
    ``weight_decay``). ``schedule``: ``multistep`` or ``cosine`` (from ``lr`` to 0 over the
    steps after the warm-up). ``warmup_epochs``: a linear warm-up, per step, over that many
    epochs (fractions allowed). ``clip_grad_norm``: the largest global gradient norm (None: no
    clipping). ``no_decay_norm_bias``: no weight decay on biases and normalisation weights
    (every parameter with fewer than 2 dimensions).
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    milestones: list[int] = field(default_factory=lambda: [60, 120, 160])
    gamma: float = 0.2
    eval_batch_size: int = 1000
    name: str = "sgd"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: str = "multistep"
    warmup_epochs: float = 0.0
    clip_grad_norm: float | None = None
    no_decay_norm_bias: bool = False

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "eval_batch_size"):
            _at_least(getattr(self, key), 1, f"optim.{key}")
        for key in ("lr", "momentum", "weight_decay"):
            _at_least(getattr(self, key), 0, f"optim.{key}")
        _require(self.gamma > 0, f"optim.gamma must be > 0, got {self.gamma}.")
        _require(
            all(m >= 1 for m in self.milestones),
            f"optim.milestones must be epochs >= 1, got {self.milestones}.",
        )
        _require(
            self.name in OPTIMIZERS,
            f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {self.name!r}.",
        )
        _require(
            not self.nesterov or (self.name == "sgd" and self.momentum > 0),
            "optim.nesterov needs optim.name sgd and optim.momentum > 0.",
        )
        _require(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            f"optim.betas must be two numbers in [0, 1), e.g. [0.9, 0.999], got {self.betas}.",
        )
        _require(self.eps > 0, f"optim.eps must be > 0, got {self.eps}.")
        _require(
            self.schedule in SCHEDULES,
            f"optim.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}.",
        )
        _require(
            0.0 <= self.warmup_epochs <= self.epochs,
            f"optim.warmup_epochs must be in [0, optim.epochs], got {self.warmup_epochs}.",
        )
        _require(
            self.clip_grad_norm is None or self.clip_grad_norm > 0,
            f"optim.clip_grad_norm must be > 0 (null: no clipping), got {self.clip_grad_norm}.",
        )


@dataclass
class ComputeConfig:
    """How the student's training runs; none of it changes what is computed, only how fast.

    ``precision``: ``auto`` (bf16 with channels-last where the device has bf16 matrix units, else
    fp32; resolved once and recorded as the concrete value), ``fp32``, ``bf16`` or ``fp16``
    autocast (fp16 with a gradient scaler); the loss maths stays in fp32. ``channels_last``:
    NHWC memory format for conv nets.
    ``compile``: ``torch.compile`` of the student and of a frozen teacher. ``sync_bn``:
    BatchNorm statistics over the global batch under ``torchrun`` (CUDA only).
    ``check_every``: steps between the host syncs that check the loss for NaN/inf and update
    the progress bar (and at every epoch end). ``deterministic``: deterministic kernels only
    (``torch.use_deterministic_algorithms``, cuDNN without autotuning); slower on CUDA.
    """

    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    check_every: int = 50
    deterministic: bool = False

    def __post_init__(self) -> None:
        _require(
            self.precision in PRECISIONS,
            f"compute.precision must be one of {', '.join(PRECISIONS)} "
            f"(--precision), got {self.precision!r}.",
        )
        _at_least(self.check_every, 1, "compute.check_every")


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
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    student: str = "lenet5"
    method: str = "ce"
    source: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    ae: SoftLabelConfig = field(default_factory=lambda: SoftLabelConfig())
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = False  # per-epoch scalars in RUN/tensorboard (needs tensorboard)

    def __post_init__(self) -> None:
        _check_seed(self.seed, "seed")


@dataclass
class SoftLabelConfig:
    """Autoencoder training and the AESL recipe (docs/methods.md §2)."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Soft labels converge long before the reference's 200 epochs: see docs/reffakd.md.
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=4, milestones=[3]))
    samples_per_class: int = 40
    boost: float | None = None  # None: the dataset's default
    temperature: float | None = None  # None: the dataset's default (1 for images)
    # a pretrained text encoder (hf:DIR_OR_ID) whose mean-pooled embeddings replace the trained
    # autoencoder's (no training); None: train the autoencoder
    embedder: str | None = None
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        _at_least(self.samples_per_class, 2, "samples_per_class")
        _check_seed(self.seed, "seed")
        _require(
            self.temperature is None or self.temperature > 0,
            f"the soft-label temperature must be > 0, got {self.temperature}.",
        )


def ae_config_for(config: TrainConfig) -> SoftLabelConfig:
    """The autoencoder recipe of a training run, with the run's data, seed and device."""
    return dataclasses.replace(
        config.ae,
        data=config.data,
        seed=config.seed,
        device=config.device,
        progress=config.progress,
        tensorboard=config.tensorboard,
    )


C = TypeVar("C")


def from_dict(cls: type[C], values: dict[str, Any] | None, prefix: str = "") -> C:
    """Build dataclass ``cls`` from a nested dict, checking names and types of every key."""
    if values is not None and not isinstance(values, dict):
        raise UserError(f"config section '{prefix.rstrip('.') or 'root'}' must be a mapping.")
    values = dict(values or {})
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(
            f"unknown config key '{prefix}{unknown[0]}'; "
            f"known keys here: {', '.join(sorted(names))}."
        )
    kwargs = {
        name: _check_type(value, hints[name], f"{prefix}{name}") for name, value in values.items()
    }
    return cls(**kwargs)


def _check_type(value: Any, hint: Any, key: str) -> Any:
    """``value`` converted to ``hint`` (int -> float only), or a UserError naming the key."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _check_type(value, option, key)
            except UserError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"config section '{key}' must be a mapping, got {value!r}.")
        return from_dict(hint, value, f"{key}.")
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(key, "a list", value)
        return [_check_type(item, args[0], key) for item in value] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _type_error(key, "a mapping", value)
        return value
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(key, "true or false", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, "an integer", value)
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise _type_error(key, "a number", value) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(key, "a number", value)
        if not math.isfinite(value):
            raise _type_error(key, "a finite number", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _type_error(key, "a string", value)
        return value
    return value


def _type_error(key: str, expected: str, value: Any) -> UserError:
    return UserTypeError(
        f"config key '{key}' must be {expected}, got {value!r}; fix it in the config file or --set."
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _at_least(value: float, low: float, key: str) -> None:
    _require(value >= low, f"{key} must be >= {low}, got {value}.")


SEED_LIMIT = 2**63  # torch's generators take seeds below 2**64; keep to the signed range


def _check_seed(seed: int, key: str) -> None:
    _require(0 <= seed < SEED_LIMIT, f"{key} must be in [0, 2**63), got {seed}.")


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``optim.lr=0.05`` -> (["optim", "lr"], 0.05). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise UserError(f"--set expects key=value (e.g. optim.lr=0.05), got {text!r}.")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml_value(raw)


def yaml_value(raw: str) -> Any:
    """A command-line value as YAML (``0.1``, ``[1, 2]``, ``true``); text that is not valid YAML
    stays text, for the config's type check to name."""
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return raw


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
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not UTF-8 text; save it as UTF-8.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {first_line(exc)}") from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values.")
    return values


def merge(base: dict[str, Any], update: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. A section of ``base`` (a mapping) can only be
    replaced by a mapping: ``optim: 5`` or an empty ``optim:`` is refused, naming the key."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(out.get(key), dict):
            if not isinstance(value, dict):
                raise UserError(
                    f"config section '{prefix}{key}' must be a mapping of keys to values, "
                    f"got {value!r}; fix it in the config file or --set."
                )
            out[key] = merge(out[key], value, f"{prefix}{key}.")
        else:
            out[key] = value
    return out


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
