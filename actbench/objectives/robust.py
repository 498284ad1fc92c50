"""The pieces every certified-training objective assembles its loss from (written once)."""

from __future__ import annotations

import torch

from actbench.objectives.base import Stats, StepContext
from actbench.objectives.losses import mix, shi_regulariser


def regulariser(result: object, ctx: StepContext, enabled: bool) -> tuple[torch.Tensor | None, Stats]:
    """The weighted Shi regulariser ``reg_weight·(w_t·L_tight + w_r·L_relu)`` from a bound pass's
    ``relu_bounds`` and ``input_box``; None outside the regulariser phase or when disabled."""
    if not enabled or ctx.reg_weight <= 0:
        return None, {}
    total, tight, balance = shi_regulariser(result.relu_bounds, result.input_box, ctx.w_tight, ctx.w_relu)
    reg = ctx.reg_weight * total
    return reg, {"reg_loss": float(reg.detach()), "reg_tightness": float(tight.detach()),
                 "reg_relu": float(balance.detach())}  # fmt: skip


def combine(
    clean: torch.Tensor, robust: torch.Tensor | None, kappa: float, ctx: StepContext, reg: torch.Tensor | None
) -> torch.Tensor:
    """``reg + [(1−κ)·L_rob + κ·L_std if eps_t > 0 else L_std]`` (ACERT.md §2.1 step 7; all IBP-family)."""
    loss = mix(robust, clean, kappa) if (ctx.eps_t > 0 and robust is not None) else clean
    return loss + reg if reg is not None else loss


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of the batch classified correctly."""
    return float((logits.detach().argmax(1) == y).float().mean())
