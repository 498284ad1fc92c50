"""Root search and certified radii: soundness (certified side), tightness, modes and dtypes."""

from __future__ import annotations

import math

import pytest
import torch
from test_certify_fixtures import one_thread

from actbench.bounds import clean_forward, margin_bounds
from actbench.certify import certified_radii, root_search
from actbench.errors import InvalidInput
from actbench.models import create_model, ibp_init

RTOL = 1e-4


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield

N = 400
ROOTS = torch.rand(N, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.15 + 1e-4

SHAPES = {
    "linear": lambda r, e: 3.0 * (r - e),
    "concave": lambda r, e: 1.0 - (e / r) ** 2,
    "convex": lambda r, e: torch.exp(-2.0 * e / r) - math.exp(-2.0),
    "sqrt": lambda r, e: torch.sqrt(r) - torch.sqrt(e),
    "piecewise": lambda r, e: torch.minimum(2 * (r - e), 0.5 * (r - e) + 0.01 * torch.relu(0.5 * r - e)),
    "flat-cubic": lambda r, e: 1e3 * (r - e) ** 3 + 1e-3 * (r - e),
}


def _search(shape, eps_max=0.1, **kw):
    f = SHAPES[shape]
    calls = []

    def fn(idx, eps):
        calls.append(idx.numel())
        return f(ROOTS[idx], eps.double())

    f0 = f(ROOTS, torch.zeros(N, dtype=torch.float64))
    return root_search(fn, eps_max, rtol=RTOL, atol=0.0, f0=f0, **kw), f, calls


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_synthetic_root_on_certified_side(shape):
    res, f, calls = _search(shape)
    r = res.radius
    assert res.converged.all()
    # Sound: every positive radius is a point where f > 0 was observed.
    assert (f(ROOTS, r)[r > 0] > 0).all()
    inside = ROOTS < 0.1
    assert (r[inside] <= ROOTS[inside]).all()
    assert (r[inside] >= ROOTS[inside] * (1 - RTOL)).all()
    assert (r[~inside] == 0.1).all() and res.certified_at_max[~inside].all()
    assert (res.passes[~inside] == 1).all()
    assert int(res.passes.sum()) == sum(calls)  # only active samples are evaluated


def test_synthetic_beats_bisection():
    # Bisection needs ~log2(0.1 / (1e-4 * root)) + 1 ≈ 15 passes here.
    for shape in ("linear", "piecewise", "sqrt", "concave"):
        res, _, _ = _search(shape)
        assert res.passes.double().mean() <= 8, shape


def test_non_monotone_answer_is_observed_certified():
    # f > 0 on [0, .03) and on (.05, .07), not certified elsewhere: any answer must be observed certified.
    def f(e):
        return torch.where((e < 0.03) | ((e > 0.05) & (e < 0.07)), 1.0 - e, -1.0 - e)

    seen = {}

    def fn(idx, eps):
        val = f(eps.double())
        for e, v in zip(eps.tolist(), val.tolist(), strict=True):
            seen[e] = v
        return val

    res = root_search(fn, 0.1, f0=torch.ones(3, dtype=torch.float64), init=torch.tensor([0.01, 0.06, 0.2]))
    for r in res.radius.tolist():
        assert r == 0 or seen[r] > 0


def test_warm_start_snap_and_caps():
    f = SHAPES["linear"]

    def fn(idx, eps):
        return f(ROOTS[idx], eps.double())

    f0 = f(ROOTS, torch.zeros(N, dtype=torch.float64))
    cold = root_search(fn, 0.1, rtol=RTOL, f0=f0)
    warm = root_search(fn, 0.1, rtol=RTOL, f0=f0, init=ROOTS * 1.01)
    assert warm.passes.double().mean() <= cold.passes.double().mean()
    assert (f(ROOTS, warm.radius)[warm.radius > 0] > 0).all()
    grid = [0.01 * k for k in range(11)]
    snapped = root_search(fn, 0.1, rtol=RTOL, f0=f0, snap=grid)
    for g in grid:  # radius >= g  <=>  f(g) > 0, exactly
        assert torch.equal(snapped.radius >= g, f(ROOTS, torch.tensor(g, dtype=torch.float64)) > 0)
    zero = root_search(fn, 0.0, f0=f0)
    assert (zero.radius == 0).all() and (zero.passes == 0).all()
    bad = root_search(fn, 0.1, f0=-f0.abs())
    assert (bad.radius == 0).all() and (bad.passes == 0).all()
    capped = root_search(fn, 0.1, f0=f0, max_passes=2)
    assert (capped.passes <= 2).all() and (f(ROOTS, capped.radius)[capped.radius > 0] > 0).all()
    with pytest.raises(InvalidInput):
        root_search(fn, 0.1, rtol=0.0, f0=f0)


def _net(name, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = ibp_init(create_model(name, (1, 28, 28), 10)).to(dtype)
    x = torch.rand(48, 1, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    with torch.no_grad():  # settle the BatchNorm running statistics on data
        model.train()
        for _ in range(3):
            model(x)
    model.eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 10  # a few misclassified samples
    return model, x, y


@pytest.mark.parametrize("name", ["mlp", "cnn3"])
def test_real_net_radii_recertify_and_are_tight(name):
    model, x, y = _net(name)
    eps_max = 0.05
    res = certified_radii(model, x, y, eps_max, "ibp", rtol=RTOL, atol=0.0)
    r = res.radius
    assert (r[:4] == 0).all() and (res.passes[:4] == 0).all()
    pos = r > 0
    assert pos.sum() > 20
    lower = margin_bounds(model, x[pos], y[pos], r[pos], "ibp").lower
    assert (lower.min(1).values > 0).all()
    below = pos & (r < eps_max)
    lower = margin_bounds(model, x[below], y[below], r[below] * (1 + 2 * RTOL), "ibp").lower
    assert not (lower.min(1).values > 0).any()
    assert res.passes[pos].double().mean() <= 8


def test_float32_train_mode_and_zero_cap():
    model, x, y = _net("cnn3", seed=1, dtype=torch.float32)
    model.train()
    with torch.no_grad():
        logits, stats = clean_forward(model, x)
        y = logits.argmax(1)
        y[:4] = (y[:4] + 1) % 10
        before = model[2].running_mean.clone()
        res = certified_radii(model, x, y, 0.05, logits=logits, bn_stats=stats)
    assert res.radius.dtype == torch.float32
    assert torch.equal(model[2].running_mean, before)  # the search leaves running statistics alone
    pos = res.radius > 0
    with torch.no_grad():
        lower = margin_bounds(model, x[pos], y[pos], res.radius[pos], bn_stats=stats).lower
    assert (lower.min(1).values > 0).all()
    # Same radii when the batch statistics are recomputed inside (no bn_stats given).
    with torch.no_grad():
        again = certified_radii(model, x, y, 0.05, logits=logits)
    assert (res.radius > 0).sum() > 20
    assert torch.allclose(again.radius, res.radius, rtol=1e-3, atol=1e-6)
    zero = certified_radii(model.eval(), x, y, 0.0)
    assert (zero.radius == 0).all() and (zero.passes == 0).all()


def test_deadline_stops_the_search_soundly():
    import time

    f = SHAPES["linear"]

    def fn(idx, eps):
        return f(ROOTS[idx], eps.double())

    f0 = f(ROOTS, torch.zeros(N, dtype=torch.float64))
    res = root_search(fn, 0.1, f0=f0, deadline=time.monotonic() - 1.0)
    assert (res.radius == 0).all() and (res.passes == 0).all() and not res.converged.any()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_predict_mode_stays_certified_and_saves_passes(shape):
    """Training mode: every radius certified, close to the root on smooth shapes, fewer passes."""
    exact, f, _ = _search(shape)
    res, _, calls = _search(shape, predict=True)
    r = res.radius
    assert (f(ROOTS, r)[r > 0] > 0).all() and (r <= ROOTS).all()
    assert int(res.passes.sum()) == sum(calls)
    assert int(res.passes.sum()) <= int(exact.passes.sum())
    if shape in ("linear", "concave", "convex", "sqrt"):  # smooth: the secant estimate is reliable
        inside = ROOTS < 0.1
        assert float(r[inside].sum() / ROOTS[inside].sum()) >= 1 - 2 * RTOL
        assert res.passes.double().mean() < exact.passes.double().mean()


def _quadratic(beta: torch.Tensor):
    """``f0 (1 - (1 + beta) t + beta t^2)`` with ``t = eps / root``: the curvature model, exactly."""
    f0 = 1.0 + torch.arange(N, dtype=torch.float64) % 7

    def f(idx, eps):
        t = eps.double() / ROOTS[idx]
        return f0[idx] * (1 - (1 + beta[idx]) * t + beta[idx] * t * t)

    return f, f0


def test_curvature_is_measured_and_lands_the_second_probe():
    """The search reports each root's normalised curvature; given it, the probe after a warm start
    solves the model, so on exact model functions the second probe certifies within the tolerance."""
    beta = -0.8 * torch.rand(N, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f, f0 = _quadratic(beta)
    cold = root_search(f, 0.2, rtol=1e-2, f0=f0, predict=True)
    measured = cold.curvature
    assert torch.isfinite(measured).all()
    assert torch.allclose(measured, beta, atol=0.03)  # beta * (radius / root)^2 with radius within 1 %
    init = ROOTS * 0.8
    plain = root_search(f, 0.2, rtol=1e-2, f0=f0, init=init, predict=True)
    model = root_search(f, 0.2, rtol=1e-2, f0=f0, init=init, predict=True, curvature=measured)
    for res in (plain, model):  # sound either way: every radius certified, within the tolerance
        assert (f(torch.arange(N), res.radius) > 0).all() and (res.radius <= ROOTS).all()
        assert (res.radius >= ROOTS * (1 - 1.5e-2)).all()
    assert (model.passes == 2).float().mean() >= 0.9
    assert torch.allclose(model.curvature, beta, atol=0.03)  # measured again, through the warm start
    assert model.passes.double().mean() < plain.passes.double().mean()


def test_wrong_curvature_stays_sound():
    """A curvature from another function only moves probes: radii stay certified and close."""
    f, f0 = _quadratic(torch.full((N,), -0.5, dtype=torch.float64))
    wrong = 4.0 * torch.rand(N, generator=torch.Generator().manual_seed(2), dtype=torch.float64) - 3.0
    wrong[::5] = float("nan")
    res = root_search(f, 0.2, rtol=1e-2, f0=f0, init=ROOTS * 0.7, predict=True, curvature=wrong, max_passes=11)
    assert (f(torch.arange(N), res.radius) > 0).all() and (res.radius <= ROOTS).all()
    assert float(res.radius.sum() / ROOTS.sum()) >= 0.98
    assert res.passes.double().mean() <= 5


def test_certified_warm_start_extrapolates_before_the_cap():
    """Two certified probes just below a root far under the cap (a mildly convex f, so each secant
    undershoots) are followed by another extrapolation, not by a wasted probe at the cap."""
    f, f0 = _quadratic(torch.full((N,), 0.3, dtype=torch.float64))
    probes = []

    def fn(idx, eps):
        probes.append(eps.clone())
        return f(idx, eps)

    res = root_search(fn, 1.0, rtol=1e-2, f0=f0, init=ROOTS * 0.9, predict=True)
    assert (f(torch.arange(N), res.radius) > 0).all()
    assert all(bool((p < 0.5).all()) for p in probes)  # every root is below 0.16: the cap is never probed
