"""Methods are compositions: a teacher-signal source × a loss, plus options.

``PRESETS`` is the only table that names methods. ``--method`` picks a preset; ``--source`` and
``--loss`` override either half; ``source``/``loss`` option dicts override the preset's options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reffakd.errors import UserError
from reffakd.registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    source: str | None
    loss: str
    source_options: dict[str, Any] = field(default_factory=dict)
    loss_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


PRESETS: Registry[MethodSpec] = Registry("method")
_TABLE = {
    "ce": MethodSpec(None, "ce", description="cross-entropy on hard labels"),
    "ls": MethodSpec("smooth", "soft_ce", {"eps": 0.1}, description="label smoothing"),
    "tfkd-reg": MethodSpec(
        "virtual",
        "kd",
        {"a": 0.99, "temperature": 20.0},
        {"alpha": 0.9, "temperature": 20.0, "teacher_temperature": 1.0},
        "Tf-KD with the virtual teacher",
    ),
    "reffakd": MethodSpec(
        "aesl",
        "kd",
        {},
        {"alpha": 0.9, "temperature": 4.0, "teacher_temperature": 1.0},
        "ReffAKD: AESL soft labels with the KD loss (only the student is softened)",
    ),
    "reffakd+dkd": MethodSpec("aesl", "dkd", description="AESL as the teacher signal of DKD"),
    "reffakd+dist": MethodSpec("aesl", "dist", description="AESL as the teacher signal of DIST"),
}
for _name, _spec in _TABLE.items():
    PRESETS.add(_name, _spec)


@dataclass(frozen=True)
class ResolvedMethod:
    name: str
    source: str | None
    loss: str
    source_options: dict[str, Any]
    loss_options: dict[str, Any]


def resolve_method(
    method: str,
    source: dict[str, Any] | None = None,
    loss: dict[str, Any] | None = None,
) -> ResolvedMethod:
    """Combine a preset with the config's ``source``/``loss`` sections.

    Each section may carry ``name`` to replace the preset's half; the other keys are options.
    """
    spec = PRESETS.get(method)
    source = dict(source or {})
    loss = dict(loss or {})
    source_name = source.pop("name", spec.source)
    loss_name = loss.pop("name", spec.loss)
    same_source = source_name == spec.source
    same_loss = loss_name == spec.loss
    source_options = {**(spec.source_options if same_source else {}), **source}
    loss_options = {**(spec.loss_options if same_loss else {}), **loss}
    if source_name is None and source_options:
        raise UserError(f"method {method!r} uses no teacher signal; drop the source options.")
    return ResolvedMethod(method, source_name, loss_name, source_options, loss_options)
