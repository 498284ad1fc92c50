"""Interval bound propagation in centre/radius form, with the margin specification folded into the
layers after the last ReLU ("last-layer elision").

Affine layers map ``(c, r)`` to ``(W c + b, |W| r)``; a ReLU maps the interval ``[c - r, c + r]`` to
``[relu(c - r), relu(c + r)]``. The affine tail after the last ReLU is not propagated as an interval:
the specification rows ``C`` are pulled back through it (``C W``, ``C b``, exactly as CROWN does for
affine layers) and applied to the last interval in one step, which is tighter than bounding the logits
and subtracting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from actbench.bounds import layout, maxpool
from actbench.bounds.maxpool import NONLINEAR
from actbench.bounds.network import Layer, ReLULayer

Interval = tuple[torch.Tensor, torch.Tensor]


class Intervals(Sequence[Interval]):
    """The input intervals ``(lower, upper)`` of the non-linear layers, in forward order.

    A ReLU's interval is kept as the centre and radius IBP propagated and turned into ``(c - r, c + r)``
    when first read: IBP itself never needs it (``relu_interval``), CROWN and the regularisers do.
    """

    def __init__(self) -> None:
        self._items: list[tuple[bool, torch.Tensor, torch.Tensor]] = []  # (as centre/radius?, a, b)

    def append(self, interval: Interval) -> None:
        self._items.append((False, *interval))

    def append_centre_radius(self, centre: torch.Tensor, radius: torch.Tensor) -> None:
        self._items.append((True, centre, radius))

    def _get(self, i: int) -> Interval:
        is_cr, a, b = self._items[i]
        if is_cr:
            self._items[i] = (False, a - b, a + b)
        return self._items[i][1:]

    def __getitem__(self, i):  # int -> Interval, slice -> list[Interval]
        if isinstance(i, slice):
            return [self._get(j) for j in range(len(self._items))[i]]
        return self._get(range(len(self._items))[i])

    def __len__(self) -> int:
        return len(self._items)

    def head(self, n: int) -> Intervals:
        """The intervals of the first ``n`` samples (views)."""
        out = Intervals()
        out._items = [(is_cr, a[:n], b[:n]) for is_cr, a, b in self._items]
        return out


@dataclass
class IBPState:
    """Result of the interval pass up to the last ReLU (or the input when there is none)."""

    relu_bounds: Intervals
    input_box: Interval
    centre: torch.Tensor
    radius: torch.Tensor
    tail_start: int


def last_relu_index(layers: list[Layer]) -> int:
    """Index of the last non-linear layer (ReLU or MaxPool), -1 when there is none."""
    idx = [i for i, layer in enumerate(layers) if isinstance(layer, NONLINEAR)]
    return idx[-1] if idx else -1


def relu_interval(c: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and radius of the ReLU image of ``[c - r, c + r]``.

    Without autograd, in four passes instead of six: with ``h = relu(u) / 2`` (``u = c + r``) the image
    ``[relu(c - r), relu(u)]`` has radius ``min(r, h)`` and centre ``2 h - min(r, h)``. Active
    (``c >= r``): ``h >= r``, so ``(c, r)``; inactive (``u <= 0``): ``(0, 0)``; unstable: ``h < r``, so
    ``(h, h)``, i.e. ``[0, u]``. With autograd the backward of those ops costs more than the two saved
    passes, so training takes ``lerp(relu(l), relu(u), 1/2)`` and its half-width.
    """
    if torch.is_grad_enabled() and (c.requires_grad or r.requires_grad):
        return post_relu(c - r, c + r)
    half_upper = torch.lerp(c, r, 0.5).relu_()
    radius = torch.minimum(r, half_upper)
    return torch.lerp(radius, half_upper, 2.0), radius


def post_relu(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and radius of the ReLU image of the interval ``[lower, upper]``."""
    lo, hi = torch.relu(lower), torch.relu(upper)
    centre = torch.lerp(lo, hi, 0.5)
    return centre, hi - centre


def propagate(layers: list[Layer], c: torch.Tensor, r: torch.Tensor, start: int, stop: int,
              relu_bounds: Intervals | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Push ``(c, r)`` through ``layers[start:stop]``; pre-activation intervals go to ``relu_bounds``."""
    for layer in layers[start:stop]:
        if isinstance(layer, ReLULayer):
            if relu_bounds is not None:
                relu_bounds.append_centre_radius(c, r)
            c, r = relu_interval(c, r)
        elif isinstance(layer, NONLINEAR):
            bounds, c, r = maxpool.interval(layer, c, r)
            if relu_bounds is not None:
                relu_bounds.append(bounds)
        else:
            c, r = layer.forward(c), layer.forward_abs(r)
    return c, r


def ibp_to_tail(layers: list[Layer], xl: torch.Tensor, xu: torch.Tensor, normalize_first: bool) -> IBPState:
    """Intervals through every layer up to and including the last ReLU."""
    c, r = layout.channels_last((xu + xl) * 0.5), layout.channels_last((xu - xl) * 0.5)
    stop = last_relu_index(layers) + 1
    start = 0
    if normalize_first:
        c, r = propagate(layers, c, r, 0, 1)
        start = 1
    input_box = (c - r, c + r) if normalize_first else (xl, xu)
    relu_bounds = Intervals()
    c, r = propagate(layers, c, r, start, max(stop, start), relu_bounds)
    return IBPState(relu_bounds, input_box, c, r, max(stop, start))


def pull_back(layers: list[Layer], A: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull coefficient rows ``A`` (``[B, S, *out]``) back through the affine ``layers[start:stop]``.

    Returns ``(A', const)`` with ``A · layers(h) = A' · h + const`` for every input ``h``.
    """
    const = A.new_zeros(A.shape[:2])
    for layer in reversed(layers[start:stop]):
        term = layer.bias_term(A)
        if term is not None:
            const = const + term
        A = layer.backward(A)
    return A, const


def elided_lower(layers: list[Layer], state: IBPState, spec: torch.Tensor) -> torch.Tensor:
    """Lower bound of ``spec · network(x)`` with the specification folded into the affine tail."""
    A, const = pull_back(layers, spec, state.tail_start, len(layers))
    A = A.flatten(2)
    centre = torch.bmm(A, state.centre.flatten(1).unsqueeze(-1)).squeeze(-1)
    spread = torch.bmm(A.abs(), state.radius.flatten(1).unsqueeze(-1)).squeeze(-1)
    return centre - spread + const


def ibp_output(layers: list[Layer], state: IBPState) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain interval bounds of the network output (no specification)."""
    c, r = propagate(layers, state.centre, state.radius, state.tail_start, len(layers))
    return c - r, c + r
