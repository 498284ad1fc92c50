"""IBP training with the Shi et al. 2021 recipe (Gowal et al. 2018; Shi et al. NeurIPS 2021).

``L = (1−κ)·CE_rob(lb_IBP(B(x, eps_t))) + κ·CE(z(x), y)`` (clean CE only while eps_t = 0), plus the
Shi regularisers weighted by ``1 − eps_t/eps`` in the regulariser phase. κ mixing is the same as
ACERT's so κ sweeps of the two methods compare (κ = 0 is fast-IBP itself, whose loss has no clean term
once eps > 0). During the clean warm-up the IBP pass still runs, on a box of radius 1e-6
(``robust.MIN_REG_EPS``), so that the regularisers have intervals to act on, as in fast-IBP.

Reference: shizhouxing/Fast-Certified-Robust-Training, ``train.py`` (loss = regulariser + robust CE,
clean CE while eps = 0), ``certified.py:cert`` (``eps = max(eps, min_eps_reg)`` in the warm-up),
``regularization.py:compute_reg`` (weight ``reg_lambda·(1 − eps/eps_max)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from actbench.bounds import BoundResult
from actbench.objectives import passes
from actbench.objectives.base import Objective, Param, Stats, StepContext, register_objective, unit_interval
from actbench.objectives.losses import robust_ce
from actbench.objectives.robust import accuracy, combine, regulariser, regulariser_eps

IBP_FAMILY_DEFAULTS = {
    "ibp_init": Param(bool, True, "redraw weights with the IBP initialisation of Shi et al. 2021"),
    "shi_reg": Param(bool, True, "add the Shi et al. tightness and ReLU-balance regularisers in the ramp"),
}


@register_objective("ibp")
class IBPTraining(Objective):
    """Fixed-eps IBP robust cross-entropy at the scheduled eps."""

    KEY_PARAM = "kappa"
    PARAMS = {**IBP_FAMILY_DEFAULTS, "kappa": unit_interval("weight of the clean CE: (1-κ)·L_rob + κ·L_std", 0.0)}
    COUNTS_BOUND_PASSES = True  # report one bound pass per step in the history

    def bound_method(self, ctx: StepContext) -> str:
        """The verifier of this step's bound pass."""
        return "ibp"

    def training_lower(self, result: BoundResult, ctx: StepContext, stats: Stats) -> torch.Tensor:
        """The margin lower bound the robust loss is computed on (may add per-method stats)."""
        return result.lower

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, Stats]:
        logits, bn_stats = passes.clean_forward(model, x, ctx)
        clean = F.cross_entropy(logits, y)
        stats: Stats = {"clean_loss": float(clean.detach()), "train_acc": accuracy(logits, y)}
        robust = reg = None
        if ctx.eps_t > 0 or (self.shi_reg and ctx.reg_weight > 0):
            eps = regulariser_eps(ctx.eps_t)  # eps_t, or 1e-6 in the clean warm-up (regulariser only)
            result = passes.margin_bounds(model, x, y, eps, ctx, self.bound_method(ctx), bn_stats)
            reg, reg_stats = regulariser(result, ctx, self.shi_reg)
            stats.update(reg_stats)
            if ctx.eps_t > 0:
                lower = self.training_lower(result, ctx, stats)
                robust = robust_ce(lower)
                stats["robust_loss"] = float(robust.detach())
                stats["train_cert_acc"] = float((lower > 0).all(1).float().mean())
            if self.COUNTS_BOUND_PASSES:
                stats["bound_passes"] = 1.0
        return combine(clean, robust, self.params["kappa"], ctx, reg), stats
