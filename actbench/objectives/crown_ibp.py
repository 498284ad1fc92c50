"""CROWN-IBP (Zhang et al., ICLR 2020): IBP intermediate bounds, a CROWN backward pass for the margins.

The training bound is ``β·lb_CROWN-IBP + (1−β)·lb_IBP`` with ``β = 1 − eps_t/eps``: β decays linearly
from 1 to 0 as eps_t grows to eps, so training ends as plain IBP (and stops paying for the backward
pass once β = 0). κ mixing and the Shi regulariser as in ``ibp``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from actbench.objectives import passes
from actbench.objectives.base import Objective, Stats, StepContext, register_objective, unit_interval
from actbench.objectives.ibp import IBP_FAMILY_DEFAULTS
from actbench.objectives.losses import robust_ce
from actbench.objectives.robust import accuracy, combine, regulariser


def crown_weight(eps_t: float, eps: float) -> float:
    """β = 1 − eps_t/eps, clipped to [0, 1]."""
    return min(max(1.0 - eps_t / eps, 0.0), 1.0) if eps > 0 else 0.0


@register_objective("crown_ibp")
class CrownIBP(Objective):
    """Robust CE on the β-mixed CROWN-IBP / IBP margin bound."""

    KEY_PARAM = "kappa"
    PARAMS = {**IBP_FAMILY_DEFAULTS, "kappa": unit_interval("weight of the clean CE: (1-κ)·L_rob + κ·L_std", 0.0)}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, Stats]:
        logits, bn_stats = passes.clean_forward(model, x, ctx)
        clean = F.cross_entropy(logits, y)
        stats: Stats = {"clean_loss": float(clean.detach()), "train_acc": accuracy(logits, y)}
        robust = reg = None
        if ctx.eps_t > 0 or (self.shi_reg and ctx.reg_weight > 0):
            beta = crown_weight(ctx.eps_t, ctx.eps) if ctx.eps_t > 0 else 0.0
            method = "crown-ibp" if beta > 0 else "ibp"
            result = passes.margin_bounds(model, x, y, ctx.eps_t, ctx, method, bn_stats)
            reg, reg_stats = regulariser(result, ctx, self.shi_reg)
            stats.update(reg_stats)
            if ctx.eps_t > 0:
                lower = beta * result.lower + (1 - beta) * result.ibp_lower if beta > 0 else result.lower
                robust = robust_ce(lower)
                stats.update({"robust_loss": float(robust.detach()), "crown_beta": beta,
                              "train_cert_acc": float((lower > 0).all(1).float().mean())})  # fmt: skip
        return combine(clean, robust, self.params["kappa"], ctx, reg), stats
