"""CROWN-IBP (Zhang et al., ICLR 2020): IBP intermediate bounds, a CROWN backward pass for the margins.

The training bound is ``β·lb_CROWN-IBP + (1−β)·lb_IBP`` with ``β = 1 − eps_t/eps``: β decays linearly
from 1 to 0 as eps_t grows to eps, so training ends as plain IBP (and stops paying for the backward
pass once β = 0). κ mixing and the Shi regulariser as in ``ibp``.
"""

from __future__ import annotations

import torch

from actbench.bounds import BoundResult
from actbench.objectives.base import Stats, StepContext, register_objective
from actbench.objectives.ibp import IBPTraining


def crown_weight(eps_t: float, eps: float) -> float:
    """β = 1 − eps_t/eps, clipped to [0, 1]."""
    return min(max(1.0 - eps_t / eps, 0.0), 1.0) if eps > 0 else 0.0


@register_objective("crown_ibp")
class CrownIBP(IBPTraining):
    """Robust CE on the β-mixed CROWN-IBP / IBP margin bound; otherwise as ``ibp``."""

    COUNTS_BOUND_PASSES = False

    def bound_method(self, ctx: StepContext) -> str:
        return "crown-ibp" if ctx.eps_t > 0 and crown_weight(ctx.eps_t, ctx.eps) > 0 else "ibp"

    def training_lower(self, result: BoundResult, ctx: StepContext, stats: Stats) -> torch.Tensor:
        beta = crown_weight(ctx.eps_t, ctx.eps)
        stats["crown_beta"] = beta
        return beta * result.lower + (1 - beta) * result.ibp_lower if beta > 0 else result.lower
