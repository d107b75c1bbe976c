"""From flags to configs: what each flag sets, the order sources apply, and how a refused
resume is said in the flags that asked for it."""

from __future__ import annotations

import argparse
import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reffakd.config import (
    TrainConfig,
    apply_overrides,
    from_dict,
    load_yaml,
    merge,
    parse_override,
    to_dict,
)
from reffakd.distill.build import absolute_paths
from reffakd.errors import UserError
from reffakd.training.job import ResumeConflict
from reffakd.training.recipe import dotted_keys, fill_schedule
from reffakd.training.rundir import describe_changes


def _flag_values(args: argparse.Namespace, mapping: dict[str, str]) -> dict[str, Any]:
    """Turn set flags into a nested override dict using dotted config keys."""
    values: dict[str, Any] = {}
    for flag, key in mapping.items():
        value = getattr(args, flag, None)
        if value is None or value is False:
            continue
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return values


COMMON_FLAGS = {
    "dataset": "data.name",
    "data_dir": "data.data_dir",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "milestones": "optim.milestones",
    "optimizer": "optim.name",
    "schedule": "optim.schedule",
    "warmup_epochs": "optim.warmup_epochs",
    "clip_grad_norm": "optim.clip_grad_norm",
    "seed": "seed",
    "device": "device",
}


def _split_dataset_path(args: argparse.Namespace) -> None:
    """``--dataset NAME:PATH`` -> ``--dataset NAME --data-dir PATH``."""
    name, colon, path = (getattr(args, "dataset", None) or "").partition(":")
    if not colon:
        return
    if not name or not path:
        raise UserError(f"--dataset {args.dataset!r}: use NAME, or NAME:PATH as in imagefolder:DIR")
    if getattr(args, "data_dir", None):
        raise UserError(
            f"--dataset {args.dataset} already names the folder; drop --data-dir {args.data_dir}."
        )
    args.dataset, args.data_dir = name, path


def resolve(
    cls: type, args: argparse.Namespace, extra_flags: dict[str, str], base: Any = None
) -> Any:
    """The config of ``cls`` from ``base`` (default: the defaults), the config file, the flags
    and ``--set``, in that order."""
    _split_dataset_path(args)
    defaults = to_dict(cls() if base is None else base)
    values = copy.deepcopy(defaults)  # --set edits sections in place
    given: set[str] = set()  # the dotted keys set by the config file, a flag or --set
    if args.config:
        from_file = load_yaml(args.config)
        values = merge(values, from_file)
        given |= dotted_keys(from_file)
    flags = _flag_values(args, {**COMMON_FLAGS, **extra_flags})
    values = merge(values, flags)
    given |= dotted_keys(flags)
    if args.no_progress:
        values["progress"] = False
    if getattr(args, "tensorboard", False):
        values["tensorboard"] = True
    values = apply_overrides(values, args.overrides)
    for text in args.overrides:
        path, value = parse_override(text)
        given.add(".".join(path))
        if isinstance(value, dict):
            given |= dotted_keys(value, ".".join(path) + ".")
    if base is None:  # a resume keeps its recorded schedule
        values = fill_schedule(values, defaults, given, use_recipe=cls is TrainConfig)
    args.given_keys = given
    return from_dict(cls, values)


def resumed(recorded: Any, args: argparse.Namespace, extra_flags: dict[str, str]) -> Any:
    """The recorded config with the flags applied; the run job decides whether it may resume
    with them (:func:`reffakd.training.job.refuse_changes`)."""
    config = resolve(type(recorded), args, extra_flags, base=recorded)
    if isinstance(config, TrainConfig):
        absolute_paths(config.source)
    return config


@contextlib.contextmanager
def flags_named(run: Path, extra_flags: dict[str, str], may: str) -> Iterator[None]:
    """A refused resume, said in the flags that asked for the changes (``may``: the key a
    resume may change, besides FREE_ON_RESUME)."""
    try:
        yield
    except ResumeConflict as exc:
        flags = {
            key: f"--{flag.replace('_', '-')}"
            for flag, key in {**COMMON_FLAGS, **extra_flags}.items()
        }
        changes = exc.changes
        allowed = "--device, --data-dir, --no-progress" + (", --epochs" if may else "")
        raise UserError(
            f"--resume continues {run} as it was made, but the flags change "
            f"{describe_changes(changes, flags)}; drop {'it' if len(changes) == 1 else 'them'} "
            f"(a resume takes {allowed}), "
            "or start a new run with another --out."
        ) from None


SOFT_LABEL_FLAGS = {
    "samples_per_class": "samples_per_class",
    "boost": "boost",
    "temperature": "temperature",
    "embedder": "embedder",
}


TRAIN_FLAGS = {
    "student": "student",
    "method": "method",
    "source": "source.name",
    "loss": "loss.name",
    "soft_labels": "source.soft_labels",
    "teacher": "source.run",
    "alpha": "loss.alpha",
    "temperature": "loss.temperature",
    "kl_reduction": "loss.reduction",
    "ae_epochs": "ae.optim.epochs",
    "precision": "compute.precision",
    "channels_last": "compute.channels_last",
    "compile": "compute.compile",
    "sync_bn": "compute.sync_bn",
    "deterministic": "compute.deterministic",
}
