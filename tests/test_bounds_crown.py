"""CROWN-IBP and CROWN on zoo models: soundness against sampling and PGD, tightness, memory limit."""

from __future__ import annotations

import pytest
import torch
from test_bounds_util import margins, one_thread, pgd_min_margin, randomize_bn  # noqa: F401

from actbench.bounds import margin_bounds
from actbench.errors import ResourceLimit
from actbench.models import create_model


def _zoo(name: str, shape: tuple[int, int, int], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(create_model(name, shape, 10, [0.3] * shape[0], [0.3] * shape[0]), seed).eval()


@pytest.mark.parametrize(("name", "shape"), [("mlp", (1, 12, 12)), ("cnn3", (1, 12, 12))])
@pytest.mark.parametrize("method", ["crown-ibp", "crown"])
def test_sound_against_sampling_and_pgd(name, shape, method):
    model = _zoo(name, shape, 1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, *shape, generator=g), torch.randint(0, 10, (3,), generator=g)
    eps = 0.03
    xl, xu = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    with torch.no_grad():
        r = margin_bounds(model, x, y, eps, method=method)
        ibp = margin_bounds(model, x, y, eps, method="ibp").lower
        for _ in range(10):
            z = xl + (xu - xl) * torch.rand_like(x)
            assert (margins(model, z, y) >= r.lower - 1e-4).all()
    assert (pgd_min_margin(model, x, y, xl, xu, steps=15) >= r.lower - 1e-4).all()
    assert r.lower.mean() > ibp.mean()  # random nets: the linear bound is much tighter
    torch.testing.assert_close(r.ibp_lower, ibp)


def test_crown_relu_bounds_are_sound_and_tighter_than_ibp():
    model = _zoo("cnn3", (1, 12, 12), 2)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 1, 12, 12, generator=g), torch.randint(0, 10, (2,), generator=g)
    eps = 0.05
    with torch.no_grad():
        crown = margin_bounds(model, x, y, eps, method="crown")
        ibp = margin_bounds(model, x, y, eps, method="ibp")
        z = ((x - eps) + 2 * eps * torch.rand(200, *x.shape)).clamp(0, 1)  # [200, B, ...]
        h = z.flatten(0, 1)
        k = 0
        for m in model:
            if isinstance(m, torch.nn.ReLU):
                lo, hi = crown.relu_bounds[k]
                pre = h.view(200, 2, *h.shape[1:])
                assert (pre >= lo - 1e-4).all() and (pre <= hi + 1e-4).all()
                assert (lo >= ibp.relu_bounds[k][0] - 1e-6).all() and (hi <= ibp.relu_bounds[k][1] + 1e-6).all()
                k += 1
            h = m(h)
    assert (crown.lower.mean() >= margin_bounds(model, x, y, eps, method="crown-ibp").lower.mean() - 1e-5)


def test_crown_gradients_flow():
    model = _zoo("cnn3", (1, 12, 12), 3).train()
    x, y = torch.rand(4, 1, 12, 12), torch.randint(0, 10, (4,))
    lb = margin_bounds(model, x, y, 0.01, method="crown-ibp").lower
    lb.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_crown_memory_limit():
    model = _zoo("cnn3", (1, 12, 12), 4)
    x, y = torch.rand(4, 1, 12, 12), torch.randint(0, 10, (4,))
    with pytest.raises(ResourceLimit, match="crown-ibp"):
        margin_bounds(model, x, y, 0.3, method="crown", crown_max_memory=2**16)


def test_crown_ibp_runs_on_cnn7_cifar_shape():
    model = _zoo("cnn7", (3, 32, 32), 5)
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 10, (2,))
    with torch.no_grad():
        r0 = margin_bounds(model, x, y, 0.0, method="crown-ibp")
        torch.testing.assert_close(r0.lower, margins(model, x, y), atol=1e-3, rtol=1e-4)
        r = margin_bounds(model, x, y, 2 / 255, method="crown-ibp")
    assert r.lower.shape == (2, 9) and (r.lower <= r0.lower + 1e-4).all()
