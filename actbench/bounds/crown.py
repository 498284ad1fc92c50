"""CROWN backward linear bounds, with IBP intermediate bounds (CROWN-IBP) or its own (CROWN).

A lower bound of ``A · h_out`` is pulled back layer by layer as ``A' · h_in + const``:

- affine layer ``W h + b``: ``const += A b``, ``A <- A W`` (``conv_transpose2d`` for convolutions);
- ReLU with pre-activation bounds ``[l, u]``: stable neurons are exact (slope 1 or 0); an unstable one
  has the upper line through ``(l, 0)`` and ``(u, u)`` and the lower line ``alpha h`` with
  ``alpha = 1 if u > -l else 0``; rows use the lower line where ``A >= 0`` and the upper line where
  ``A < 0`` (whose intercept, times ``A``, goes into ``const``);
- at the input box: ``lb = A⁺ xl + A⁻ xu + const``.

Every step is a sound relaxation, so the result is a true lower bound.
"""

from __future__ import annotations

import math

import torch

from actbench.bounds import ibp, maxpool
from actbench.bounds.maxpool import NONLINEAR, MaxPoolLayer
from actbench.bounds.network import Layer, Shape
from actbench.errors import ResourceLimit

Interval = tuple[torch.Tensor, torch.Tensor]
Relaxation = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
CHUNK_MEMORY = 256 * 2**20


def relaxation(lower: torch.Tensor, upper: torch.Tensor) -> Relaxation:
    """``(lower slope, upper slope, upper intercept)`` of the ReLU relaxation on ``[lower, upper]``."""
    active, unstable = lower >= 0, (lower < 0) & (upper > 0)
    one = torch.ones_like(lower)
    denom = torch.where(unstable, upper - lower, one)
    up_slope = torch.where(unstable, upper / denom, active.to(lower.dtype))
    up_icpt = torch.where(unstable, -lower * upper / denom, torch.zeros_like(lower))
    lo_slope = torch.where(unstable, (upper > -lower).to(lower.dtype), active.to(lower.dtype))
    return lo_slope, up_slope, up_icpt


def relaxations_of(layers: list[Layer], bounds: list[Interval]) -> list:
    """The relaxation of each non-linear layer (ReLU or MaxPool, in order) on its input bounds."""
    kinds = [layer for layer in layers if isinstance(layer, NONLINEAR)]
    return [maxpool.relaxation(layer, *b) if isinstance(layer, MaxPoolLayer) else relaxation(*b)
            for layer, b in zip(kinds, bounds, strict=False)]  # fmt: skip


def _rowdot(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum(A[b, s] * v[b])`` for A ``[B, S, ...]`` and v ``[B, ...]``: shape ``[B, S]``."""
    return torch.bmm(A.flatten(2), v.flatten(1).unsqueeze(-1)).squeeze(-1)


def backward_lower(layers: list[Layer], A: torch.Tensor, relu_bounds: list[Interval], xl: torch.Tensor,
                   xu: torch.Tensor, stop: int | None = None,
                   relaxations: list[Relaxation] | None = None) -> torch.Tensor:
    """Lower bound of ``A · (output of layers[:stop])`` over the input box ``[xl, xu]``.

    ``A`` has shape ``[B, S, *out_shape]``; ``relu_bounds`` holds at least the bounds of every ReLU in
    ``layers[:stop]``. Returns ``[B, S]``.
    """
    stop = len(layers) if stop is None else stop
    k = sum(isinstance(layer, NONLINEAR) for layer in layers[:stop])
    if relaxations is None:
        relaxations = relaxations_of(layers[:stop], relu_bounds[:k])
    const = A.new_zeros(A.shape[:2])
    for layer in reversed(layers[:stop]):
        if isinstance(layer, MaxPoolLayer):
            k -= 1
            A, term = maxpool.backward(layer, A, relaxations[k])
            const = const + term
        elif isinstance(layer, NONLINEAR):
            k -= 1
            lo_slope, up_slope, up_icpt = relaxations[k]
            negative = A.clamp(max=0)
            const = const + _rowdot(negative, up_icpt)
            A = A * torch.where(A >= 0, lo_slope.unsqueeze(1), up_slope.unsqueeze(1))
        else:
            term = layer.bias_term(A)
            if term is not None:
                const = const + term
            A = layer.backward(A)
    centre, radius = (xu + xl) * 0.5, (xu - xl) * 0.5
    return _rowdot(A, centre) - _rowdot(A.abs(), radius) + const


def _exact_by_ibp(layers: list[Layer], stop: int) -> bool:
    """IBP is exact for a pre-activation reached through at most one non-diagonal affine layer."""
    return sum(not layer.is_diagonal for layer in layers[:stop]) <= 1


def _check_memory(layers: list[Layer], shapes: list[Shape], relu_bounds: list[Interval], spec_rows: int,
                  batch: int, itemsize: int, max_memory: float) -> None:
    """Refuse (ResourceLimit) when the largest A matrix of full CROWN would exceed ``max_memory`` bytes."""
    positions = [i for i, layer in enumerate(layers) if isinstance(layer, NONLINEAR)]
    worst, where = batch * spec_rows * max(math.prod(s) for s in shapes) * itemsize, "the output"
    for (lower, upper), pos in zip(relu_bounds, positions, strict=True):
        if _exact_by_ibp(layers, pos):
            continue
        rows = 2 * int(((lower < 0) & (upper > 0)).flatten(1).sum(1).max())
        need = batch * rows * max(math.prod(s) for s in shapes[: pos + 1]) * itemsize
        if need > worst:
            worst, where = need, layers[pos].name
    if worst > max_memory:
        raise ResourceLimit(
            f"full CROWN would need A matrices of {worst / 2**30:.2f} GiB (at {where}), above the limit of "
            f"{max_memory / 2**30:.2f} GiB; use method='crown-ibp', a smaller batch, or raise crown_max_memory"
        )


def _refine(layers: list[Layer], pos: int, bounds: Interval, relu_bounds: list[Interval], xl: torch.Tensor,
            xu: torch.Tensor, shapes: list[Shape]) -> Interval:
    """CROWN bounds of the unstable neurons of the ReLU at ``layers[pos]``, intersected with ``bounds``."""
    lower, upper = bounds[0].flatten(1), bounds[1].flatten(1)
    batch, n = lower.shape
    unstable = (lower < 0) & (upper > 0)
    m = int(unstable.sum(1).max())
    if m == 0:
        return bounds
    # per sample, the unstable neurons first (the rest is padding, whose bounds are sound as well)
    order = torch.argsort(unstable.to(torch.int8), dim=1, descending=True, stable=True)[:, :m]
    width = max(math.prod(s) for s in shapes[: pos + 1])
    rows = max(1, CHUNK_MEMORY // (2 * batch * width * lower.element_size()))
    relaxations = relaxations_of(layers, relu_bounds)
    new_lower, new_upper = lower, upper
    for start in range(0, m, rows):
        idx = order[:, start:start + rows]
        eye = torch.zeros(batch, idx.shape[1], n, dtype=lower.dtype, device=lower.device)
        eye.scatter_(2, idx.unsqueeze(-1), 1.0)
        A = torch.cat([eye, -eye], dim=1).view(batch, 2 * idx.shape[1], *shapes[pos])
        lb = backward_lower(layers, A, relu_bounds, xl, xu, stop=pos, relaxations=relaxations)
        c = idx.shape[1]
        new_lower = new_lower.scatter(1, idx, torch.maximum(new_lower.gather(1, idx), lb[:, :c]))
        new_upper = new_upper.scatter(1, idx, torch.minimum(new_upper.gather(1, idx), -lb[:, c:]))
    return new_lower.view_as(bounds[0]), new_upper.view_as(bounds[1])


def crown_lower(layers: list[Layer], spec: torch.Tensor, ibp_bounds: list[Interval], xl: torch.Tensor,
                xu: torch.Tensor, shapes: list[Shape],
                max_memory: float) -> tuple[torch.Tensor, list[Interval]]:
    """Full CROWN: every ReLU's bounds by its own backward pass (intersected with IBP), then the margins.

    IBP bounds are re-propagated from each refined layer, so later layers start from the tighter box.
    Returns the margin lower bounds and the final ReLU bounds.
    """
    _check_memory(layers, shapes, ibp_bounds, spec.shape[1], xl.shape[0], xl.element_size(), max_memory)
    positions = [i for i, layer in enumerate(layers) if isinstance(layer, NONLINEAR)]
    refined: list[Interval] = []
    for j, pos in enumerate(positions):
        bounds = ibp_bounds[j]
        if j > 0:  # IBP from the previous refined layer, intersected with the first IBP pass
            prev = layers[positions[j - 1]]
            c, r = maxpool.post(prev, *refined[-1]) if isinstance(prev, MaxPoolLayer) else ibp.post_relu(*refined[-1])
            c, r = ibp.propagate(layers, c, r, positions[j - 1] + 1, pos)
            bounds = (torch.maximum(bounds[0], c - r), torch.minimum(bounds[1], c + r))
        if not _exact_by_ibp(layers, pos):
            bounds = _refine(layers, pos, bounds, refined, xl, xu, shapes)
        refined.append(bounds)
    return backward_lower(layers, spec, refined, xl, xu), refined
