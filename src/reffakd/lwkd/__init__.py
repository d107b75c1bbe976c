"""LW-KD: knowledge distillation from a lightweight teacher trained on synthesized digits.

Importing this package registers the ``lwkd`` teacher-signal source and the ``kd_adv`` loss
(docs/lwkd.md). Modules: :mod:`~reffakd.lwkd.glyphs` (procedural digits),
:mod:`~reffakd.lwkd.synth` (the synthesized dataset), :mod:`~reffakd.lwkd.teacher` (the light
teacher), :mod:`~reffakd.lwkd.source` (the per-instance soft targets) and
:mod:`~reffakd.lwkd.adversarial` (the discriminator and the enhanced KD loss).
"""

from __future__ import annotations

from reffakd.lwkd import adversarial, source  # noqa: F401  (registration)
from reffakd.lwkd.adversarial import AdversarialKD, Discriminator
from reffakd.lwkd.source import LWKDSource
from reffakd.lwkd.synth import SplitSizes, class_digits, class_names, num_digits, synthesize
from reffakd.lwkd.teacher import LightTeacherConfig, load_light_teacher, train_light_teacher

__all__ = [
    "AdversarialKD",
    "Discriminator",
    "LWKDSource",
    "LightTeacherConfig",
    "SplitSizes",
    "class_digits",
    "class_names",
    "load_light_teacher",
    "num_digits",
    "synthesize",
    "train_light_teacher",
]
