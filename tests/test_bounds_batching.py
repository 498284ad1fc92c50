"""Batch handling that only changes speed: bound passes at bucketed batch sizes, the subset bound
function of a radius search, and the oneDNN-free path of tiny convolution batches. Each must give
the bounds (and gradients) of the plain computation."""

from __future__ import annotations

import pytest
import torch
from test_bounds_util import METHODS, one_thread  # noqa: F401
from torch import nn

from actbench.bounds import api, clean_forward, margin_bounds, network, prepared, subset_bounds
from actbench.errors import InvalidInput, UnknownName
from actbench.models import create_model


def test_bucket_sizes_cover_every_batch_with_little_padding():
    sizes = {api.bucket_size(n) for n in range(1, 1025)}
    for n in range(1, 1025):
        b = api.bucket_size(n)
        assert n <= b < 1.125 * n + 1 and api.bucket_size(b) == b
    assert all(api.bucket_size(n) == n for n in range(1, 17))
    assert len([s for s in sizes if 64 < s <= 128]) == 8 and len(sizes) == 16 + 8 * 6


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("cnn3", (1, 12, 12), 5).double()


@pytest.mark.parametrize("method", METHODS)
def test_a_padded_batch_gives_each_sample_its_own_bounds(method):
    model = _model().eval()
    n = 17
    assert api.bucket_size(n) > n  # the pass runs padded
    x = torch.rand(n, 1, 12, 12, dtype=torch.float64)
    y = torch.randint(0, 5, (n,))
    eps = torch.linspace(0.001, 0.03, n, dtype=torch.float64)
    with torch.no_grad():
        batch = margin_bounds(model, x, y, eps, method=method)
        single = [margin_bounds(model, x[i:i + 1], y[i:i + 1], eps[i:i + 1], method=method) for i in range(n)]
    assert batch.lower.shape == (n, 4)
    assert batch.ibp_lower is None or batch.ibp_lower.shape == (n, 4)
    assert torch.allclose(batch.lower, torch.cat([s.lower for s in single]), atol=1e-10)
    assert all(lo.shape[0] == n and up.shape[0] == n for lo, up in batch.relu_bounds)
    assert batch.input_box[0].shape[0] == n


def test_padding_keeps_gradients_of_the_real_samples_only():
    model = _model().train()
    n = 17
    assert api.bucket_size(n) > n  # the pass runs padded
    x = torch.rand(n, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (n,))
    stats = {m: (mean.detach(), var.detach()) for m, (mean, var) in clean_forward(model, x.detach())[1].items()}
    margin_bounds(model, x, y, 0.01, bn_stats=stats).lower.sum().backward()
    grads, x_grad = [p.grad.clone() for p in model.parameters()], x.grad.clone()
    model.zero_grad()
    x.grad = None
    torch.stack([margin_bounds(model, x[i:i + 1], y[i:i + 1], 0.01, bn_stats=stats).lower.sum()
                 for i in range(n)]).sum().backward()  # fmt: skip
    for g, p in zip(grads, model.parameters(), strict=True):
        assert torch.allclose(g, p.grad, atol=1e-9)
    assert torch.allclose(x_grad, x.grad, atol=1e-9)


@pytest.mark.parametrize("training", [False, True])
def test_subset_bounds_equal_margin_bounds(training):
    model = _model().train(training)
    x = torch.rand(20, 1, 12, 12, dtype=torch.float64)
    y = torch.randint(0, 5, (20,))
    with torch.no_grad():
        stats = clean_forward(model, x)[1] if training else None
        with prepared(model):
            bound = subset_bounds(model, x, y, "crown-ibp", bn_stats=stats)
            # all, one, repeats, and 17 samples (a padded pass)
            for idx in (torch.arange(20), torch.tensor([3]), torch.tensor([19, 0, 7, 7]), torch.arange(3, 20)):
                eps = torch.full((len(idx),), 0.02, dtype=torch.float64)
                got = bound(idx, eps)
                want = margin_bounds(model, x[idx], y[idx], eps, method="crown-ibp", bn_stats=stats)
                assert torch.allclose(got.lower, want.lower, atol=1e-10)


def test_subset_bounds_check_their_batch_once():
    model = _model().eval()
    x, y = torch.rand(4, 1, 12, 12), torch.randint(0, 5, (4,))
    with pytest.raises(InvalidInput, match="labels"):
        subset_bounds(model, x, torch.tensor([0, 1, 2, 9]))
    with pytest.raises(UnknownName, match="bound method"):
        subset_bounds(model, x, y, "nope")
    outside = x.clone()
    outside[0, 0, 0, 0] = 1.5  # outside [0, 1]: every call goes through margin_bounds' checks
    bound = subset_bounds(model, outside, y)
    with pytest.raises(InvalidInput, match="empty"):
        bound(torch.tensor([0]), torch.tensor([0.1]))
    assert bound(torch.tensor([1]), torch.tensor([0.1])).lower.shape == (1, 4)


def test_tiny_convolution_batches_bypass_onednn_and_agree():
    conv = nn.Conv2d(3, 4, 3, 2, 1)
    layer = network.build_network(nn.Sequential(conv)).layers[0]
    x = torch.rand(network.SMALL_CONV_BATCH, 3, 9, 9)
    with torch.no_grad():
        small = layer.forward(x)
        assert torch.backends.mkldnn.enabled  # restored after the call
        big = layer.forward(torch.cat([x, x]))[: x.shape[0]]
    assert torch.allclose(small, big, atol=1e-5) and torch.allclose(small, conv(x), atol=1e-5)
