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

from actbench.bounds import ibp, input_step, maxpool
from actbench.bounds.maxpool import NONLINEAR, MaxPoolLayer
from actbench.bounds.network import ChannelAffineLayer, Layer, ReLULayer, Shape
from actbench.errors import ResourceLimit

Interval = tuple[torch.Tensor, torch.Tensor]
Relaxation = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
CHUNK_MEMORY = 256 * 2**20  # full CROWN: bytes of A rows per refinement chunk
CHUNK_BYTES = 16 * 2**20  # CROWN backward: target bytes of one chunk's largest A matrix (see _chunk_samples)


def relaxation(lower: torch.Tensor, upper: torch.Tensor) -> Relaxation:
    """``(lower slope, upper slope, upper intercept)`` of the ReLU relaxation on ``[lower, upper]``.

    Unstable (``l < 0 < u``): upper line ``u (h - l) / (u - l)``, lower slope 1 if ``u > -l`` else 0;
    active: slopes 1; inactive: slopes 0; stable neurons have intercept 0. With ``l⁻ = min(l, 0)`` and
    ``u⁺ = max(u, 0)``, the upper slope ``u⁺ / (u⁺ - l⁻)`` and intercept ``-l⁻ u⁺ / (u⁺ - l⁻)`` cover
    all three cases, and ``u + l > 0`` is exactly ``u > -l`` (a float sum has the sign of the exact
    one), so no ``torch.where`` is needed (several times slower than arithmetic on CPU). A neuron with
    ``l = u = 0`` gets slopes 0: its input is exactly 0 on the box, so any slope is exact.
    """
    neg, pos = lower.clamp(max=0), upper.clamp(min=0)
    denom = (pos - neg).clamp_(min=torch.finfo(lower.dtype).tiny)
    up_slope = pos / denom
    up_icpt = (neg * pos).div_(denom).neg_()
    lo_slope = (upper.detach() + lower.detach()).gt_(0)  # 1.0 where u > -l, 0.0 elsewhere
    return lo_slope, up_slope, up_icpt


def relaxations_of(layers: list[Layer], bounds: list[Interval]) -> list:
    """The relaxation of each non-linear layer (ReLU or MaxPool, in order) on its input bounds."""
    kinds = [layer for layer in layers if isinstance(layer, NONLINEAR)]
    return [maxpool.relaxation(layer, *b) if isinstance(layer, MaxPoolLayer) else relaxation(*b)
            for layer, b in zip(kinds, bounds, strict=False)]  # fmt: skip


def _channels_last(A: torch.Tensor) -> bool:
    """True for rows ``[B, S, C, H, W]`` stored channels-last (as ``ConvLayer.backward`` returns them)."""
    return A.dim() == 5 and A.shape[2] > 1 and A.stride(2) == 1 and not A.is_contiguous()


def _as_rows_layout(t: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Per-sample tensor ``t`` ``[B, C, H, W]`` in the memory order of the rows ``A`` (fast elementwise ops)."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 and _channels_last(A) else t


def _rowdot(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum(A[b, s] * v[b])`` for A ``[B, S, ...]`` and v ``[B, ...]``: shape ``[B, S]``."""
    if _channels_last(A):  # flatten both in memory order: no copy of A
        A, v = A.permute(0, 1, 3, 4, 2), v.permute(0, 2, 3, 1)
    return torch.bmm(A.flatten(2), v.flatten(1).unsqueeze(-1)).squeeze(-1)


def _batch_slice(t: torch.Tensor, part: slice, batch: int) -> torch.Tensor:
    """``t[part]`` along the batch dimension; tensors broadcast over it (size 1) are kept whole."""
    return t[part] if t.dim() > 0 and t.shape[0] == batch else t


def _chunk_samples(A: torch.Tensor, relaxations: list[Relaxation], xl: torch.Tensor) -> int:
    """Samples per chunk so that the largest A matrix of a chunk stays near ``CHUNK_BYTES``: small
    blocks stay in cache and in the allocator's free lists (a fresh 70 MB tensor costs more in page
    faults than the arithmetic on it)."""
    widths = [A[0, 0].numel(), xl[0].numel(), *(r[0][0].numel() for r in relaxations)]
    per_sample = A.shape[1] * max(widths) * A.element_size()
    return max(1, CHUNK_BYTES // max(per_sample, 1))


def _relu_step(A: torch.Tensor, relax: Relaxation, const: torch.Tensor,
               inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull rows ``A`` back through one ReLU: ``A⁺ lo + A⁻ up`` and ``const += A⁻ · icpt``.

    Formed as ``lo·A + (up − lo)·A⁻``: three passes over A instead of four (with the default slopes,
    where ``lo`` is 0 or 1, each entry equals ``A·lo`` or ``A·up`` up to one rounding).
    """
    lo_slope, up_slope, up_icpt = (_as_rows_layout(t, A) for t in relax)
    gap = up_slope - lo_slope
    negative = A.clamp(max=0)
    const = const + _rowdot(negative, up_icpt)
    if inplace:
        A = A.mul_(lo_slope.unsqueeze(1)).addcmul_(negative, gap.unsqueeze(1))
    else:
        A = torch.addcmul(A * lo_slope.unsqueeze(1), negative, gap.unsqueeze(1))
    return A, const


def _input_box(layers: list[Layer], xl: torch.Tensor, xu: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Centre and radius of the box after the leading per-channel affine layers (Normalize, a folded
    BatchNorm), and the index of the first other layer: the backward pass stops there, since
    ``min`` of ``A · (s x + t)`` over the box is ``A · (s c + t) - |A| · (|s| r)``, exactly."""
    centre, radius = (xu + xl) * 0.5, (xu - xl) * 0.5
    start = 0
    while start < len(layers) and isinstance(layers[start], ChannelAffineLayer):
        centre, radius = layers[start].forward(centre), layers[start].forward_abs(radius)
        start += 1
    return start, centre, radius


def _backward_chunk(layers: list[Layer], A: torch.Tensor, relaxations: list[Relaxation], xl: torch.Tensor,
                    xu: torch.Tensor, inplace: bool) -> torch.Tensor:
    const = A.new_zeros(A.shape[:2])
    k = len(relaxations)
    callers = A.untyped_storage().data_ptr()  # the caller's rows are never modified in place
    start, centre, radius = _input_box(layers, xl, xu)
    if start < len(layers) and input_step.eligible(layers[start]):  # a first convolution on an image
        first = layers[start]
        A, const = _backward_layers(layers[start + 1:], A, relaxations, const, k, callers, inplace)
        term = first.bias_term(A)
        if term is not None:
            const = const + term
        return input_step.lower(first, A, centre, radius) + const
    A, const = _backward_layers(layers[start:], A, relaxations, const, k, callers, inplace)
    return _rowdot(A, centre) - _rowdot(A.abs(), radius) + const


def _backward_layers(layers: list[Layer], A: torch.Tensor, relaxations: list[Relaxation], const: torch.Tensor,
                     k: int, callers: int, inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull rows ``A`` back through ``layers`` (whose non-linear ones use ``relaxations[:k]``)."""
    for layer in reversed(layers):
        if isinstance(layer, MaxPoolLayer):
            k -= 1
            A, term = maxpool.backward(layer, A, relaxations[k])
            const = const + term
        elif isinstance(layer, ReLULayer):
            k -= 1
            owned = A.untyped_storage().data_ptr() != callers
            A, const = _relu_step(A, relaxations[k], const, inplace and owned)
        else:
            term = layer.bias_term(A)
            if term is not None:
                const = const + term
            A = layer.backward(A)
    return A, const


def backward_lower(layers: list[Layer], A: torch.Tensor, relu_bounds: list[Interval], xl: torch.Tensor,
                   xu: torch.Tensor, stop: int | None = None,
                   relaxations: list[Relaxation] | None = None) -> torch.Tensor:
    """Lower bound of ``A · (output of layers[:stop])`` over the input box ``[xl, xu]``.

    ``A`` has shape ``[B, S, *out_shape]``; ``relu_bounds`` holds at least the bounds of every ReLU in
    ``layers[:stop]`` (or pass their ``relaxations``, each tensor ``[B, *shape]`` or broadcast over
    the batch). Returns ``[B, S]``. Large batches run in chunks of samples (same result); without
    autograd the coefficient matrices are updated in place.
    """
    stop = len(layers) if stop is None else stop
    layers = layers[:stop]
    k = sum(isinstance(layer, NONLINEAR) for layer in layers)
    given = relaxations is not None
    parts = relaxations[:k] if given else relu_bounds[:k]
    inplace = not torch.is_grad_enabled() or not (
        A.requires_grad or any(t.requires_grad for r in parts for t in r) or xl.requires_grad or xu.requires_grad
    )
    batch = A.shape[0]
    rows = _chunk_samples(A, parts, xl)
    out = []
    for start in range(0, batch, rows):  # the relaxations are formed per chunk, while its bounds are in cache
        part = slice(start, start + rows)
        sliced = [tuple(_batch_slice(t, part, batch) for t in r) for r in parts]
        relax = sliced if given else relaxations_of(layers, sliced)
        out.append(_backward_chunk(layers, A[part], relax, _batch_slice(xl, part, batch),
                                   _batch_slice(xu, part, batch), inplace))
    return out[0] if len(out) == 1 else torch.cat(out)


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
