"""LW-KD's enhanced KD loss: the KD loss plus an adversarial term from a small discriminator.

With p_t = softmax(t / T_t) the teacher's and p_s = softmax(z / T) the student's distributions
(the same temperatures as the KD term), a discriminator D: Δ^{C-1} → ℝ (an MLP on probability
vectors, output a logit, σ(D) = P[teacher]) is trained to tell them apart, and the student to
fool it with the non-saturating GAN loss:

    L_student = (1 - α) CE(z, y) + α T² KL(p_t || p_s) + λ · mean(-log σ(D(p_s)))
    L_D       = mean(-log σ(D(p_t)) - log(1 - σ(D(p_s))))

Updates alternate: the engine's SGD step updates the student on L_student (D's weights are used
detached, so they get no gradient from it), then ``after_step`` takes one step of D's own Adam
optimizer on L_D with the detached p_t, p_s saved by the forward pass. Under ``torchrun`` D's
gradients are averaged over the processes, weighted by their samples (as DDP does for the
student's), so D stays the same on every process. The teacher gets no gradient anywhere. The
objective is an ``nn.Module`` (it moves with the Distiller) and
checkpoints D and its optimizer through ``extra_state`` / ``load_extra_state``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from reffakd.errors import UserError
from reffakd.kd.loss_objectives import OBJECTIVES, KnowledgeDistillation, Objective
from reffakd.kd.source_base import TeacherSignal
from reffakd.training.distributed import average_gradients


class Discriminator(nn.Module):
    """MLP on C-dim probability vectors: C → h → h → 1 (LeakyReLU 0.2), a logit per sample."""

    def __init__(self, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_classes, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, probs: Tensor) -> Tensor:
        return self.net(probs).squeeze(-1)


@OBJECTIVES.register("kd_adv")
class AdversarialKD(nn.Module, Objective):
    """KD + λ × adversarial. The KD options (alpha, temperature, teacher_temperature, reduction,
    standardize) pass through ``kd_options`` to
    :class:`reffakd.kd.loss_objectives.KnowledgeDistillation`.

    ``adv_weight`` λ; ``disc_hidden`` D's width; ``disc_lr`` / ``disc_betas`` its Adam settings;
    ``disc_seed`` seeds D's initialisation (so it does not depend on what ran before). D is
    created lazily on the first batch, when C is known, unless ``num_classes`` is given.
    """

    forwards_options_to = KnowledgeDistillation

    def __init__(
        self,
        adv_weight: float = 0.1,
        disc_hidden: int = 64,
        disc_lr: float = 2e-4,
        disc_betas: tuple[float, float] | list[float] = (0.5, 0.999),
        disc_seed: int = 0,
        num_classes: int | None = None,
        **kd_options: Any,
    ) -> None:
        super().__init__()
        if adv_weight < 0:
            raise UserError(f"adv_weight must be >= 0, got {adv_weight}")
        if disc_hidden < 1 or disc_lr <= 0:
            raise UserError(
                f"disc_hidden must be >= 1 and disc_lr > 0, got {disc_hidden} and {disc_lr}"
            )
        self.kd = KnowledgeDistillation(**kd_options)
        self.adv_weight = adv_weight
        self.disc_hidden, self.disc_lr, self.disc_seed = disc_hidden, disc_lr, disc_seed
        self.disc_betas = (float(disc_betas[0]), float(disc_betas[1]))
        self.discriminator: Discriminator | None = None
        self.disc_optimizer: torch.optim.Optimizer | None = None
        self._last_disc_loss: Tensor | None = None
        self._pending: tuple[Tensor, Tensor] | None = None
        # An empty buffer that follows ``.to(device)``: where D is created when it is lazy.
        self.register_buffer("device_probe", torch.zeros(0), persistent=False)
        if num_classes is not None:
            self._build(num_classes)

    # ----------------------------------------------------------------- the discriminator
    def _build(self, num_classes: int) -> None:
        """Create D (seeded, without touching the global RNG) and its Adam optimizer, on the
        objective's current device."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.disc_seed)
            discriminator = Discriminator(num_classes, self.disc_hidden)
        self.discriminator = discriminator.to(self.device_probe.device)
        self.disc_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.disc_lr, betas=self.disc_betas
        )

    def probabilities(self, logits: Tensor, teacher_logits: Tensor) -> tuple[Tensor, Tensor]:
        """(p_t, p_s) at the KD term's temperatures; p_t carries no gradient."""
        t_student = self.kd.temperature
        t_teacher = self.kd.teacher_temperature or t_student
        p_teacher = (teacher_logits.detach() / t_teacher).softmax(dim=1)
        return p_teacher, (logits / t_student).softmax(dim=1)

    def forward(
        self, logits: Tensor, labels: Tensor, signal: TeacherSignal | None, epoch: int
    ) -> dict[str, Tensor]:
        signal = self._signal(signal)
        terms = self.kd(logits, labels, signal, epoch)
        if self.discriminator is None:
            self._build(logits.shape[1])
        assert self.discriminator is not None
        p_teacher, p_student = self.probabilities(logits, signal.logits)
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        fooled = functional_call(self.discriminator, frozen, (p_student,))
        terms["adv"] = self.adv_weight * F.softplus(-fooled).mean()  # -log σ(D(p_s))
        self._pending = (p_teacher.detach(), p_student.detach())
        return terms

    def discriminator_loss(self, p_teacher: Tensor, p_student: Tensor) -> Tensor:
        """mean(-log σ(D(p_t))) + mean(-log(1 - σ(D(p_s))))."""
        assert self.discriminator is not None
        real, fake = self.discriminator(p_teacher), self.discriminator(p_student)
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def after_step(self, outputs: Tensor, labels: Tensor, epoch: int) -> None:
        """One Adam step of D on the probabilities saved by the last forward pass."""
        if self._pending is None or self.disc_optimizer is None:
            return
        p_teacher, p_student = self._pending
        self._pending = None
        with torch.enable_grad():
            loss = self.discriminator_loss(p_teacher, p_student)
            self.disc_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(self.discriminator.parameters(), len(labels))  # under torchrun
            self.disc_optimizer.step()
        self._last_disc_loss = loss.detach()  # read on demand: no host sync per step

    @property
    def last_disc_loss(self) -> float | None:
        """D's loss at the last step."""
        return None if self._last_disc_loss is None else float(self._last_disc_loss)

    @last_disc_loss.setter
    def last_disc_loss(self, value: float | None) -> None:
        self._last_disc_loss = None if value is None else torch.tensor(value)

    # ----------------------------------------------------------------- checkpointing
    def extra_state(self) -> dict[str, Any]:
        if self.discriminator is None or self.disc_optimizer is None:
            return {}
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.disc_optimizer.state_dict(),
            "num_classes": self.discriminator.net[0].in_features,
            "last_disc_loss": self.last_disc_loss,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.discriminator is None:
            self._build(int(state["num_classes"]))
        assert self.discriminator is not None and self.disc_optimizer is not None
        self.discriminator.load_state_dict(state["discriminator"])
        self.disc_optimizer.load_state_dict(state["optimizer"])
        self.last_disc_loss = state.get("last_disc_loss")
