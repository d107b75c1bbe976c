"""The schedule a command-line run gets for what its command line leaves out.

A config's defaults are the reference recipe (200 epochs, learning rate × 0.2 after epochs 60,
120 and 160). On the command line:

* ``reffakd train`` takes the dataset's recipe (:attr:`DatasetSpec.recipe`, e.g. 10 epochs at
  lr 0.05 for Fashion-MNIST) for every ``optim`` key not given by ``--config``, a flag or
  ``--set``;
* milestones not given are scaled with the epochs: a milestone m of a recipe of E₀ epochs moves
  to round(m · E / E₀) for a run of E epochs, keeping those in [1, E − 1] (a rate change after
  the last epoch does nothing). Milestones given explicitly are kept as they are.
"""

from __future__ import annotations

from typing import Any

from reffakd.data.spec import DATASETS

OPTIM_SECTIONS = ("optim", "ae.optim")


def scale_milestones(milestones: list[int], from_epochs: int, to_epochs: int) -> list[int]:
    """``milestones`` of a ``from_epochs`` schedule, moved proportionally to ``to_epochs``."""
    moved = {max(1, int(m * to_epochs / from_epochs + 0.5)) for m in milestones}
    return sorted(m for m in moved if m < to_epochs)


def dotted_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    """Every key of a nested dict, dotted (``{"optim": {"lr": 1}}`` -> ``{"optim.lr"}``)."""
    keys = set()
    for key, value in values.items():
        keys.add(f"{prefix}{key}")
        if isinstance(value, dict):
            keys |= dotted_keys(value, f"{prefix}{key}.")
    return keys


def _section(values: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    node: Any = values
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def dataset_recipe(name: Any) -> dict[str, Any]:
    """The dataset's student schedule, or {} for a name that is not a registered dataset."""
    return dict(DATASETS.get(name).recipe) if isinstance(name, str) and name in DATASETS else {}


def fill_schedule(
    values: dict[str, Any], defaults: dict[str, Any], given: set[str], use_recipe: bool
) -> dict[str, Any]:
    """``values`` (a config as a dict) with the schedule keys not in ``given`` filled in: the
    dataset's recipe for ``optim`` when ``use_recipe``, and milestones scaled to the epochs.
    ``defaults`` is the same config's dict before anything was given."""
    for prefix in OPTIM_SECTIONS:
        optim, base = _section(values, prefix), _section(defaults, prefix)
        if optim is None or base is None:
            continue
        data = _section(values, "data") or {}
        recipe = dataset_recipe(data.get("name")) if use_recipe and prefix == "optim" else {}
        for key, value in recipe.items():
            if f"{prefix}.{key}" not in given:
                optim[key] = value
        base = {**base, **recipe}
        epochs = optim.get("epochs")
        if f"{prefix}.milestones" not in given and isinstance(epochs, int) and epochs >= 1:
            optim["milestones"] = scale_milestones(base["milestones"], base["epochs"], epochs)
    return values


def describe_schedule(optim: Any, dataset: str, given: set[str]) -> str:
    """One line on the schedule a run got, naming what came from the dataset's recipe and
    whether the milestones were scaled."""
    recipe = dataset_recipe(dataset)
    keys = ("epochs", "lr", "batch_size")
    origin = [key for key in keys if key in recipe and f"optim.{key}" not in given]
    notes = [f"{dataset}'s default {', '.join(origin)}"] if origin else []
    if "optim.milestones" not in given and "optim.epochs" in given:
        notes.append("milestones scaled to the epochs")
    if optim.schedule != "multistep":
        decay = f"{optim.schedule} decay"
    elif optim.milestones:
        after = ", ".join(map(str, optim.milestones))
        decay = f"lr x{optim.gamma:g} after epoch{'s' * (len(optim.milestones) > 1)} {after}"
    else:
        decay = "constant lr"
    plural = "s" * (optim.epochs != 1)
    return (
        f"schedule: {optim.epochs} epoch{plural}, {optim.name} lr {optim.lr:g}, batch "
        f"{optim.batch_size}, {decay}" + (f" ({'; '.join(notes)})" if notes else "")
    )
