"""Memory layout of the bound engine's layers: channels-last convolutions and a flatten-free classifier.

oneDNN runs convolutions fastest on channels-last (NHWC) tensors: an NCHW input or weight is reordered
to its blocked format inside every call, which on the CPU tracks' models costs 7-45 % of a
convolution. The forward pass of a user's model keeps the model's own layout; the bound passes need
not. :func:`fast_layers` turns prepared layers into the same maps laid out for speed:

- every convolution weight is stored channels-last, so IBP's interval passes (whose input box is made
  channels-last in ``ibp.ibp_to_tail``) run in NHWC throughout, and CROWN's relaxations come out in the
  memory order of its coefficient rows;
- a ``Flatten`` followed by a ``Linear`` on a ``[C, H, W]`` input becomes one :class:`FlatLinearLayer`,
  whose backward multiplies by the weight with its columns permuted to ``(H, W, C)`` order, so the
  coefficient rows come out channels-last without a copy of the rows.

Every map is unchanged (the same products in a different memory order), so bounds agree with the plain
layers up to float rounding; ``tests/test_bounds_layout.py`` checks that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from actbench.bounds.network import ConvLayer, FlattenLayer, Layer, LinearLayer, Shape
from actbench.errors import InvalidInput


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` with channels-last strides when it is a 4-D ``[B, C, H, W]`` tensor, else itself.

    The strides are set explicitly: ``contiguous(memory_format=...)`` keeps NCHW strides for a single
    channel (both layouts are then contiguous), and a convolution with such an input and weight writes
    NCHW output."""
    if t.dim() != 4:
        return t
    _, c, h, w = t.shape
    strides = (h * w * c, 1, w * c, c)
    if t.stride() == strides:
        return t
    if c == 1 and t.is_contiguous():  # the same memory either way: only the channel stride differs
        return t.as_strided(t.shape, strides)
    return torch.empty_strided(t.shape, strides, dtype=t.dtype, device=t.device).copy_(t)


class FlatLinearLayer(Layer):
    """``Linear(Flatten(x))`` for ``x`` of per-sample shape ``[C, H, W]``, using the weight with its columns
    permuted to ``(H, W, C)`` order: flattening channels-last activations in that order is a view, and
    the backward product comes out channels-last. The forward falls back to a ``(C, H, W)`` flatten (a
    copy of the activations) when permuting a large weight would cost more (CNN7's classifier)."""

    def __init__(self, linear: LinearLayer, in_shape: Shape, name: str):
        self.weight, self.bias, self.in_shape, self.name = linear.weight, linear.bias, tuple(in_shape), name
        self._abs: torch.Tensor | None = None
        self._hwc: torch.Tensor | None = None
        self._abs_hwc: torch.Tensor | None = None

    def out_shape(self, in_shape: Shape) -> Shape:
        if tuple(in_shape) != self.in_shape:
            raise InvalidInput(f"{self.name}: prepared for input {self.in_shape}, got {in_shape}")
        return (self.weight.shape[0],)

    def abs_weight(self) -> torch.Tensor:
        if self._abs is None:
            self._abs = self.weight.abs()
        return self._abs

    def hwc_weight(self) -> torch.Tensor:
        """The weight with its columns in ``(H, W, C)`` order (formed once, when first needed)."""
        if self._hwc is None:
            c, h, w = self.in_shape
            out = self.weight.shape[0]
            self._hwc = self.weight.reshape(out, c, h, w).permute(0, 2, 3, 1).reshape(out, h * w * c)
        return self._hwc

    def abs_hwc_weight(self) -> torch.Tensor:
        if self._abs_hwc is None:
            self._abs_hwc = self.hwc_weight().abs()
        return self._abs_hwc

    def _hwc_input(self, x: torch.Tensor) -> bool:
        """Whether to flatten ``x`` in ``(H, W, C)`` order (a view when it is channels-last) and use the
        permuted weight: when forming that weight costs less than flattening copies of ``x``. (Not
        whether it was formed already: prepared and fresh layers must give bit-identical bounds.)"""
        return x.stride(1) == 1 and self.weight.numel() <= 2 * x.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._hwc_input(x):
            return F.linear(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1), self.hwc_weight(), self.bias)
        return F.linear(x.flatten(1), self.weight, self.bias)

    def forward_abs(self, r: torch.Tensor) -> torch.Tensor:
        if self._hwc_input(r):
            return F.linear(r.permute(0, 2, 3, 1).reshape(r.shape[0], -1), self.abs_hwc_weight())
        return F.linear(r.flatten(1), self.abs_weight())

    def backward(self, A: torch.Tensor) -> torch.Tensor:
        """Rows ``[B, S, C, H, W]`` in channels-last order (a view of ``A W`` with the permuted weight)."""
        c, h, w = self.in_shape
        return (A @ self.hwc_weight()).view(*A.shape[:2], h, w, c).permute(0, 1, 4, 2, 3)

    def bias_term(self, A: torch.Tensor) -> torch.Tensor | None:
        return None if self.bias is None else A @ self.bias


def fast_layers(layers: list[Layer]) -> list[Layer]:
    """``layers`` laid out for speed, as the module doc says (after ``infer_shapes``, which records each
    flatten's input shape)."""
    out: list[Layer] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if (isinstance(layer, FlattenLayer) and isinstance(nxt, LinearLayer) and len(layer.in_shape) == 3
                and layer.start_dim == 1 and layer.end_dim == -1):  # fmt: skip
            out.append(FlatLinearLayer(nxt, layer.in_shape, nxt.name))
            i += 2
            continue
        if isinstance(layer, ConvLayer):
            layer = ConvLayer(channels_last(layer.weight), layer.bias, layer.stride,
                              layer.padding, layer.dilation, layer.groups, layer.name)  # fmt: skip
        out.append(layer)
        i += 1
    return out
