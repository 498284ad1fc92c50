"""The last step of a CROWN backward pass through a first convolution with few input channels.

At the input box ``[c - r, c + r]`` a backward pass needs only ``A_in · c - |A_in| · r`` per row, where
``A_in = A W`` are the rows pulled back through the first convolution. For an image input (1-3
channels) that transpose is the slowest step of the pass: a transposed convolution writing 1-3
channels, or ``F.fold``, loops over every row. Here it is one matrix product and a few additions:

- ``T = W^T A`` gives, for every row, output position and kernel tap, the coefficient that tap
  contributes to one input pixel (the kernel is zero-padded to a multiple of the stride);
- a kernel tap ``k = s u + v`` (stride ``s``) sends output position ``i`` to input row ``s (i + u) + v - p``
  (padding ``p``), so in a *phase* layout ``P[row, channel, v_h, v_w, I, J]`` (input row
  ``s I + v_h - p``, column ``s J + v_w - p``) each ``(u_h, u_w)`` is one shifted addition of ``T``;
- the box is laid out in the same phase layout (zero where the convolution's padding lies outside the
  image), so ``A_in · c`` and ``|A_in| · r`` are two row-wise dot products with ``P``.

The sums are the same as the transposed convolution's, in another order (equal up to float rounding;
``tests/test_bounds_layout.py`` compares both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from actbench.bounds.network import FOLD_MAX_COLUMNS, ConvLayer, Layer


def eligible(layer: Layer) -> bool:
    """True for a convolution this step handles: no groups or dilation, few input channels."""
    if not isinstance(layer, ConvLayer) or layer.groups != 1 or tuple(layer.dilation) != (1, 1):
        return False
    cin, k_h, k_w = layer.weight.shape[1:]
    return cin * k_h * k_w <= FOLD_MAX_COLUMNS


def _phase_box(t: torch.Tensor, layer: ConvLayer, size: tuple[int, int]) -> torch.Tensor:
    """Per-sample box tensor ``[B, C, H, W]`` in the phase layout, flattened to ``[B, C * s_h * s_w * I * J]``."""
    (s_h, s_w), (p_h, p_w) = layer.stride, layer.padding
    b, c, h, w = t.shape
    grid = t.new_zeros(b, c, s_h * size[0], s_w * size[1])
    grid[:, :, p_h:p_h + h, p_w:p_w + w] = t
    return grid.view(b, c, size[0], s_h, size[1], s_w).permute(0, 1, 3, 5, 2, 4).reshape(b, -1)


def lower(layer: ConvLayer, A: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """``min`` over the box of ``A · conv(x)`` (without the bias): ``[B, S]`` for rows ``A [B, S, C_out, H, W]``."""
    b, s, cout, out_h, out_w = A.shape
    cin, k_h, k_w = layer.weight.shape[1:]
    (s_h, s_w), (p_h, p_w) = layer.stride, layer.padding
    in_h, in_w = layer.in_shape[1:]
    m_h, m_w = -(-k_h // s_h), -(-k_w // s_w)
    weight = F.pad(layer.weight, (0, m_w * s_w - k_w, 0, m_h * s_h - k_h)).reshape(cout, -1)
    rows = A.permute(0, 1, 3, 4, 2).reshape(-1, cout)  # a view for channels-last rows
    taps = torch.mm(weight.t(), rows.t()).view(cin, m_h, s_h, m_w, s_w, b * s, out_h, out_w)
    size = (max(out_h + m_h - 1, -(-(in_h + p_h) // s_h)), max(out_w + m_w - 1, -(-(in_w + p_w) // s_w)))
    phase = A.new_zeros(b * s, cin, s_h, s_w, *size)
    for c in range(cin):
        for u in range(m_h):
            for v in range(m_w):
                phase[:, c, :, :, u:u + out_h, v:v + out_w] += taps[c, u, :, v].permute(2, 0, 1, 3, 4)
    phase = phase.view(b, s, -1)
    lin = torch.bmm(phase, _phase_box(centre, layer, size).unsqueeze(-1))
    spread = torch.bmm(phase.abs_(), _phase_box(radius, layer, size).unsqueeze(-1))
    return (lin - spread).squeeze(-1)
