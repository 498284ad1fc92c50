"""MaxPool2d in the bound engine: its layer, its interval rule (IBP) and its linear relaxation (CROWN).

A max-pooling output ``y = max_{i in window} x_i`` with input bounds ``[l_i, u_i]``:

- **IBP** is exact per output: ``y in [max_i l_i, max_i u_i]``.
- **CROWN** (the standard relaxation, as DeepPoly and auto_LiRPA's ``BoundMaxPool`` without optimised
  slopes): let ``i*`` be the window element with the largest lower bound. The lower line is ``y >= x_{i*}``
  (true for any element). If the window is *decided*, ``l_{i*} >= max_{j != i*} u_j``, then ``y = x_{i*}``
  on the whole box and the upper line is ``y <= x_{i*}``; otherwise it is the constant ``y <= max_i u_i``.
  Both lines are sound, so a backward pass through them gives a true lower bound.

Windows may overlap (stride < kernel): coefficients of several outputs that pick the same input add up.
Padding pads with ``-inf``, so a padded position is never the maximum. In ``relu_bounds`` (the bounds of
every non-linear layer's input, in forward order) a MaxPool layer contributes its input bounds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from actbench.bounds.network import Layer, ReLULayer, Shape
from actbench.errors import InvalidInput, UnsupportedLayer

Interval = tuple[torch.Tensor, torch.Tensor]


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class MaxPoolLayer(Layer):
    """``F.max_pool2d`` with a kernel, stride and symmetric padding; non-linear (no affine primitives)."""

    def __init__(self, kernel: Shape, stride: Shape, padding: Shape, name: str):
        self.kernel, self.stride, self.padding, self.name = kernel, stride, padding, name
        self.in_shape: Shape = ()

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise InvalidInput(f"{self.name}: expects input [C, H, W] per sample, got {in_shape}")
        self.in_shape = in_shape
        size = [(in_shape[1 + d] + 2 * self.padding[d] - self.kernel[d]) // self.stride[d] + 1 for d in range(2)]
        if min(size) < 1:
            raise InvalidInput(f"{self.name}: input {in_shape} is too small for the kernel")
        return (in_shape[0], *size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.kernel, self.stride, self.padding)


NONLINEAR = (ReLULayer, MaxPoolLayer)


def maxpool_layer(module: nn.MaxPool2d, name: str) -> MaxPoolLayer:
    """The engine layer of an ``nn.MaxPool2d``, or UnsupportedLayer for options without a rule here."""
    if module.ceil_mode or module.return_indices or _pair(module.dilation) != (1, 1):
        raise UnsupportedLayer(f"{name}: only MaxPool2d without ceil_mode, return_indices or dilation is supported")
    kernel = _pair(module.kernel_size)
    stride = kernel if module.stride is None else _pair(module.stride)
    return MaxPoolLayer(kernel, stride, _pair(module.padding), name)


def interval(layer: MaxPoolLayer, c: torch.Tensor, r: torch.Tensor) -> tuple[Interval, torch.Tensor, torch.Tensor]:
    """Input bounds ``(l, u)`` and the centre and radius of the exact output interval (IBP)."""
    lower, upper = c - r, c + r
    centre, radius = post(layer, lower, upper)
    return (lower, upper), centre, radius


def post(layer: MaxPoolLayer, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and radius of the output interval ``[maxpool(lower), maxpool(upper)]``."""
    lo, hi = layer.forward(lower), layer.forward(upper)
    centre = torch.lerp(lo, hi, 0.5)
    return centre, hi - centre


Relaxation = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Per output: the flat input index ``i*`` into the padded ``H_p * W_p`` plane (``[B, C, L]`` int64),
whether the window is decided (``[B, C, Ho, Wo]`` bool) and ``max u`` (``[B, C, Ho, Wo]``): batch-first
tensors, so the CROWN pass can slice them by samples like the ReLU relaxations."""


def _windows(layer: MaxPoolLayer, t: torch.Tensor) -> torch.Tensor:
    """``[B*C, K, L]``: the K elements of each of the L windows, padding as -inf."""
    b, c, h, w = t.shape
    ph, pw = layer.padding
    padded = F.pad(t.reshape(b * c, 1, h, w), (pw, pw, ph, ph), value=-torch.inf)
    return F.unfold(padded, layer.kernel, stride=layer.stride)


def relaxation(layer: MaxPoolLayer, lower: torch.Tensor, upper: torch.Tensor) -> Relaxation:
    """The CROWN relaxation of ``layer`` on the input box ``[lower, upper]`` (see the module docstring)."""
    b, c, h, w = lower.shape
    out_h, out_w = layer.out_shape(tuple(lower.shape[1:]))[1:]
    lw, uw = _windows(layer, lower), _windows(layer, upper)
    best = lw.argmax(dim=1, keepdim=True)  # [B*C, 1, L], local index in the window
    best_lower = lw.gather(1, best).squeeze(1)
    others = uw.scatter(1, best, -torch.inf).amax(dim=1)
    decided = (best_lower >= others).view(b, c, out_h, out_w)
    u_max = uw.amax(dim=1).view(b, c, out_h, out_w)
    wp = w + 2 * layer.padding[1]
    local = best.squeeze(1)
    kh, kw = local // layer.kernel[1], local % layer.kernel[1]
    oh = torch.arange(out_h, device=lower.device).repeat_interleave(out_w) * layer.stride[0]
    ow = torch.arange(out_w, device=lower.device).repeat(out_h) * layer.stride[1]
    index = ((oh + kh) * wp + (ow + kw)).view(b, c, out_h * out_w)
    return index, decided, u_max


def backward(layer: MaxPoolLayer, A: torch.Tensor, relax: Relaxation) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull rows ``A`` (``[B, S, C, Ho, Wo]``) back through the relaxation: ``(A on the input, constant [B, S])``.

    Rows use the lower line ``y >= x_{i*}`` where ``A >= 0`` and the upper line where ``A < 0``.
    """
    index, decided, u_max = relax
    b, s, c = A.shape[:3]
    negative = A.clamp(max=0)
    coef = A.clamp(min=0) + negative * decided.unsqueeze(1)
    undecided_upper = torch.where(decided, torch.zeros_like(u_max), u_max)
    const = (negative * undecided_upper.unsqueeze(1)).flatten(2).sum(-1)
    ph, pw = layer.padding
    h, w = layer.in_shape[1:]
    hp, wp = h + 2 * ph, w + 2 * pw
    out = A.new_zeros(b, s, c, hp * wp)
    out.scatter_add_(3, index.unsqueeze(1).expand(b, s, c, index.shape[-1]), coef.reshape(b, s, c, -1))
    return out.view(b, s, c, hp, wp)[..., ph:ph + h, pw:pw + w], const
