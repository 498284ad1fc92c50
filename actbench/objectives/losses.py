"""Loss pieces shared by the objectives: robust cross-entropy, κ mixing and the Shi regularisers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

REG_TOLERANCE = 0.5  # τ of Shi et al. 2021 (ACERT.md §2.2)


def robust_ce(lower: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """CE of ``[0, -lb_1, …, -lb_{K-1}]`` against index 0, i.e. ``log(1 + Σ_t exp(-lb_t))``.

    ``lower`` is ``[B, K-1]`` of margin lower bounds ``z_y - z_t``; at eps 0 this equals the clean CE.
    """
    zeros = torch.zeros_like(lower[:, :1])
    per_sample = torch.logsumexp(torch.cat([zeros, -lower], dim=1), dim=1)
    if reduction == "none":
        return per_sample
    return per_sample.mean()


def mix(robust: torch.Tensor, standard: torch.Tensor, kappa: float) -> torch.Tensor:
    """κ mixing: ``(1 - κ)·L_rob + κ·L_std``."""
    return (1.0 - kappa) * robust + kappa * standard


def _half_width(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    return ((upper - lower) / 2).mean()


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """``min(a/b, b/a)`` for ``a, b ≥ 0`` written as ``min/max`` (finite gradients); None when 0/0."""
    top = torch.maximum(a, b)
    if not bool(top > 0):
        return None
    return torch.minimum(a, b) / top


def tightness_loss(
    relu_bounds: Sequence[tuple[torch.Tensor, torch.Tensor]], input_box: tuple[torch.Tensor, torch.Tensor],
    tol: float = REG_TOLERANCE,
) -> torch.Tensor:
    """Shi tightness term: ``mean_l ReLU(τ − Δ_0/Δ_l)/τ`` (non-finite layers skipped, still divided by L).

    ``Δ_0`` is the mean half-width of the input box (normalised space), ``Δ_l`` that of ReLU layer l's
    pre-activation box.
    """
    delta0 = _half_width(*input_box)
    total = delta0.new_zeros(())
    for lower, upper in relu_bounds:
        delta = _half_width(lower, upper)
        if not bool(delta > 0):  # 0/0 or x/0: the layer's ratio is NaN or inf
            continue
        value = F.relu(tol - delta0 / delta) / tol
        if bool(torch.isfinite(value)):
            total = total + value
    return total / max(len(relu_bounds), 1)


def relu_balance_loss(
    relu_bounds: Sequence[tuple[torch.Tensor, torch.Tensor]], tol: float = REG_TOLERANCE
) -> torch.Tensor:
    """Shi ReLU-balance term: ``mean_l [ReLU(τ − ρ_mean) + ReLU(τ − ρ_var)]/τ`` (ACERT.md §2.2).

    With ``c = (u + l)/2``: ``ρ_mean = mean(c·1[l>0]) / −mean(c·1[u<0])`` and
    ``ρ_var = Σ((c − mean c)²·1[l>0]) / Σ((c − mean c)²·1[u<0])``, means over all elements, each
    symmetrised as ``min(ρ, 1/ρ)``. Layers whose value is NaN or inf are skipped; the sum is still
    divided by the number of ReLU layers.
    """
    total: torch.Tensor | None = None
    for lower, upper in relu_bounds:
        centre = (upper + lower) / 2
        active = (lower > 0).to(centre.dtype)
        inactive = (upper < 0).to(centre.dtype)
        rho_mean = _ratio((centre * active).mean(), -(centre * inactive).mean())
        dev = (centre - centre.mean()) ** 2
        rho_var = _ratio((dev * active).sum(), (dev * inactive).sum())
        if rho_mean is None or rho_var is None:
            continue
        value = (F.relu(tol - rho_mean) + F.relu(tol - rho_var)) / tol
        if bool(torch.isfinite(value)):
            total = value if total is None else total + value
    if total is None:
        ref = relu_bounds[0][0] if relu_bounds else torch.zeros(())
        return ref.new_zeros(())
    return total / len(relu_bounds)


def shi_regulariser(
    relu_bounds: Sequence[tuple[torch.Tensor, torch.Tensor]],
    input_box: tuple[torch.Tensor, torch.Tensor],
    w_tight: float,
    w_relu: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(w_t·L_tight + w_r·L_relu, L_tight, L_relu)`` from one robust pass's interval bounds."""
    tight = tightness_loss(relu_bounds, input_box)
    balance = relu_balance_loss(relu_bounds)
    return w_tight * tight + w_relu * balance, tight, balance


def l1_penalty(model: torch.nn.Module) -> torch.Tensor:
    """``Σ|W|`` over all Conv2d and Linear weights (biases excluded)."""
    terms = [m.weight.abs().sum() for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    return torch.stack(terms).sum() if terms else torch.zeros(())
