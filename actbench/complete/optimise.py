"""Projected Adam that maximises a batch of sound bounds and keeps the best iterate of each.

Every iterate of α-CROWN / β-CROWN is a valid bound (α is clamped to [0, 1] and β to [0, ∞) after each
step), so the result is the best bound *seen* per (domain, row), together with the parameters that gave
it. Adam is written out here (a few lines) so that domains can leave the batch mid-run: every state
tensor is indexed by domain along dim 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from actbench.complete.base import now

Clamp = tuple[float | None, float | None]


@dataclass
class Optimised:
    """``best`` ``[D, S]``: best bound per entry; ``params``: the parameters at that bound (detached)."""

    best: torch.Tensor
    params: list[torch.Tensor]
    iterations: int


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(*mask.shape, *([1] * (like.dim() - mask.dim())))


def maximise(fn: Callable[[list[torch.Tensor]], torch.Tensor], params: list[torch.Tensor], lrs: list[float],
             clamps: list[Clamp], iterations: int, lr_decay: float = 0.98, target: torch.Tensor | None = None,
             deadline: float | None = None, betas: tuple[float, float] = (0.9, 0.999)) -> Optimised:
    """Maximise ``fn(params)`` ``[D, S]`` by projected Adam on each entry's sum; keep the best per entry.

    ``params[i]`` are ``[D, S, ...]`` tensors (copied, never modified in place). ``target`` ``[D, S]``:
    stop once every entry's best exceeds it (e.g. 0 in branch and bound). ``deadline``: a
    ``base.now()`` time after which no further iteration starts.
    """
    cur = [p.detach().clone() for p in params]
    best_p = [p.clone() for p in cur]
    m = [torch.zeros_like(p) for p in cur]
    v = [torch.zeros_like(p) for p in cur]
    best: torch.Tensor | None = None
    done = 0
    b1, b2 = betas
    for it in range(max(1, iterations)):
        leaves = [p.requires_grad_(True) for p in cur]
        with torch.enable_grad():
            value = fn(leaves)
            grads = torch.autograd.grad(value.sum(), leaves, allow_unused=True) if it < iterations - 1 else None
        value = value.detach()
        done += 1
        if best is None:
            best = value.clone()
            best_p = [p.detach().clone() for p in leaves]
        else:
            better = value > best
            best = torch.where(better, value, best)
            best_p = [torch.where(_expand(better, p), p.detach(), bp) for p, bp in zip(leaves, best_p, strict=True)]
        if grads is None:
            break
        if target is not None and bool((best > target).all()):
            break
        if deadline is not None and now() > deadline:
            break
        scale = lr_decay ** it
        new = []
        for i, (p, g) in enumerate(zip(leaves, grads, strict=True)):
            p = p.detach()
            if g is None:
                new.append(p)
                continue
            m[i].mul_(b1).add_(g, alpha=1 - b1)
            v[i].mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat = m[i] / (1 - b1 ** (it + 1))
            v_hat = v[i] / (1 - b2 ** (it + 1))
            p = p + lrs[i] * scale * m_hat / (v_hat.sqrt() + 1e-8)  # ascent
            lo, hi = clamps[i]
            if lo is not None or hi is not None:
                p = p.clamp(min=lo, max=hi)
            new.append(p)
        cur = new
    assert best is not None
    return Optimised(best, best_p, done)
