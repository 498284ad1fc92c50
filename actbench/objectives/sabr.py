"""SABR (Müller et al., ICLR 2023, "Certified training: small boxes are all you need").

PGD inside ``B(x, eps_t)`` gives ``x*``; the small box has radius ``τ = λ·eps_t`` around ``x*``, its
centre clamped per dimension into ``[l + τ, u − τ]`` of the clipped box ``[l, u] = B(x, eps_t)`` (where
that box is narrower than ``2τ``, τ shrinks to half its width), so the small box lies inside the clipped
box; ``L_rob = CE_rob(lb_IBP(small box))`` with the clean batch's BatchNorm statistics.

κ mixing over the ramp: ``κ_t = 1 − (1 − κ)·eps_t/eps`` goes from 1 (clean CE) at the start of the ramp
to ``κ`` (default 0) when eps_t reaches eps. IBP init and the Shi regulariser (on the small box's
bounds) as for the IBP family.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from actbench.objectives import passes
from actbench.objectives.base import (
    Objective,
    Param,
    Stats,
    StepContext,
    positive,
    register_objective,
    unit_interval,
)
from actbench.objectives.ibp import IBP_FAMILY_DEFAULTS
from actbench.objectives.losses import robust_ce
from actbench.objectives.robust import accuracy, combine, regulariser


def small_box(
    x: torch.Tensor, x_star: torch.Tensor, eps: float | torch.Tensor, lam: float, lo: float = 0.0, hi: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SABR box ``[c − τ_i, c + τ_i]`` inside the clipped box ``B(x, eps)`` (see module docstring)."""
    if isinstance(eps, torch.Tensor):
        eps = eps.view(-1, *([1] * (x.dim() - 1)))
    box_lo, box_hi = (x - eps).clamp(min=lo), (x + eps).clamp(max=hi)
    tau = torch.minimum(torch.as_tensor(lam * eps, dtype=x.dtype, device=x.device) + torch.zeros_like(x),
                        (box_hi - box_lo) / 2)  # fmt: skip
    centre = torch.minimum(torch.maximum(x_star, box_lo + tau), box_hi - tau)
    lower = torch.maximum(centre - tau, box_lo)  # exact containment despite rounding
    upper = torch.minimum(centre + tau, box_hi)
    return lower.detach(), upper.detach()


@register_objective("sabr")
class SABR(Objective):
    """IBP on a λ-scaled box around a PGD point."""

    KEY_PARAM = "lam"
    PARAMS = {
        **IBP_FAMILY_DEFAULTS,
        "lam": Param(float, 0.4, "small-box ratio λ: τ = λ·eps_t", lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
        "kappa": unit_interval("clean-CE weight reached at the end of the ramp (1 at its start)", 0.0),
        "steps": positive(int, "PGD steps for the box centre", 8),
        "step_size": positive(float, "PGD step size relative to eps_t", 0.5),
        "restarts": positive(int, "PGD restarts", 1),
    }

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, Stats]:
        logits, bn_stats = passes.clean_forward(model, x, ctx)
        clean = F.cross_entropy(logits, y)
        stats: Stats = {"clean_loss": float(clean.detach()), "train_acc": accuracy(logits, y)}
        robust = reg = None
        lam = self.params["lam"]
        if ctx.eps_t > 0:
            x_star = passes.pgd_attack(model, x, y, ctx.eps_t, ctx, **passes.attack_params(self.params))
            lower, upper = small_box(x, x_star, ctx.eps_t, lam, ctx.lo, ctx.hi)
            result = passes.box_margin_bounds(model, lower, upper, y, ctx, "ibp", bn_stats)
            robust = robust_ce(result.lower)
            stats["robust_loss"] = float(robust.detach())
        elif self.shi_reg and ctx.reg_weight > 0:
            result = passes.margin_bounds(model, x, y, 0.0, ctx, "ibp", bn_stats)
        else:
            result = None
        if result is not None:
            reg, reg_stats = regulariser(result, ctx, self.shi_reg)
            stats.update(reg_stats)
        kappa = self.params["kappa"]
        kappa_t = 1.0 - (1.0 - kappa) * min(ctx.eps_t / ctx.eps, 1.0) if ctx.eps > 0 else kappa
        stats["kappa_t"] = kappa_t
        return combine(clean, robust, kappa_t, ctx, reg), stats
