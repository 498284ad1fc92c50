"""IBP, BatchNorm handling, input checks and network flattening of the bound engine."""

from __future__ import annotations

import copy

import pytest
import torch
from test_bounds_util import (
    margins,
    one_thread,  # noqa: F401
    pgd_min_margin,
    randomize_bn,
    tiny_conv,
    tiny_fc,
)
from torch import nn

from actbench.bounds import box_margin_bounds, build_network, clean_forward, logit_bounds, margin_bounds
from actbench.errors import InvalidInput, UnknownName, UnsupportedLayer
from actbench.models import create_model


def _zoo(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(create_model(name, (1, 28, 28), 10, [0.3], [0.3]), seed).eval()


def _data(b: int = 6, shape: tuple[int, ...] = (1, 28, 28), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, *shape, generator=g), torch.randint(0, 10, (b,), generator=g)


@pytest.mark.parametrize("name", ["mlp", "cnn3"])
def test_eps_zero_gives_exact_margins(name):
    model = _zoo(name)
    x, y = _data()
    with torch.no_grad():
        want = margins(model, x, y)
        for method in ("ibp", "crown-ibp"):
            got = margin_bounds(model, x, y, 0.0, method=method).lower
            torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
        lb, ub = logit_bounds(model, x, 0.0)
        torch.testing.assert_close(lb, model(x), atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(ub, model(x), atol=2e-5, rtol=1e-5)


def test_ibp_monotone_in_eps_and_logit_bounds_contain_margin_bounds():
    model = _zoo("cnn3", 1)
    x, y = _data(seed=1)
    with torch.no_grad():
        prev = None
        for eps in (0.0, 0.001, 0.003, 0.01, 0.03, 0.1):
            lb = margin_bounds(model, x, y, eps).lower
            if prev is not None:
                assert (lb <= prev + 1e-5).all()
            prev = lb
            # elision is never looser than subtracting logit bounds
            zl, zu = logit_bounds(model, x, eps)
            naive = margins_from_logit_bounds(zl, zu, y)
            assert (lb >= naive - 1e-4).all()


def margins_from_logit_bounds(zl: torch.Tensor, zu: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    k = zl.shape[1]
    mask = torch.ones_like(zl, dtype=torch.bool)
    mask[torch.arange(len(y)), y] = False
    return (zl.gather(1, y[:, None]) - zu)[mask].view(len(y), k - 1)


def test_elision_strictly_tighter_somewhere():
    model = _zoo("mlp", 2)
    x, y = _data(seed=2)
    with torch.no_grad():
        lb = margin_bounds(model, x, y, 0.01).lower
        naive = margins_from_logit_bounds(*logit_bounds(model, x, 0.01), y)
    assert (lb > naive + 1e-3).any()


@pytest.mark.parametrize("name", ["mlp", "cnn3"])
def test_ibp_sound_against_sampling_and_pgd(name):
    model = _zoo(name, 3)
    x, y = _data(4, seed=3)
    eps = 0.02
    xl, xu = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    with torch.no_grad():
        lb = margin_bounds(model, x, y, eps).lower
        for _ in range(20):
            z = xl + (xu - xl) * torch.rand_like(x)
            assert (margins(model, z, y) >= lb - 1e-5).all()
        corners = torch.where(torch.rand_like(x) < 0.5, xl, xu)
        assert (margins(model, corners, y) >= lb - 1e-5).all()
    assert (pgd_min_margin(model, x, y, xl, xu, steps=15) >= lb - 1e-5).all()


def test_per_sample_eps_equals_separate_calls():
    model = _zoo("cnn3", 4)
    x, y = _data(3, seed=4)
    eps = torch.tensor([0.0, 0.01, 0.05])
    with torch.no_grad():
        together = margin_bounds(model, x, y, eps).lower
        for i in range(3):
            alone = margin_bounds(model, x[i:i + 1], y[i:i + 1], float(eps[i])).lower
            torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=1e-5)


def test_float64_agrees_with_float32():
    model = _zoo("cnn3", 5)
    x, y = _data(4, seed=5)
    with torch.no_grad():
        lb32 = margin_bounds(model, x, y, 0.01).lower
        model64 = copy.deepcopy(model).double()
        lb64 = margin_bounds(model64, x.double(), y, 0.01).lower
        lb64b = margin_bounds(model, x.double(), y, 0.01).lower  # float32 weights promoted
    assert lb32.dtype == torch.float32 and lb64.dtype == torch.float64 and lb64b.dtype == torch.float64
    torch.testing.assert_close(lb64, lb64b)
    torch.testing.assert_close(lb32.double(), lb64, atol=1e-3, rtol=1e-4)


def test_box_margin_bounds_matches_eps_box_and_input_box_is_normalised():
    model = _zoo("mlp", 6)
    x, y = _data(3, seed=6)
    with torch.no_grad():
        r = margin_bounds(model, x, y, 0.05)
        xl, xu = (x - 0.05).clamp(0, 1), (x + 0.05).clamp(0, 1)
        r2 = box_margin_bounds(model, xl, xu, y)
    torch.testing.assert_close(r.lower, r2.lower)
    l, u = r.input_box
    torch.testing.assert_close(l, (xl - 0.3) / 0.3)
    torch.testing.assert_close(u, (xu - 0.3) / 0.3)
    assert len(r.relu_bounds) == 2
    for lo, hi in r.relu_bounds:
        assert lo.shape == (3, 256) and (lo <= hi).all()


def test_clipping_to_lo_hi():
    model = _zoo("mlp", 7)
    x, y = _data(2, seed=7)
    with torch.no_grad():
        big = margin_bounds(model, x, y, 5.0).lower  # the whole [0, 1] cube
        cube = box_margin_bounds(model, torch.zeros_like(x), torch.ones_like(x), y).lower
    torch.testing.assert_close(big, cube)


# ---------------------------------------------------------------- BatchNorm


def test_eval_mode_bn_uses_running_stats():
    model = _zoo("cnn3", 8)
    x, y = _data(4, seed=8)
    with torch.no_grad():
        before = margin_bounds(model, x, y, 0.0).lower
        torch.testing.assert_close(before, margins(model, x, y), atol=2e-5, rtol=1e-5)
        logits, stats = clean_forward(model, x)
    assert stats is None
    torch.testing.assert_close(logits, model(x))


def test_train_mode_bn_uses_clean_batch_stats_and_keeps_running_stats():
    model = _zoo("cnn3", 9).train()
    x, y = _data(8, seed=9)
    running = {k: v.clone() for k, v in model.state_dict().items()}
    r = margin_bounds(model, x, y, 0.01)
    for k, v in model.state_dict().items():
        assert torch.equal(v, running[k]), f"{k} changed"
    # manual: an eval copy whose running stats are the clean batch's (biased) statistics
    manual = copy.deepcopy(model).eval()
    acts = x
    with torch.no_grad():
        for m in manual:
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                dims = [0, *range(2, acts.dim())]
                m.running_mean.copy_(acts.mean(dims))
                m.running_var.copy_(acts.var(dims, unbiased=False))
            acts = m(acts)
    with torch.no_grad():
        want = margin_bounds(manual, x, y, 0.01).lower
    torch.testing.assert_close(r.lower.detach(), want, atol=1e-4, rtol=1e-4)
    # clean_forward: same stats, running stats updated exactly once (like a normal forward)
    twin = copy.deepcopy(model)
    logits, stats = clean_forward(model, x)
    ref = twin(x)
    torch.testing.assert_close(logits, ref)
    for (k, v), (_, w) in zip(model.state_dict().items(), twin.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    r2 = margin_bounds(model, x, y, 0.01, bn_stats=stats)
    torch.testing.assert_close(r2.lower, r.lower, atol=1e-4, rtol=1e-4)
    assert stats is not None and all(mean.requires_grad for mean, _ in stats.values())


def test_gradients_flow_through_ibp_in_train_mode():
    torch.manual_seed(10)
    model = create_model("cnn3", (1, 28, 28), 10, [0.3], [0.3]).train()
    x, y = _data(8, seed=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    logits, stats = clean_forward(model, x)
    lb = margin_bounds(model, x, y, 0.01, bn_stats=stats).lower
    robust = torch.cat([torch.zeros_like(lb[:, :1]), -lb], dim=1)
    loss = nn.functional.cross_entropy(robust, torch.zeros_like(y)) + nn.functional.cross_entropy(logits, y)
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


# ---------------------------------------------------------------- flattening and bad input


def test_network_flattens_nested_sequential_and_drops_identities():
    net = build_network(tiny_conv(bn=True))
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["NormalizeLayer", "ConvLayer", "BatchNormLayer", "ReLULayer", "AvgPoolLayer", "ConvLayer",
                     "BatchNormLayer", "ReLULayer", "FlattenLayer", "LinearLayer", "ReLULayer", "LinearLayer"]


@pytest.mark.parametrize("bad", [nn.Tanh(), nn.MaxPool1d(2), nn.ModuleList([nn.ReLU()])])
def test_unsupported_layer_is_named(bad):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.Sequential(bad), nn.Linear(4, 2))
    with pytest.raises(UnsupportedLayer, match=type(bad).__name__):
        margin_bounds(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1]), 0.1)


def test_bad_inputs():
    model = tiny_fc()
    x, y = torch.rand(2, 1, 2, 3), torch.tensor([0, 2])
    with pytest.raises(InvalidInput, match="eps"):
        margin_bounds(model, x, y, -0.1)
    with pytest.raises(InvalidInput, match="eps"):
        margin_bounds(model, x, y, float("nan"))
    with pytest.raises(InvalidInput, match="eps"):
        margin_bounds(model, x, y, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(InvalidInput, match="eps"):
        margin_bounds(model, x, y, torch.tensor([0.1, -0.2]))
    with pytest.raises(InvalidInput, match="labels"):
        margin_bounds(model, x, torch.tensor([0, 3]), 0.1)
    with pytest.raises(InvalidInput, match="labels"):
        margin_bounds(model, x, torch.tensor([-1, 0]), 0.1)
    with pytest.raises(InvalidInput, match="shape"):
        margin_bounds(model, x, torch.tensor([0, 1, 2]), 0.1)
    with pytest.raises(InvalidInput, match="integer"):
        margin_bounds(model, x, torch.tensor([0.0, 1.0]), 0.1)
    with pytest.raises(InvalidInput, match="features"):
        margin_bounds(model, torch.rand(2, 1, 2, 4), y, 0.1)
    with pytest.raises(InvalidInput, match="shape"):
        margin_bounds(model, torch.rand(6), y, 0.1)
    with pytest.raises(UnknownName, match="bound method"):
        margin_bounds(model, x, y, 0.1, method="deeppoly")
    with pytest.raises(InvalidInput, match="lower <= upper"):
        box_margin_bounds(model, x + 0.1, x, y)
    with pytest.raises(InvalidInput, match="empty"):
        margin_bounds(model, x + 2.0, y, 0.1)
    conv = tiny_conv()
    with pytest.raises(InvalidInput, match="channels"):
        margin_bounds(conv, torch.rand(2, 3, 6, 6), y, 0.1)
    with pytest.raises(InvalidInput, match="features"):
        margin_bounds(conv, torch.rand(2, 1, 8, 8), y, 0.1)


def test_no_grad_layer_cache_sees_weight_and_stat_updates():
    model = _zoo("cnn3", 11)
    x, y = _data(3, seed=11)
    with torch.no_grad():
        first = margin_bounds(model, x, y, 0.01).lower
        torch.testing.assert_close(margin_bounds(model, x, y, 0.01).lower, first)
        model[1].weight.mul_(0.5)  # in-place update, like an optimizer step
        second = margin_bounds(model, x, y, 0.01).lower
        model[2].running_mean.add_(1.0)
        third = margin_bounds(model, x, y, 0.01).lower
        fresh = margin_bounds(copy.deepcopy(model), x, y, 0.01).lower
    assert not torch.allclose(first, second) and not torch.allclose(second, third)
    torch.testing.assert_close(third, fresh)
