"""Standard training: ``CE(z(x), y)``; no bounds, no eps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from actbench.objectives.base import Objective, Stats, StepContext, register_objective
from actbench.objectives.passes import plain_forward
from actbench.objectives.robust import accuracy


@register_objective("standard")
class Standard(Objective):
    """Plain cross-entropy on clean inputs."""

    KEY_PARAM = None

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, Stats]:
        logits = plain_forward(model, x, ctx)
        loss = F.cross_entropy(logits, y)
        return loss, {"clean_loss": float(loss.detach()), "train_acc": accuracy(logits, y)}
