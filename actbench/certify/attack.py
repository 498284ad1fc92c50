"""PGD attacks: a reusable batched ``pgd`` for training methods, and empirical radii for certification.

An attack that finds a point with margin <= 0 inside the clipped box of radius eps proves the sample
is *not* robust at eps, so the smallest attacked eps is an upper bound on the true robust radius and
on every sound certified radius (the engine's consistency check).

Representation of the empirical (attack) radius: a float per sample; ``0`` for misclassified samples,
``inf`` when no attack succeeded within ``eps_max`` (the radius is then only known to exceed the
attacked range). A finite value is always an eps at which an adversarial example was actually found.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from actbench.errors import InvalidInput

EpsOrBox = float | torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@contextlib.contextmanager
def eval_mode(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Temporarily put every submodule in eval mode (BatchNorm uses, and keeps, its running stats)."""
    if not enabled:
        yield model
        return
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def box_of(x: torch.Tensor, eps_or_box: EpsOrBox, lo: float = 0.0, hi: float = 1.0
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(lower, upper, half_width)`` of the attack region: the clipped eps-box or an explicit box.

    ``half_width`` (broadcastable to ``x``) scales the step size: eps per sample for an eps-box, the
    box's per-element half width for an explicit box.
    """
    if isinstance(eps_or_box, tuple):
        lower, upper = eps_or_box
        if lower.shape != x.shape or upper.shape != x.shape:
            raise InvalidInput(f"pgd: box bounds must have the shape of x {tuple(x.shape)}")
        lower, upper = lower.to(x.dtype).detach(), upper.to(x.dtype).detach()
        return lower, upper, (upper - lower) * 0.5
    if isinstance(eps_or_box, torch.Tensor):
        eps = eps_or_box.detach().to(device=x.device, dtype=x.dtype)
        if eps.dim() == 0:
            eps = eps.expand(x.shape[0])
        if eps.shape != (x.shape[0],):
            raise InvalidInput(f"pgd: eps must be a float or a [{x.shape[0]}] tensor, got {tuple(eps.shape)}")
    else:
        eps = torch.full((x.shape[0],), float(eps_or_box), device=x.device, dtype=x.dtype)
    eps = eps.view(-1, *([1] * (x.dim() - 1)))
    lower = (x - eps).clamp(min=lo, max=hi)
    upper = (x + eps).clamp(min=lo, max=hi)
    return lower, upper, eps


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Smallest margin ``min_{t != y} (z_y - z_t)`` per sample (<= 0: misclassified or tied)."""
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    return z_y - logits.scatter(1, y.view(-1, 1), float("-inf")).max(dim=1).values


def _objective(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample value the attack maximises."""
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    return -margins(logits, y)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_or_box: EpsOrBox,
    loss: str = "ce",
    steps: int = 10,
    step_size: float = 0.25,
    restarts: int = 1,
    random_start: bool = True,
    lo: float = 0.0,
    hi: float = 1.0,
    generator: torch.Generator | None = None,
    eval_bn: bool = True,
    stop_on_success: bool = False,
) -> torch.Tensor:
    """Projected sign-gradient ascent on ``loss`` ("ce" or "margin") inside the box; returns ``x_adv``.

    The region is the clipped eps-box (``eps_or_box`` a float or a per-sample ``[B]`` tensor) or an
    explicit ``(lower, upper)`` box. Steps are ``step_size`` times eps (or the box half width). With
    several restarts (random starts) the worst point per sample is kept, over all iterates.
    ``eval_bn`` runs the model in eval mode so BatchNorm running statistics are not touched.
    ``stop_on_success`` freezes samples once their margin is <= 0 (attacks, not training).
    The result is detached; model parameters receive no gradients.
    """
    if loss not in ("ce", "margin"):
        raise InvalidInput(f"pgd: loss must be 'ce' or 'margin', got {loss!r}")
    if steps < 0 or restarts < 1:
        raise InvalidInput(f"pgd: need steps >= 0 and restarts >= 1, got {steps}, {restarts}")
    x = x.detach()
    lower, upper, half = box_of(x, eps_or_box, lo, hi)
    alpha = step_size * half
    best_x = x.clone()
    best_val = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
    broken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    with eval_mode(model, eval_bn), torch.enable_grad():
        for restart in range(restarts):
            if restart == 0 and not random_start:
                cur = x.clone()
            else:
                noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
                cur = lower + (upper - lower) * noise
            todo = torch.arange(x.shape[0], device=x.device)
            if stop_on_success:
                todo = todo[~broken]
            for step in range(steps + 1):
                if todo.numel() == 0:
                    break
                xi = cur[todo].requires_grad_(True)
                logits = model(xi)
                val = _objective(logits, y[todo], loss)
                better = val.detach() > best_val[todo]
                best_val[todo] = torch.where(better, val.detach(), best_val[todo])
                best_x[todo[better]] = xi.detach()[better]
                if stop_on_success:
                    hit = margins(logits.detach(), y[todo]) <= 0
                    broken[todo[hit]] = True
                if step == steps:
                    break
                (grad,) = torch.autograd.grad(val.sum(), xi)
                nxt = xi.detach() + alpha[todo] * grad.sign()
                cur[todo] = torch.maximum(torch.minimum(nxt, upper[todo]), lower[todo])
                if stop_on_success:
                    keep = ~broken[todo]
                    todo = todo[keep]
    return best_x.detach()


def pgd_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, steps: int = 20,
    restarts: int = 2, step_size_ratio: float = 0.1, generator: torch.Generator | None = None,
    lo: float = 0.0, hi: float = 1.0,
) -> torch.Tensor:
    """Margin PGD with random restarts in the clipped eps-box, model in eval mode; returns ``x_adv``."""
    return pgd(model, x, y, eps, loss="margin", steps=steps, step_size=step_size_ratio, restarts=restarts,
               random_start=True, lo=lo, hi=hi, generator=generator, eval_bn=True, stop_on_success=True)


def attack_success(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, steps: int = 20,
    restarts: int = 2, step_size_ratio: float = 0.1, generator: torch.Generator | None = None,
    lo: float = 0.0, hi: float = 1.0, attack_model: nn.Module | None = None,
) -> torch.Tensor:
    """Per-sample bool: an input with margin <= 0 was found in the clipped eps-box (clean x included).

    ``attack_model`` (e.g. a float32 copy of a float64 ``model``) runs the PGD iterations faster; its
    candidate points are clamped into ``model``'s box in ``x.dtype`` and the verdict always comes
    from ``model`` itself, so a reported success is a real adversarial example for ``model``.
    """
    with torch.no_grad(), eval_mode(model):
        clean_bad = margins(model(x), y) <= 0
    runner = model if attack_model is None else attack_model
    dtype = next((p.dtype for p in runner.parameters()), x.dtype)
    eps_a = eps.to(dtype) if isinstance(eps, torch.Tensor) else eps
    x_adv = pgd_attack(runner, x.to(dtype), y, eps_a, steps, restarts, step_size_ratio, generator, lo, hi)
    lower, upper, _ = box_of(x, eps, lo, hi)
    x_adv = torch.maximum(torch.minimum(x_adv.to(x.dtype), upper), lower)
    with torch.no_grad(), eval_mode(model):
        return clean_bad | (margins(model(x_adv), y) <= 0)


@dataclass
class AttackRadii:
    """Empirical radii: ``radius`` [B] float64 (0 misclassified, inf never attacked within eps_max)."""

    radius: torch.Tensor
    attacks: torch.Tensor  # [B] int64, PGD runs spent per sample


def attack_radii(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_max: float, steps: int = 20, restarts: int = 2,
    step_size_ratio: float = 0.1, bisect_steps: int = 8, start: torch.Tensor | None = None,
    generator: torch.Generator | None = None, lo: float = 0.0, hi: float = 1.0,
    attack_model: nn.Module | None = None,
) -> AttackRadii:
    """Smallest attacked eps per sample by bisection on attack success over ``[start, eps_max]``.

    ``start`` (e.g. certified radii) is attacked first when positive: success there contradicts the
    certificate, and the returned radius equals ``start`` so the caller's consistency check fires.
    Otherwise bisection runs between ``start`` (not attacked) and the smallest attacked eps.
    """
    n = x.shape[0]
    with torch.no_grad(), eval_mode(model):
        wrong = margins(model(x), y) <= 0
    radius = torch.full((n,), math.inf, dtype=torch.float64, device=x.device)
    radius[wrong] = 0.0
    attacks = torch.zeros(n, dtype=torch.int64, device=x.device)
    if eps_max <= 0:
        return AttackRadii(radius, attacks)
    low = torch.zeros(n, dtype=torch.float64, device=x.device)
    if start is not None:
        low = start.detach().to(device=x.device, dtype=torch.float64).clamp(min=0.0, max=eps_max)

    def run(mask: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        idx = mask.nonzero().squeeze(1)
        attacks[idx] += 1
        hit = attack_success(model, x[idx], y[idx], eps[idx].to(x.dtype), steps, restarts, step_size_ratio,
                             generator, lo, hi, attack_model)
        out = torch.zeros(n, dtype=torch.bool, device=x.device)
        out[idx] = hit
        return out

    # The certificate's own radius first (a hit there is a soundness violation), then eps_max.
    check = ~wrong & (low > 0)
    if bool(check.any()):
        hit = run(check, low)
        radius[hit] = low[hit]
    top = ~wrong & torch.isinf(radius)
    cap = torch.full((n,), float(eps_max), dtype=torch.float64, device=x.device).to(x.dtype).double()
    if bool(top.any()):
        hit = run(top, cap)
        radius[hit] = cap[hit]
    active = torch.isfinite(radius) & (radius > low)
    for _ in range(bisect_steps):
        mid = ((low + radius) * 0.5).to(x.dtype).double()
        active &= (mid > low) & (mid < radius)
        if not bool(active.any()):
            break
        hit = run(active, mid)
        radius = torch.where(active & hit, mid, radius)
        low = torch.where(active & ~hit, mid, low)
    return AttackRadii(radius, attacks)
