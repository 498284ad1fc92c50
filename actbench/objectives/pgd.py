"""PGD adversarial training (Madry et al., ICLR 2018): ``CE(z(x_adv), y)``, ``x_adv`` from PGD on CE
inside ``B(x, eps_t)`` (k steps of ``step_size·eps_t``, random start, BatchNorm in eval mode during the
attack). The training forward on ``x_adv`` runs in train mode (its batch statistics), as in Madry et al.
Clean CE while eps_t = 0. No IBP init, no regulariser: an empirical-robustness baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from actbench.objectives import passes
from actbench.objectives.base import Objective, Stats, StepContext, positive, register_objective
from actbench.objectives.robust import accuracy


@register_objective("pgd")
class PGDTraining(Objective):
    """Madry PGD-AT on the cross-entropy."""

    KEY_PARAM = None
    PARAMS = {
        "steps": positive(int, "PGD steps during training", 10),
        "step_size": positive(float, "PGD step size relative to eps_t", 0.25),
        "restarts": positive(int, "PGD restarts (random starts) during training", 1),
    }

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, Stats]:
        if ctx.eps_t <= 0:
            logits = passes.plain_forward(model, x, ctx)
            loss = F.cross_entropy(logits, y)
            return loss, {"clean_loss": float(loss.detach()), "train_acc": accuracy(logits, y)}
        x_adv = passes.pgd_attack(model, x, y, ctx.eps_t, ctx, **passes.attack_params(self.params))
        logits = passes.plain_forward(model, x_adv, ctx)
        loss = F.cross_entropy(logits, y)
        return loss, {"robust_loss": float(loss.detach()), "adv_acc": accuracy(logits, y)}
