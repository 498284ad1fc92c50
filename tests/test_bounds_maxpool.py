"""MaxPool2d in the bound engine: every method's margin bound against an exact MILP and against sampling.

The oracle is independent of the engine: dense affine maps from the model's own modules, its own interval
bounds, a big-M encoding of ReLU and of max (``y >= x_i``, ``y <= x_i + (U - l_i)(1 - d_i)``, one
``d_i = 1`` per window), solved with ``scipy.optimize.milp``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_bounds_util import METHODS, lightly_train, one_thread  # noqa: F401
from torch import nn

from actbench.bounds import build_network, margin_bounds
from actbench.bounds.maxpool import MaxPoolLayer
from actbench.errors import UnsupportedLayer
from actbench.models import Normalize


def pooled_cnn(overlap: bool, k: int = 3) -> nn.Sequential:
    """Input [1, 6, 6]. ``overlap``: a padded stride-1 pool straight after a convolution (before its ReLU)."""
    second = (nn.MaxPool2d(2, stride=1, padding=1), nn.ReLU()) if overlap else (nn.ReLU(), nn.MaxPool2d(2))
    width = 3 * 3 * 3 if overlap else 3 * 1 * 1
    return nn.Sequential(
        Normalize([0.5], [0.25]),
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # [2, 3, 3]
        nn.Conv2d(2, 3, 2), *second,                                    # [3, 3, 3] or [3, 1, 1]
        nn.Flatten(), nn.Linear(width, 5), nn.ReLU(), nn.Linear(5, k),
    )  # fmt: skip


def _affine(modules: list[nn.Module], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    f = nn.Sequential(*modules).double()
    n = int(np.prod(shape))
    with torch.no_grad():
        img = f(torch.cat([torch.zeros(1, n), torch.eye(n)]).double().view(n + 1, *shape))
    out_shape = tuple(img.shape[1:])
    img = img.flatten(1)
    return (img[1:] - img[0]).T.numpy(), img[0].numpy(), out_shape


def _windows(pool: nn.MaxPool2d, shape: tuple[int, int, int]) -> list[list[int]]:
    c, h, w = shape
    k, s, p = ((v, v) if isinstance(v, int) else v for v in (pool.kernel_size, pool.stride, pool.padding))
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    out = []
    for ch in range(c):
        for i in range(oh):
            for j in range(ow):
                out.append([ch * h * w + r * w + q for r in range(i * s[0] - p[0], i * s[0] - p[0] + k[0])
                            for q in range(j * s[1] - p[1], j * s[1] - p[1] + k[1]) if 0 <= r < h and 0 <= q < w])
    return out, (c, oh, ow)


def exact_min_margins(model: nn.Sequential, shape, xl: np.ndarray, xu: np.ndarray, y: int) -> tuple[np.ndarray, int]:
    """Exact ``min z_y - z_t`` per ``t != y`` over the box; also the count of undecided pools + unstable ReLUs."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    lows, highs, integ = list(xl), list(xu), [0] * xl.size
    rows, lbs, ubs = [], [], []
    cur, lo, hi = np.arange(xl.size), xl.astype(float), xu.astype(float)
    loose = 0

    def new(n: int, low, high, integer: bool = False) -> np.ndarray:
        start = len(lows)
        lows.extend(np.broadcast_to(low, n))
        highs.extend(np.broadcast_to(high, n))
        integ.extend([int(integer)] * n)
        return np.arange(start, start + n)

    def constrain(coefs: dict[int, float], low: float, high: float) -> None:
        rows.append(coefs)
        lbs.append(low)
        ubs.append(high)

    pending: list[nn.Module] = []
    for m in [*model, None]:
        if m is not None and not isinstance(m, nn.ReLU | nn.MaxPool2d):
            pending.append(m)
            continue
        if pending:  # z = W h + b as equalities
            W, b, shape = _affine(pending, shape)
            pending = []
            wp, wn = np.clip(W, 0, None), np.clip(W, None, 0)
            zlo, zhi = wp @ lo + wn @ hi + b - 1e-9, wp @ hi + wn @ lo + b + 1e-9
            z = new(len(b), zlo, zhi)
            for j in range(len(b)):
                constrain({int(z[j]): 1.0, **{int(cur[i]): -float(W[j, i]) for i in np.nonzero(W[j])[0]}}, b[j], b[j])
            cur, lo, hi = z, zlo, zhi
        if m is None:
            break
        if isinstance(m, nn.ReLU):
            a = new(len(cur), 0.0, np.maximum(hi, 0))
            d = new(len(cur), 0.0, 1.0, integer=True)
            for j in range(len(cur)):
                zj, aj, dj, l, u = int(cur[j]), int(a[j]), int(d[j]), lo[j], hi[j]
                if l >= 0:
                    constrain({aj: 1.0, zj: -1.0}, 0.0, 0.0)
                elif u <= 0:
                    highs[aj] = 0.0
                else:
                    loose += 1
                    constrain({aj: 1.0, zj: -1.0}, 0.0, np.inf)
                    constrain({aj: 1.0, zj: -1.0, dj: -l}, -np.inf, -l)  # a <= z - l (1 - d)
                    constrain({aj: 1.0, dj: -u}, -np.inf, 0.0)
            cur, lo, hi = a, np.maximum(lo, 0), np.maximum(hi, 0)
        else:
            windows, shape = _windows(m, shape)
            ylo = np.array([max(lo[i] for i in w) for w in windows])
            yhi = np.array([max(hi[i] for i in w) for w in windows])
            out = new(len(windows), ylo, yhi)
            for o, w in enumerate(windows):
                best = max(w, key=lambda i: lo[i])
                if all(lo[best] >= hi[i] for i in w if i != best):
                    constrain({int(out[o]): 1.0, int(cur[best]): -1.0}, 0.0, 0.0)
                    continue
                loose += 1
                ds = new(len(w), 0.0, 1.0, integer=True)
                constrain({int(dd): 1.0 for dd in ds}, 1.0, 1.0)
                for i, dd in zip(w, ds, strict=True):
                    constrain({int(out[o]): 1.0, int(cur[i]): -1.0}, 0.0, np.inf)
                    big = yhi[o] - lo[i]
                    constrain({int(out[o]): 1.0, int(cur[i]): -1.0, int(dd): big}, -np.inf, big)
            cur, lo, hi = out, ylo, yhi
    nvars = len(lows)
    dense = np.zeros((len(rows), nvars))
    for r, coefs in enumerate(rows):
        for i, v in coefs.items():
            dense[r, i] += v
    results = []
    for t in range(len(cur)):
        if t == y:
            continue
        c = np.zeros(nvars)
        c[cur[y]], c[cur[t]] = 1.0, -1.0
        res = milp(c, constraints=[LinearConstraint(dense, lbs, ubs)], integrality=np.array(integ),
                   bounds=Bounds(np.array(lows), np.array(highs)), options={"mip_rel_gap": 0.0})  # fmt: skip
        assert res.status == 0, res.message
        results.append(res.fun)
    return np.array(results), loose


@pytest.mark.parametrize("overlap", [False, True], ids=["pool-after-relu", "overlapping-padded-pool"])
def test_maxpool_bounds_below_the_exact_minimum(overlap):
    checked = tight = 0
    for seed in range(2):
        torch.manual_seed(seed)
        model = pooled_cnn(overlap)
        lightly_train(model, (1, 6, 6), 3, seed)
        model = model.double().eval()
        g = torch.Generator().manual_seed(10 + seed)
        x = torch.rand(2, 1, 6, 6, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (2,), generator=g)
        for eps in (0.02, 0.05, 1e-5):  # the MILP grows slow (tens of seconds) beyond eps 0.1
            with torch.no_grad():
                bounds = {m: margin_bounds(model, x, y, eps, method=m).lower for m in METHODS}
            xl, xu = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
            for i in range(2):
                exact, loose = exact_min_margins(model, (1, 6, 6), xl[i].flatten().numpy(), xu[i].flatten().numpy(),
                                                 int(y[i]))  # fmt: skip
                for method, lb in bounds.items():
                    got = lb[i].numpy()
                    assert (got <= exact + 1e-6).all(), f"{method} eps={eps}: {got} > exact {exact}"
                    if loose == 0 and method != "ibp":  # all pools decided, all ReLUs stable: exact
                        np.testing.assert_allclose(got, exact, atol=1e-6, err_msg=method)
                checked += 1
                tight += loose == 0
    assert checked == 12 and tight >= 1


def test_maxpool_bounds_hold_on_sampled_points():
    torch.manual_seed(0)
    model = pooled_cnn(True).double().eval()
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0])
    eps = 0.15
    with torch.no_grad():
        bounds = {m: margin_bounds(model, x, y, eps, method=m).lower for m in METHODS}
        ibp = margin_bounds(model, x, y, eps, method="ibp")
        g = torch.Generator().manual_seed(2)
        xl, xu = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
        for _ in range(200):
            corner = torch.rand(x.shape, generator=g, dtype=torch.float64) < 0.5
            for pt in (xl + (xu - xl) * torch.rand(x.shape, generator=g, dtype=torch.float64),
                       torch.where(corner, xl, xu)):
                z = model(pt)
                margin = (z.gather(1, y[:, None]) - z)
                margin = margin[torch.arange(4)[:, None], torch.tensor([[t for t in range(3) if t != yy]
                                                                        for yy in y.tolist()])]  # fmt: skip
                for lb in bounds.values():
                    assert bool((lb <= margin + 1e-9).all())
                h = model[:3](pt)  # the first pool's input interval contains the sampled values
                lo, hi = ibp.relu_bounds[1]
                assert bool(((h >= lo - 1e-9) & (h <= hi + 1e-9)).all())


def test_maxpool_layer_options():
    net = build_network(nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1)))
    assert isinstance(net.layers[0], MaxPoolLayer) and net.layers[0].stride == (2, 2)
    for bad in (nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(2, dilation=2), nn.MaxPool2d(2, return_indices=True)):
        with pytest.raises(UnsupportedLayer, match="MaxPool2d"):
            build_network(nn.Sequential(bad))


def test_maxpool_with_batchnorm_in_train_mode_and_batches():
    """Batch statistics flow through the pool (the functional clean pass), and per-sample results match."""
    torch.manual_seed(0)
    model = nn.Sequential(Normalize([0.5], [0.25]), nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.MaxPool2d(2),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).double()  # fmt: skip
    x = torch.rand(5, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 1, 0])
    model.train()
    with torch.no_grad():
        for method in METHODS:
            assert margin_bounds(model, x, y, 0.05, method=method).lower.shape == (5, 2)
    model.eval()
    with torch.no_grad():
        for method in METHODS:
            batch = margin_bounds(model, x, y, 0.05, method=method).lower
            single = torch.cat([margin_bounds(model, x[i:i + 1], y[i:i + 1], 0.05, method=method).lower
                                for i in range(5)])  # fmt: skip
            torch.testing.assert_close(batch, single, rtol=0, atol=1e-12)
