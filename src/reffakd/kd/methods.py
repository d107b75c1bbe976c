"""Low level, the preset table. Methods are compositions: a teacher-signal source × a loss, plus
options.

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


PRESETS: Registry[MethodSpec] = Registry("method", entry_points="reffakd.methods")
# Hinton KD: the same temperature on both sides (teacher_temperature None), T 4, alpha 0.9.
_HINTON = {"alpha": 0.9, "temperature": 4.0, "teacher_temperature": None}
# Tf-KD self-training: the authors' CIFAR-100 configs (yuanli2333/Teacher-free-Knowledge-
# Distillation, experiments/kd_experiments/*_self_teacher/params.json) use alpha 0.95 for
# MobileNetV2, ShuffleNetV2, ResNet-18 and ResNet-50 (0.9 for ResNeXt29), and T 20 for
# MobileNetV2, ShuffleNetV2 and ResNeXt29 (6 for the ResNets), with T on both sides (their
# loss_kd_self). Their KL is KLDivLoss()'s mean (KL / C) times a per-model multiplier (1 to 100);
# here the true KL is used, which only rescales the KD term.
_TFKD_SELF = {"alpha": 0.95, "temperature": 20.0, "teacher_temperature": None}
_NKD_CIFAR = {"temperature": 3.0, "gamma": 3.5}
_TABLE = {
    "ce": MethodSpec(None, "ce", description="cross-entropy on hard labels"),
    "ls": MethodSpec("smooth", "soft_ce", {"eps": 0.1}, description="label smoothing"),
    "tfkd-reg": MethodSpec(
        "virtual",
        "kd",
        {"a": 0.99, "temperature": 20.0},
        # The Tf-KD reference softens only the virtual target (softmax(p_d / 20)), leaves the
        # student at T = 1 without T², and weighs KLDivLoss() (KL / C) by alpha 0.1 and a
        # multiplier of 100 (= C on CIFAR-100): the true KL with alpha 0.1.
        {"alpha": 0.1, "temperature": 1.0, "teacher_temperature": 1.0},
        "Tf-KD with the virtual teacher",
    ),
    "tfkd-self": MethodSpec(
        "self",
        "kd",
        {},
        _TFKD_SELF,
        "Tf-KD self-training: a trained copy of the student is the teacher (--teacher RUN)",
    ),
    "kd": MethodSpec(
        "teacher", "kd", {}, _HINTON, "Hinton KD from a trained teacher (--teacher RUN)"
    ),
    "reffakd": MethodSpec(
        "aesl",
        "kd",
        {},
        # Chosen on Fashion-MNIST's validation split with `reffakd tune`
        # (docs/results/tune-fmnist-reffakd): alpha 0.9 costs 5-9 points there, because the
        # flat AESL rows pull the student towards uniform.
        {"alpha": 0.3, "temperature": 4.0, "teacher_temperature": 1.0},
        "ReffAKD: AESL soft labels with the KD loss (only the student is softened)",
    ),
    "reffakd+dkd": MethodSpec("aesl", "dkd", description="AESL as the teacher signal of DKD"),
    "reffakd+dist": MethodSpec("aesl", "dist", description="AESL as the teacher signal of DIST"),
    "kd+dkd": MethodSpec(
        "teacher", "dkd", description="DKD from a trained teacher (--teacher RUN)"
    ),
    "kd+dist": MethodSpec(
        "teacher", "dist", description="DIST from a trained teacher (--teacher RUN)"
    ),
    # LW-KD (docs/lwkd.md): the lwkd source softens the light teacher by its own temperature
    # (4) and returns log-probabilities, so the KD loss softens only the student (teacher T 1).
    "lwkd": MethodSpec(
        "lwkd",
        "kd_adv",
        {"temperature": 4.0},
        {"alpha": 0.9, "temperature": 4.0, "teacher_temperature": 1.0, "adv_weight": 0.1},
        "LW-KD: light teacher on synthesized digits, KD + adversarial loss",
    ),
    "lwkd-noadv": MethodSpec(
        "lwkd",
        "kd",
        {"temperature": 4.0},
        {"alpha": 0.9, "temperature": 4.0, "teacher_temperature": 1.0},
        "LW-KD without the adversarial term (ablation)",
    ),
    # The teacher-free family (docs/methods.md §2.9): targets made from the student itself.
    # PS-KD: the official code's CIFAR-100 alpha_T 0.8 (lgcnsai/PS-KD-Pytorch).
    "pskd": MethodSpec(
        "pskd",
        "soft_ce",
        {"alpha_T": 0.8},
        description="PS-KD: the student's last-epoch predictions mixed into the label",
    ),
    "reffakd+pskd": MethodSpec(
        "pskd",
        "soft_ce",
        {"alpha_T": 0.8, "prior": "aesl"},
        description="PS-KD whose predictions start from the AESL rows",
    ),
    # CS-KD: lambda 1, T 4 (alinlab/cs-kd defaults).
    "cskd": MethodSpec(
        "cskd",
        "self_kd",
        loss_options={"weight": 1.0, "temperature": 4.0},
        description="CS-KD: the student's prediction on a same-class partner",
    ),
    # OLS: alpha 0.5 on the hard labels, label smoothing 0.1 in the first epoch.
    "ols": MethodSpec(
        "ols",
        "soft_ce",
        {"init": "ls"},
        {"hard_weight": 0.5},
        "OLS: class rows from last epoch's correct predictions",
    ),
    "reffakd+ols": MethodSpec(
        "ols",
        "soft_ce",
        {"init": "aesl"},
        {"hard_weight": 0.5},
        "OLS whose class rows start from the AESL rows",
    ),
    # DLB: T 3, weight 1 (the paper's CIFAR settings).
    "dlb": MethodSpec(
        "dlb",
        "self_kd",
        loss_options={"weight": 1.0, "temperature": 3.0},
        description="DLB: last mini-batch's predictions on the repeated half",
    ),
    "zipf-ls": MethodSpec(
        "zipf",
        "self_kd",
        {"power": 1.0},
        {"weight": 1.0, "temperature": 1.0},
        "Zipf's LS (logit ranking): Zipf's law over the student's own ranking",
    ),
    # NKD and USKD (docs/methods.md §7): yzd-v/cls_KD's CIFAR-100 configs,
    # configs/distillers/cifar100/res34_distill_res18_cifar.py (NKD: temp 3, gamma 3.5) and
    # res18_sd_cifar.py (USKD: alpha = beta = mu = 0.1).
    "nkd": MethodSpec(
        "teacher",
        "nkd",
        {},
        _NKD_CIFAR,
        "NKD: normalized KD from a trained teacher (--teacher RUN)",
    ),
    "reffakd+nkd": MethodSpec(
        "aesl",
        "nkd",
        {},
        # The official ImageNet weights (T 1, gamma 1.5), not CIFAR's 3.5 T² = 31.5 on the
        # non-target term, which pins the student to the near-flat AESL rows: one epoch on 10k
        # CIFAR-10 images, resnet20, test 12.5% (T 3, gamma 3.5) against 23.8-33.8% (ce
        # 26.3-30.6%); docs/methods.md §7.1. T_t 1 takes the row as is, as in `reffakd`.
        {"temperature": 1.0, "gamma": 1.5, "teacher_temperature": 1.0},
        "AESL soft labels with the NKD loss",
    ),
    "uskd": MethodSpec(
        "uskd",
        "uskd",
        {"ranking": "log_prob"},
        {"alpha": 0.1, "beta": 0.1, "mu": 0.1},
        "USKD: the student's own soft target and Zipf labels ranked with a weak head",
    ),
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

    @property
    def signal(self) -> str | None:
        """What the source reads from outside the student: its own name, or ``aesl`` for a
        source seeded from AESL rows (an option set to ``aesl``: ``reffakd+pskd``, ...)."""
        return "aesl" if "aesl" in self.source_options.values() else self.source


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
