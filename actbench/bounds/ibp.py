"""Interval bound propagation in centre/radius form, with the margin specification folded into the
layers after the last ReLU ("last-layer elision").

Affine layers map ``(c, r)`` to ``(W c + b, |W| r)``; a ReLU maps the interval ``[c - r, c + r]`` to
``[relu(c - r), relu(c + r)]``. The affine tail after the last ReLU is not propagated as an interval:
the specification rows ``C`` are pulled back through it (``C W``, ``C b``, exactly as CROWN does for
affine layers) and applied to the last interval in one step, which is tighter than bounding the logits
and subtracting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from actbench.bounds import maxpool
from actbench.bounds.maxpool import NONLINEAR
from actbench.bounds.network import Layer, ReLULayer

Interval = tuple[torch.Tensor, torch.Tensor]


@dataclass
class IBPState:
    """Result of the interval pass up to the last ReLU (or the input when there is none)."""

    relu_bounds: list[Interval]
    input_box: Interval
    centre: torch.Tensor
    radius: torch.Tensor
    tail_start: int


def last_relu_index(layers: list[Layer]) -> int:
    """Index of the last non-linear layer (ReLU or MaxPool), -1 when there is none."""
    idx = [i for i, layer in enumerate(layers) if isinstance(layer, NONLINEAR)]
    return idx[-1] if idx else -1


def relu_interval(c: torch.Tensor, r: torch.Tensor) -> tuple[Interval, torch.Tensor, torch.Tensor]:
    """Pre-activation bounds ``(l, u)`` and the post-ReLU centre and radius."""
    lower, upper = c - r, c + r
    lo, hi = torch.relu(lower), torch.relu(upper)
    centre = torch.lerp(lo, hi, 0.5)
    return (lower, upper), centre, hi - centre


def post_relu(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and radius of the ReLU image of the interval ``[lower, upper]``."""
    lo, hi = torch.relu(lower), torch.relu(upper)
    centre = torch.lerp(lo, hi, 0.5)
    return centre, hi - centre


def propagate(layers: list[Layer], c: torch.Tensor, r: torch.Tensor, start: int, stop: int,
              relu_bounds: list[Interval] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Push ``(c, r)`` through ``layers[start:stop]``; pre-activation intervals go to ``relu_bounds``."""
    for layer in layers[start:stop]:
        if isinstance(layer, NONLINEAR):
            bounds, c, r = relu_interval(c, r) if isinstance(layer, ReLULayer) else maxpool.interval(layer, c, r)
            if relu_bounds is not None:
                relu_bounds.append(bounds)
        else:
            c, r = layer.forward(c), layer.forward_abs(r)
    return c, r


def ibp_to_tail(layers: list[Layer], xl: torch.Tensor, xu: torch.Tensor, normalize_first: bool) -> IBPState:
    """Intervals through every layer up to and including the last ReLU."""
    c, r = (xu + xl) * 0.5, (xu - xl) * 0.5
    stop = last_relu_index(layers) + 1
    start = 0
    if normalize_first:
        c, r = propagate(layers, c, r, 0, 1)
        start = 1
    input_box = (c - r, c + r) if normalize_first else (xl, xu)
    relu_bounds: list[Interval] = []
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
