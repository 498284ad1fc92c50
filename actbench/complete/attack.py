"""The falsifying attack run before any search: PGD with many restarts and steps on the spec rows.

Restarts are one batch: each attacks one row (round robin over the rows, as in "diversified" PGD) or the
smallest row, from a uniform random start, the box centre or given points (e.g. the vertices that
minimise CROWN's relaxation). Steps are signed gradients scaled by the box half-width with a cosine
decay. Iterates run on a float32 copy of the model for speed; every candidate is clamped into the box
and judged by the float64 model (``base.find_counterexample``), so a hit is a real counterexample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from actbench.complete.base import find_counterexample, now
from actbench.complete.problem import LayerNet, Spec


@dataclass
class FalsifySettings:
    restarts: int = 32
    steps: int = 100
    step_size: float = 0.5  # first step, as a fraction of the box half-width
    seed: int = 0
    check_every: int = 10


def falsify(net: LayerNet, xl: torch.Tensor, xu: torch.Tensor, spec: Spec, settings: FalsifySettings | None = None,
            starts: torch.Tensor | None = None, deadline: float | None = None) -> tuple[torch.Tensor, float] | None:
    """A point of ``[xl, xu]`` (``[1, *in]``) where some row of ``spec`` is <= 0, with its value, or None."""
    settings = settings or FalsifySettings()
    centre = (xl + xu) * 0.5
    found = find_counterexample(net, torch.cat([centre] + ([starts.reshape(-1, *xl.shape[1:])] if starts is not None
                                                          else [])), xl, xu, spec)
    if found is not None or settings.steps < 1 or settings.restarts < 1:
        return found
    model = net.fast_model()
    gen = torch.Generator().manual_seed(settings.seed)
    r = settings.restarts
    lo, hi = xl.float(), xu.float()
    half = (hi - lo) * 0.5
    x = lo + (hi - lo) * torch.rand((r, *xl.shape[1:]), generator=gen)
    x[0] = centre[0].float()
    if starts is not None:
        extra = starts.reshape(-1, *xl.shape[1:]).float()[: max(0, r - 1)]
        x[1:1 + extra.shape[0]] = extra
    C, d = spec.C[0].float(), spec.d[0].float()
    rows = C.shape[0]
    target = torch.arange(r) % (rows + 1) - 1  # -1: the smallest row
    for step in range(settings.steps):
        if deadline is not None and now() > deadline:
            break
        x.requires_grad_(True)
        with torch.enable_grad():
            values = model(x) @ C.T + d
            own = values.gather(1, target.clamp(min=0).view(-1, 1)).squeeze(1)
            objective = torch.where(target < 0, values.min(dim=1).values, own)
            (grad,) = torch.autograd.grad(objective.sum(), x)
        worst = values.detach().min(dim=1).values
        if step % settings.check_every == 0 or step == settings.steps - 1 or bool((worst <= 0).any()):
            hits = x.detach()[worst <= 1e-4 * (1 + worst.abs().max())]
            if hits.numel():
                found = find_counterexample(net, hits, xl, xu, spec)
                if found is not None:
                    return found
        lr = settings.step_size * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * step / settings.steps)))
        x = torch.maximum(torch.minimum(x.detach() - lr * half * grad.sign(), hi), lo)
    return find_counterexample(net, x.detach(), xl, xu, spec)
