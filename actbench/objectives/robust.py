"""The pieces every certified-training objective assembles its loss from (written once)."""

from __future__ import annotations

import torch

from actbench.objectives.base import Stats, StepContext
from actbench.objectives.losses import mix, shi_regulariser

MIN_REG_EPS = 1e-6
"""Box radius of the regulariser's bound pass while the scheduled eps is 0 (the clean warm-up).

At eps 0 every interval has zero width and Shi et al.'s tightness term is exactly 0, so every reference
evaluates the regulariser on a 1e-6 box instead: ``min_eps_reg = 1e-6`` in Shi et al.'s fast-IBP
(shizhouxing/Fast-Certified-Robust-Training, ``argparser.py`` and ``certified.py:cert``), SABR
(eth-sri/SABR, ``src/parse_args.py --min_eps_reg``, ``src/train.py:compute_regularization``) and
MTL-IBP (alessandrodepalma/expressive-losses, ``utils.py:eps_handling``); ACERT clamps its radii to
1e-6 in the same phase (``adaptive.MIN_RADIUS``).
"""


def regulariser_eps(eps_t: float) -> float:
    """The eps of a step's regulariser bound pass: ``eps_t``, or :data:`MIN_REG_EPS` when it is 0."""
    return eps_t if eps_t > 0 else MIN_REG_EPS


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
