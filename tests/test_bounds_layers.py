"""Layer primitives and the ReLU relaxation: each backward is the exact adjoint of its forward, every
code path of ``ConvLayer.backward`` included; the where-free relaxation equals its case definition."""

from __future__ import annotations

import pytest
import torch
from test_bounds_util import one_thread  # noqa: F401

from actbench.bounds import crown, network
from actbench.bounds.allocator import tune_allocator
from actbench.bounds.network import AvgPoolLayer, ConvLayer

CONVS = [  # cin, cout, in hw, kernel, stride, padding, dilation, groups
    (1, 4, (9, 9), 4, 2, 1, 1, 1),  # first layer: F.fold path
    (3, 5, (8, 7), 3, 1, 1, 1, 1),  # fold, non-square input
    (8, 6, (9, 9), 3, 2, 1, 1, 1),  # transposed convolution, output padding needed
    (8, 6, (10, 10), 4, 2, 1, 1, 1),
    (6, 6, (9, 9), 3, 1, 2, 2, 1),  # dilation
    (8, 4, (7, 7), 3, 2, 0, 1, 2),  # groups
]


@torch.no_grad()
def _adjoint_gap(layer, in_shape: tuple[int, ...], channels_last: bool) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *in_shape, generator=g, dtype=torch.float64)
    out = layer.forward(x)
    A = torch.randn(2, 3, *out.shape[1:], generator=g, dtype=torch.float64)
    if channels_last:  # rows as ConvLayer.backward returns them
        A = A.reshape(6, *out.shape[1:]).contiguous(memory_format=torch.channels_last).view_as(A)
    back = layer.backward(A)
    assert back.shape == (2, 3, *in_shape)
    lhs = torch.einsum("bs...,b...->bs", A, out - layer.forward(torch.zeros_like(x)))  # A · (W x)
    rhs = torch.einsum("bs...,b...->bs", back, x)  # (A W) · x
    return float((lhs - rhs).abs().max())


@pytest.mark.parametrize("cfg", CONVS, ids=[f"conv{i}" for i in range(len(CONVS))])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("fold", [64, 0])
def test_conv_backward_is_the_adjoint(cfg, channels_last, fold, monkeypatch):
    cin, cout, hw, k, stride, pad, dil, groups = cfg
    monkeypatch.setattr(network, "FOLD_MAX_COLUMNS", fold)
    torch.manual_seed(1)
    module = torch.nn.Conv2d(cin, cout, k, stride, pad, dil, groups).double()
    layer = network.build_network(torch.nn.Sequential(module)).layers[0]
    assert isinstance(layer, ConvLayer)
    layer.out_shape((cin, *hw))  # records the input shape, as infer_shapes does
    assert _adjoint_gap(layer, (cin, *hw), channels_last) < 1e-10


def test_avgpool_backward_is_the_adjoint():
    for c in (1, 3):
        layer = AvgPoolLayer((2, 2), (1, 1), (0, 0), "pool")
        layer.out_shape((c, 5, 5))
        assert _adjoint_gap(layer, (c, 5, 5), False) < 1e-12


def _reference_relaxation(lower: torch.Tensor, upper: torch.Tensor):
    """The case definition, written with torch.where."""
    active, unstable = lower >= 0, (lower < 0) & (upper > 0)
    denom = torch.where(unstable, upper - lower, torch.ones_like(lower))
    up = torch.where(unstable, upper / denom, active.to(lower.dtype))
    icpt = torch.where(unstable, -lower * upper / denom, torch.zeros_like(lower))
    lo = torch.where(unstable, (upper > -lower).to(lower.dtype), active.to(lower.dtype))
    return lo, up, icpt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relaxation_matches_case_definition(dtype):
    g = torch.Generator().manual_seed(0)
    lower = torch.randn(5000, generator=g, dtype=dtype) * 3
    upper = lower + torch.rand(5000, generator=g, dtype=dtype) * 4
    special = torch.tensor([[-1.0, 1.0], [0.0, 1.0], [0.0, 0.5], [-2.0, 0.0], [1e-30, 2e-30], [-1e-30, 1e-30],
                            [-3.0, -1.0], [-0.5, 0.5]], dtype=dtype)  # ties, zeros, stable, tiny
    lower, upper = torch.cat([lower, special[:, 0]]), torch.cat([upper, special[:, 1]])
    for got, want in zip(crown.relaxation(lower, upper), _reference_relaxation(lower, upper), strict=True):
        assert torch.equal(got, want)
    # l = u = 0: the input is exactly 0 on the box, so the slopes (0 here) are immaterial; no NaN
    zero = torch.zeros(3, dtype=dtype)
    assert all(torch.equal(t, zero) for t in crown.relaxation(zero, zero))


def test_relaxation_is_differentiable():
    lower = torch.tensor([-1.0, 0.5, -2.0], requires_grad=True)
    upper = torch.tensor([2.0, 1.0, -1.0], requires_grad=True)
    lo, up, icpt = crown.relaxation(lower, upper)
    (lo.sum() + up.sum() + icpt.sum()).backward()
    assert torch.isfinite(lower.grad).all() and torch.isfinite(upper.grad).all()


def test_tune_allocator_is_idempotent():
    first = tune_allocator()
    assert isinstance(first, bool) and tune_allocator() == first
