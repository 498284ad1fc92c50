"""The engine's speed layouts compute the same maps: channels-last layers (``layout.fast_layers``), the
phase-layout input step of a first convolution (``input_step``), the four-pass ReLU interval and the
lazily formed ReLU bounds. Each is compared in float64 with the plain computation it replaces."""

from __future__ import annotations

import pytest
import torch
from test_bounds_util import METHODS, one_thread  # noqa: F401
from torch import nn

from actbench.bounds import crown, ibp, input_step, layout, margin_bounds, network
from actbench.bounds.network import ConvLayer, FlattenLayer, LinearLayer
from actbench.models import Normalize, create_model

FIRST_CONVS = [  # cin, cout, in hw, kernel, stride, padding
    (1, 4, (28, 28), 4, 2, 1),  # cnn3's first layer
    (3, 5, (8, 8), 3, 1, 1),  # CNN7's
    (1, 3, (9, 9), 4, 2, 1),  # output padding: a row the convolution never reads
    (2, 3, (8, 7), 3, 2, 0),  # non-square, no padding, kernel not a multiple of the stride
    (1, 2, (10, 10), 5, 3, 2),
    (3, 2, (6, 6), 2, 2, 0),
    (1, 2, (7, 7), 1, 1, 0),
]


@pytest.mark.parametrize("cfg", FIRST_CONVS, ids=[f"conv{i}" for i in range(len(FIRST_CONVS))])
def test_input_step_equals_the_transposed_convolution(cfg):
    cin, cout, hw, k, stride, pad = cfg
    torch.manual_seed(0)
    module = nn.Conv2d(cin, cout, k, stride, pad).double()
    layer = network.build_network(nn.Sequential(module)).layers[0]
    out_shape = layer.out_shape((cin, *hw))
    assert input_step.eligible(layer)
    A = torch.randn(3, 4, *out_shape, dtype=torch.float64)
    centre = torch.rand(3, cin, *hw, dtype=torch.float64)
    radius = torch.rand(3, cin, *hw, dtype=torch.float64) * 0.1
    back = layer.backward(A)  # A W, by conv_transpose2d or F.fold
    want = torch.einsum("bs...,b...->bs", back, centre) - torch.einsum("bs...,b...->bs", back.abs(), radius)
    for rows in (A, A.reshape(12, *out_shape).contiguous(memory_format=torch.channels_last).view_as(A)):
        got = input_step.lower(layer, rows, centre, radius)
        assert got.shape == (3, 4)
        assert torch.allclose(got, want, rtol=0, atol=1e-10)


def test_input_step_skips_groups_dilation_and_wide_inputs():
    def layer(**kw):
        return network.build_network(nn.Sequential(nn.Conv2d(**kw))).layers[0]

    assert not input_step.eligible(layer(in_channels=2, out_channels=2, kernel_size=3, groups=2))
    assert not input_step.eligible(layer(in_channels=1, out_channels=2, kernel_size=3, dilation=2))
    assert not input_step.eligible(layer(in_channels=16, out_channels=2, kernel_size=3))
    assert not input_step.eligible(network.LinearLayer(torch.ones(2, 2), None, "fc"))


def test_flat_linear_is_flatten_then_linear():
    torch.manual_seed(0)
    fc = LinearLayer(torch.randn(3, 3 * 4 * 5, dtype=torch.float64), torch.randn(3, dtype=torch.float64), "fc")
    fused = layout.FlatLinearLayer(fc, (3, 4, 5), "fc")
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    A = torch.randn(2, 7, 3, dtype=torch.float64)
    for batch in (x[:1], x):  # the (C, H, W) flatten, then the permuted weight (once the batch is large)
        for inp in (batch, layout.channels_last(batch)):
            assert fused._hwc_input(inp) == (inp.shape[0] == 2 and inp.stride(1) == 1)
            assert torch.allclose(fused.forward(inp), fc.forward(inp.flatten(1)), atol=1e-12)
            assert torch.allclose(fused.forward_abs(inp), fc.forward_abs(inp.flatten(1)), atol=1e-12)
    back = fused.backward(A)
    assert back.shape == (2, 7, 3, 4, 5)
    assert torch.allclose(back, fc.backward(A).view(2, 7, 3, 4, 5), atol=1e-12)
    assert torch.allclose(fused.bias_term(A), fc.bias_term(A), atol=1e-12)


def test_fast_layers_replace_flatten_linear_and_lay_convolutions_out_channels_last():
    model = create_model("cnn3", (1, 28, 28), 10).eval()
    net = network.build_network(model)
    shapes = network.infer_shapes(net, (1, 28, 28))
    plain = network.materialize(net, shapes, lambda layer, d, dev: (torch.ones(layer.module.num_features),
                                                                    torch.zeros(layer.module.num_features)),
                                torch.float32, torch.device("cpu"), 1)  # fmt: skip
    fast = layout.fast_layers(plain)
    assert not any(isinstance(layer, FlattenLayer) for layer in fast)
    assert sum(isinstance(layer, layout.FlatLinearLayer) for layer in fast) == 1
    for layer in fast:
        if isinstance(layer, ConvLayer):  # explicit channels-last strides, also for one input channel
            c, h, w = layer.weight.shape[1:]
            assert layer.weight.stride() == (h * w * c, 1, w * c, c)


def test_channels_last_sets_the_strides_of_a_single_channel():
    x = torch.randn(4, 1, 5, 6)
    assert x.is_contiguous(memory_format=torch.channels_last)  # ambiguous: both layouts are contiguous
    y = layout.channels_last(x)
    assert y.stride() == (30, 1, 6, 1) and torch.equal(y, x)
    assert layout.channels_last(y) is y
    flat = torch.randn(3, 4)
    assert layout.channels_last(flat) is flat


def _mixed_model() -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(
        Normalize([0.4, 0.5], [0.2, 0.3]),
        nn.Conv2d(2, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 5, 3, 1, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(5 * 5 * 5, 12), nn.ReLU(), nn.Linear(12, 4),
    ).double()  # fmt: skip
    bn = model[2]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("method", METHODS)
def test_bounds_with_fast_layers_equal_the_plain_layers(method, monkeypatch):
    model = _mixed_model()
    x = torch.rand(6, 2, 10, 10, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    with torch.no_grad():
        fast = margin_bounds(model, x, y, 0.03, method=method)
        monkeypatch.setattr(layout, "fast_layers", lambda layers: layers)
        monkeypatch.setattr(input_step, "eligible", lambda layer: False)
        plain = margin_bounds(model, x, y, 0.03, method=method)
    assert torch.allclose(fast.lower, plain.lower, rtol=0, atol=1e-10)
    for (l1, u1), (l2, u2) in zip(fast.relu_bounds, plain.relu_bounds, strict=True):
        assert torch.allclose(l1, l2, atol=1e-10) and torch.allclose(u1, u2, atol=1e-10)


def test_relu_interval_is_the_image_of_the_interval():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(20000, generator=g, dtype=torch.float64)
    r = torch.rand(20000, generator=g, dtype=torch.float64) * 2
    special = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [0.0, 0.0], [2.0, 0.0], [-2.0, 0.0], [0.5, 3.0]],
                           dtype=torch.float64)  # l = 0, u = 0, a point, stable and unstable
    c, r = torch.cat([c, special[:, 0]]), torch.cat([r, special[:, 1]])
    lo, hi = torch.relu(c - r), torch.relu(c + r)
    for grad in (False, True):  # the four-pass form without autograd, the differentiable one with it
        with torch.enable_grad():
            centre, radius = ibp.relu_interval(c.requires_grad_(grad), r)
        assert centre.requires_grad == grad
        assert torch.allclose(centre - radius, lo, rtol=0, atol=1e-14)
        assert torch.allclose(centre + radius, hi, rtol=0, atol=1e-14)
        assert bool((radius >= 0).all())


def test_relu_bounds_are_formed_when_read():
    intervals = ibp.Intervals()
    c, r = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])
    intervals.append_centre_radius(c, r)
    intervals.append((torch.zeros(2), torch.ones(2)))
    assert len(intervals) == 2
    lower, upper = intervals[0]
    assert torch.equal(lower, c - r) and torch.equal(upper, c + r)
    assert intervals[0][0] is lower  # formed once
    assert [len(b) for b in intervals[:2]] == [2, 2] and len(list(intervals)) == 2
    assert intervals[-1][1].tolist() == [1.0, 1.0]
    with pytest.raises(IndexError):
        intervals[2]


def test_backward_through_a_leading_normalize_uses_the_normalised_box():
    layers = [network.ChannelAffineLayer(torch.tensor([2.0, -0.5], dtype=torch.float64),
                                         torch.tensor([0.1, 0.3], dtype=torch.float64), "norm")]  # fmt: skip
    xl = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    xu = xl + 0.2
    A = torch.randn(2, 3, 2, 3, 3, dtype=torch.float64)
    got = crown.backward_lower(layers, A, [], xl, xu)
    # brute force over the box corners per coordinate: min of a linear map is coordinate-wise
    scale, shift = layers[0].scale.view(1, 1, 2, 1, 1), layers[0].shift.view(1, 1, 2, 1, 1)
    coeff = A * scale
    want = (torch.minimum(coeff * xl.unsqueeze(1), coeff * xu.unsqueeze(1)) + A * shift).flatten(2).sum(-1)
    assert torch.allclose(got, want, atol=1e-12)
