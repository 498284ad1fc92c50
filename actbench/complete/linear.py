"""The linear bound pass of α-CROWN and β-CROWN, batched over domains, on ``LayerNet`` layers.

One backward pass bounds ``A · h`` (``h`` the output of ``layers[:stop]``) from below over an input box,
for ``D`` domains at once, each with ``S`` rows: ``A`` is ``[D, S, *shape]``. It uses only the affine
primitives of ``actbench.bounds.network`` (``backward``, ``bias_term``); the ReLU rule lives here:

- pre-activation bounds ``[l, u]`` per domain (a split neuron has ``l = 0`` or ``u = 0`` in its domain,
  so it is stable there and exact);
- unstable neuron: upper line ``u (z - l) / (u - l)``, lower line ``α z`` with ``α ∈ [0, 1]`` per
  (domain, row, neuron): sound for every α, so α can be optimised (α-CROWN). ``alphas=None`` takes
  CROWN's choice ``α = 1 if u > -l else 0``;
- split constraints ``s_j z_j >= 0`` (``s = +1`` active, ``-1`` inactive) enter as ``- β_j s_j z_j``
  with ``β >= 0`` (β-CROWN): the term is <= 0 wherever the constraints hold, so the bound of
  ``m(x) - Σ β s z`` over the box is a lower bound of ``m`` over the domain. It is added to the
  coefficient of ``z_j`` as the pass walks through ReLU ``j``.

At the input, ``lb = A⁺ xl + A⁻ xu + const`` and the minimising vertex is ``xl`` where ``A >= 0``, else
``xu`` (a counterexample candidate). Every quantity is a valid bound for any α in [0, 1] and β >= 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from actbench.bounds.network import ReLULayer
from actbench.complete.problem import LayerNet

Interval = tuple[torch.Tensor, torch.Tensor]
ROW_MEMORY = 256 * 2**20  # bytes of A per chunk of intermediate-bound rows


@dataclass
class Backward:
    """Result of :func:`backward`: ``lower`` ``[D, S]``; optionally the minimising input vertex
    ``x_min`` ``[D, S, *in]`` and the coefficients of every ReLU output, ``relu_A[k]`` ``[D, S, *shape]``."""

    lower: torch.Tensor
    x_min: torch.Tensor | None = None
    relu_A: list[torch.Tensor | None] | None = None


def default_alpha(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """CROWN's adaptive lower slope: 1 where ``u > -l``, else 0."""
    return (upper > -lower).to(lower.dtype)


def unstable(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    return (lower < 0) & (upper > 0)


def _rowdot(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum(A[d, s] * v[d])`` over the neuron dims; ``v`` is ``[D or 1, *shape]``; result ``[D, S]``."""
    if v.shape[0] == A.shape[0]:
        return torch.bmm(A.flatten(2), v.flatten(1).unsqueeze(-1)).squeeze(-1)
    return A.flatten(2) @ v.flatten(1)[0]


@dataclass
class Relax:
    """The fixed part of one ReLU's relaxation for given bounds, ``[D, 1, *shape]`` each (computed once per
    set of bounds, reused by every step of an optimisation)."""

    unstable: torch.Tensor
    active: torch.Tensor
    up_slope: torch.Tensor
    up_icpt: torch.Tensor
    alpha: torch.Tensor  # CROWN's lower slope

    @classmethod
    def of(cls, lower: torch.Tensor, upper: torch.Tensor) -> Relax:
        unst = unstable(lower, upper).unsqueeze(1)
        active = (lower >= 0).to(lower.dtype).unsqueeze(1)
        denom = torch.where(unst, (upper - lower).unsqueeze(1), torch.ones_like(active))
        up_slope = torch.where(unst, upper.unsqueeze(1) / denom, active)
        up_icpt = torch.where(unst, -(lower * upper).unsqueeze(1) / denom, torch.zeros_like(active))
        return cls(unst, active, up_slope, up_icpt, default_alpha(lower, upper).unsqueeze(1))

    def to(self, dtype: torch.dtype) -> Relax:
        return Relax(self.unstable, self.active.to(dtype), self.up_slope.to(dtype), self.up_icpt.to(dtype),
                     self.alpha.to(dtype))


def relax_all(bounds: list[Interval]) -> list[Relax]:
    return [Relax.of(lower, upper) for lower, upper in bounds]


def backward(net: LayerNet, A: torch.Tensor, bounds: list[Interval] | None, xl: torch.Tensor, xu: torch.Tensor,
             stop: int | None = None, alphas: list[torch.Tensor | None] | None = None,
             betas: list[torch.Tensor | None] | None = None, signs: list[torch.Tensor | None] | None = None,
             want_x: bool = False, want_relu_A: bool = False, relaxed: list[Relax] | None = None) -> Backward:
    """Lower bound of ``A · (output of layers[:stop])`` over ``[xl, xu]`` (see the module docstring).

    ``bounds[k]`` = ``(l, u)`` of ReLU ``k``, ``[D or 1, *shape]``, for every ReLU before ``stop`` (or
    ``relaxed``, their :class:`Relax` precomputed); ``alphas[k]`` ``[D, S, *shape]`` (or None: CROWN's
    slope); ``betas[k]`` ``[D, S, *shape]`` >= 0 with ``signs[k]`` ``[D, *shape]`` in {-1, 0, +1} (0: not
    split). ``xl``/``xu`` are ``[D or 1, *in]``. ``net``'s layers must be in ``A``'s dtype.
    """
    stop = len(net.layers) if stop is None else stop
    k = sum(1 for p in net.relus if p < stop)
    if relaxed is None:
        assert bounds is not None
        relaxed = relax_all(bounds[:k])
    relu_A: list[torch.Tensor | None] = [None] * k
    const = A.new_zeros(A.shape[:2])
    relu_positions = set(net.relus[:k])
    for pos in range(stop - 1, -1, -1):
        layer = net.layers[pos]
        if pos in relu_positions:
            k -= 1
            if want_relu_A:
                relu_A[k] = A
            r = relaxed[k]
            alpha = alphas[k] if alphas is not None else None
            lo_slope = torch.where(r.unstable, r.alpha if alpha is None else alpha, r.active)
            neg = A.clamp(max=0)
            const = const + (neg * r.up_icpt).flatten(2).sum(-1)
            A = A.clamp(min=0) * lo_slope + neg * r.up_slope
            if betas is not None and betas[k] is not None and signs is not None and signs[k] is not None:
                A = A - betas[k] * signs[k].unsqueeze(1)
        else:
            term = layer.bias_term(A)
            if term is not None:
                const = const + term
            A = layer.backward(A)
    centre, radius = (xu + xl) * 0.5, (xu - xl) * 0.5
    lower_bound = _rowdot(A, centre) - _rowdot(A.abs(), radius) + const
    x_min = torch.where(A >= 0, xl.unsqueeze(1), xu.unsqueeze(1)) if want_x else None
    return Backward(lower_bound, x_min, relu_A if want_relu_A else None)


def ibp_bounds(net: LayerNet, xl: torch.Tensor, xu: torch.Tensor) -> list[Interval]:
    """Interval pre-activation bounds of every ReLU (``[D, *shape]`` each)."""
    c, r = (xu + xl) * 0.5, (xu - xl) * 0.5
    out: list[Interval] = []
    for layer in net.layers:
        if isinstance(layer, ReLULayer):
            out.append((c - r, c + r))
            lo, hi = torch.relu(c - r), torch.relu(c + r)
            c, r = (lo + hi) * 0.5, (hi - lo) * 0.5
        else:
            c, r = layer.forward(c), layer.forward_abs(r)
    return out


def ibp_from(net: LayerNet, k: int, bounds: list[Interval]) -> Interval:
    """Interval bounds of ReLU ``k``'s pre-activation pushed forward from ReLU ``k - 1``'s bounds."""
    lo, hi = torch.relu(bounds[k - 1][0]), torch.relu(bounds[k - 1][1])
    c, r = (lo + hi) * 0.5, (hi - lo) * 0.5
    for layer in net.layers[net.relus[k - 1] + 1: net.relus[k]]:
        c, r = layer.forward(c), layer.forward_abs(r)
    return c - r, c + r


def exact_by_ibp(net: LayerNet, k: int) -> bool:
    """IBP is exact for a pre-activation reached through at most one non-diagonal affine layer."""
    return sum(not layer.is_diagonal for layer in net.layers[: net.relus[k]]) <= 1


def unstable_rows(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per domain, the flat indices of the unstable neurons first (``[D, m]``, m = the largest count)."""
    flat = unstable(lower, upper).flatten(1)
    m = int(flat.sum(1).max()) if flat.numel() else 0
    order = torch.argsort(flat.to(torch.int8), dim=1, descending=True, stable=True)[:, :m]
    return order, m


def row_matrix(idx: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """``[D, 2c, *shape]``: rows ``+e_i`` then ``-e_i`` for the flat indices ``idx`` ``[D, c]``."""
    d, c = idx.shape
    n = math.prod(shape)
    eye = torch.zeros(d, c, n, dtype=dtype, device=idx.device)
    eye.scatter_(2, idx.unsqueeze(-1), 1.0)
    return torch.cat([eye, -eye], dim=1).view(d, 2 * c, *shape)


def chunk_rows(net: LayerNet, k: int, domains: int, itemsize: int, memory: float = ROW_MEMORY) -> int:
    """How many neurons of ReLU ``k`` one chunk of intermediate-bound rows may hold."""
    width = max(math.prod(s) for s in net.shapes[: net.relus[k] + 1])
    return max(1, int(memory // (2 * domains * width * itemsize)))


def crown_layer(net: LayerNet, k: int, bounds: list[Interval], xl: torch.Tensor, xu: torch.Tensor) -> Interval:
    """CROWN bounds of ReLU ``k``'s unstable neurons (rows chunked), intersected with ``bounds[k]``."""
    lower, upper = bounds[k]
    shape = tuple(lower.shape[1:])
    order, m = unstable_rows(lower, upper)
    if m == 0:
        return bounds[k]
    d = lower.shape[0]
    flat_l, flat_u = lower.flatten(1).clone(), upper.flatten(1).clone()
    step = chunk_rows(net, k, d, lower.element_size())
    for start in range(0, m, step):
        idx = order[:, start:start + step]
        A = row_matrix(idx, shape, lower.dtype)
        lb = backward(net, A, bounds, xl, xu, stop=net.relus[k]).lower
        c = idx.shape[1]
        flat_l.scatter_(1, idx, torch.maximum(flat_l.gather(1, idx), lb[:, :c]))
        flat_u.scatter_(1, idx, torch.minimum(flat_u.gather(1, idx), -lb[:, c:]))
    return flat_l.view_as(lower), flat_u.view_as(upper)


def crown_bounds(net: LayerNet, xl: torch.Tensor, xu: torch.Tensor) -> list[Interval]:
    """Full CROWN pre-activation bounds of every ReLU, as the engine computes them: IBP from the
    previous refined layer intersected with the first IBP pass, then a CROWN pass per layer."""
    first = ibp_bounds(net, xl, xu)
    bounds: list[Interval] = []
    for k in range(len(net.relus)):
        b = first[k]
        if k > 0:
            lo, hi = ibp_from(net, k, bounds)
            b = (torch.maximum(b[0], lo), torch.minimum(b[1], hi))
        bounds.append(b)
        if not exact_by_ibp(net, k):
            bounds[k] = crown_layer(net, k, bounds, xl, xu)
    return bounds


def apply_splits(bounds: list[Interval], signs: list[torch.Tensor | None]) -> list[Interval]:
    """Domain bounds with each split neuron made stable: ``l = max(l, 0)`` (active), ``u = min(u, 0)``."""
    out: list[Interval] = []
    for (lower, upper), s in zip(bounds, signs, strict=True):
        if s is None:
            out.append((lower, upper))
            continue
        out.append((torch.where(s > 0, lower.clamp(min=0), lower), torch.where(s < 0, upper.clamp(max=0), upper)))
    return out
