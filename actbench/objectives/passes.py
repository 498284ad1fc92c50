"""Counted passes: every clean forward, bound pass, radius search and attack an objective makes goes
through these helpers, which add its cost (``cost.py``) to the step's propagation counter.

BatchNorm convention (DESIGN §4): in train mode the clean pass returns the batch statistics and every
bound pass of the same step uses them; attacks run with the model in eval mode (running statistics,
never updated by the attack).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from actbench.objectives.base import StepContext
from actbench.objectives.cost import FORWARD, IBP, bound_cost


def clean_forward(model: nn.Module, x: torch.Tensor, ctx: StepContext, grad: bool = True) -> tuple[torch.Tensor, Any]:
    """Logits and the clean batch's BN statistics (train mode); costs one forward (+ backward)."""
    from actbench.bounds import clean_forward as _clean_forward

    ctx.counter.add("forward", x.shape[0], FORWARD, grad)
    return _clean_forward(model, x)


def plain_forward(model: nn.Module, x: torch.Tensor, ctx: StepContext, grad: bool = True) -> torch.Tensor:
    """``model(x)``, counted; used where no BN statistics are needed (standard training, PGD-AT)."""
    ctx.counter.add("forward", x.shape[0], FORWARD, grad)
    return model(x)


def margin_bounds(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, ctx: StepContext,
    method: str = "ibp", bn_stats: Any = None, grad: bool = True,
) -> Any:
    """Margin lower bounds over ``B(x, eps)`` (a ``BoundResult``), counted."""
    from actbench.bounds import margin_bounds as _margin_bounds

    ctx.counter.add(method, x.shape[0], bound_cost(method, ctx.num_classes), grad)
    return _margin_bounds(model, x, y, eps, method=method, lo=ctx.lo, hi=ctx.hi, bn_stats=bn_stats)


def box_margin_bounds(
    model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor, ctx: StepContext,
    method: str = "ibp", bn_stats: Any = None, grad: bool = True,
) -> Any:
    """Margin lower bounds over an explicit box ``[lower, upper]`` (SABR), counted."""
    from actbench.bounds import box_margin_bounds as _box_margin_bounds

    ctx.counter.add(method, lower.shape[0], bound_cost(method, ctx.num_classes), grad)
    return _box_margin_bounds(model, lower, upper, y, method=method, bn_stats=bn_stats)


def certified_radii(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_max: float, ctx: StepContext, *,
    logits: torch.Tensor, bn_stats: Any, rtol: float, max_passes: int, atol: float = 1e-9,
    init: torch.Tensor | None = None, predict: bool = False, curvature: torch.Tensor | None = None,
) -> Any:
    """IBP certified radii capped at ``eps_max`` (no gradient); counts the passes the search reports."""
    from actbench.certify.radius import certified_radii as _certified_radii

    result = _certified_radii(
        model, x, y, eps_max, method="ibp", rtol=rtol, max_passes=max_passes, logits=logits.detach(),
        bn_stats=detach_stats(bn_stats), init=init, lo=ctx.lo, hi=ctx.hi, atol=atol, predict=predict,
        curvature=curvature,
    )  # fmt: skip
    ctx.counter.add("ibp", int(result.passes.sum()), IBP, grad=False)
    return result


def detach_stats(bn_stats: Any) -> Any:
    """BN statistics without their autograd graph (for no-grad passes)."""
    if bn_stats is None:
        return None
    return {m: (mean.detach(), var.detach()) for m, (mean, var) in bn_stats.items()}


def pgd_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, ctx: StepContext, *,
    steps: int, step_size: float, restarts: int = 1, random_start: bool = True,
) -> torch.Tensor:
    """PGD on CE inside ``B(x, eps)`` (``certify.attack.pgd``) with BatchNorm in eval mode, so the attack
    never moves the running statistics; ``step_size`` is relative to eps. Counted as ``steps + 1``
    forwards and ``steps`` backwards per restart (the attack also scores its last iterate)."""
    from actbench.certify.attack import pgd

    x_adv = pgd(model, x, y, eps, loss="ce", steps=steps, step_size=step_size, restarts=restarts,
                random_start=random_start, lo=ctx.lo, hi=ctx.hi, eval_bn=True)  # fmt: skip
    ctx.counter.add("attack", x.shape[0] * restarts, FORWARD * (2 * steps + 1))
    return x_adv.detach()


def attack_params(params: dict[str, Any]) -> dict[str, Any]:
    """The PGD settings (``steps``, ``step_size``, ``restarts``) of an objective's parameters."""
    return {key: params[key] for key in ("steps", "step_size", "restarts")}
