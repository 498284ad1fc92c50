"""MTL-IBP (De Palma et al., ICLR 2024, "Expressive losses for verified robustness via convex
combinations"): ``L = α·CE_rob(lb_IBP(B(x, eps_t))) + (1 − α)·CE(z(x_adv), y)``.

``x_adv`` comes from a short PGD (default: one step of the full radius from a random start) on CE
over the clipped box of radius ``min(s·eps_t, eps)`` with BatchNorm in eval mode. The adversarial
logits are evaluated with the clean batch's BatchNorm statistics (an IBP pass on the zero-width box
``[x_adv, x_adv]``, which is exactly the forward pass), so one set of statistics serves the step.
Clean CE while eps_t = 0. IBP init and the Shi regulariser as for the IBP family.
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
from actbench.objectives.robust import accuracy, regulariser


@register_objective("mtl_ibp")
class MTLIBP(Objective):
    """Convex combination of the IBP robust loss and an adversarial loss."""

    KEY_PARAM = "alpha"
    PARAMS = {
        **IBP_FAMILY_DEFAULTS,
        "alpha": unit_interval("weight α of the IBP robust loss", 0.5),
        "attack_scale": Param(float, 1.0, "attack radius s·eps_t (clipped to eps)", lambda v: v >= 1.0, ">= 1"),
        "steps": positive(int, "PGD steps of the attack", 1),
        "step_size": positive(float, "PGD step size relative to the attack radius", 1.0),
        "restarts": positive(int, "PGD restarts", 1),
    }

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, Stats]:
        logits, bn_stats = passes.clean_forward(model, x, ctx)
        clean = F.cross_entropy(logits, y)
        stats: Stats = {"clean_loss": float(clean.detach()), "train_acc": accuracy(logits, y)}
        reg = None
        if ctx.eps_t > 0 or (self.shi_reg and ctx.reg_weight > 0):
            result = passes.margin_bounds(model, x, y, ctx.eps_t, ctx, "ibp", bn_stats)
            reg, reg_stats = regulariser(result, ctx, self.shi_reg)
            stats.update(reg_stats)
        if ctx.eps_t <= 0:
            return (clean + reg if reg is not None else clean), stats
        robust = robust_ce(result.lower)
        radius = min(self.params["attack_scale"] * ctx.eps_t, ctx.eps) if ctx.eps > 0 else ctx.eps_t
        x_adv = passes.pgd_attack(model, x, y, radius, ctx, **passes.attack_params(self.params))
        adv_margins = passes.box_margin_bounds(model, x_adv, x_adv, y, ctx, "ibp", bn_stats).lower
        adversarial = robust_ce(adv_margins)  # = CE(z(x_adv), y) with the clean batch statistics
        alpha = self.params["alpha"]
        loss = alpha * robust + (1 - alpha) * adversarial
        stats.update({"robust_loss": float(robust.detach()), "adv_loss": float(adversarial.detach()),
                      "adv_acc": float((adv_margins.detach() > 0).all(1).float().mean())})  # fmt: skip
        return (loss + reg if reg is not None else loss), stats
