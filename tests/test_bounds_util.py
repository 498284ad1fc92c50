"""Shared helpers for the bound-engine tests: tiny models, margins, a local PGD and an exact MILP oracle.

The oracle is independent of the engine: it builds dense affine maps from the model's own modules,
computes its own big-M interval bounds, and solves one MILP per margin with ``scipy.optimize.milp``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from actbench.models import Normalize

METHODS = ("ibp", "crown-ibp", "crown")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread avoids thread spin-wait on a shared 2-core machine (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact margins ``z_y - z_t`` for ``t != y`` (increasing t), ``[B, K-1]``."""
    z = model(x)
    k = z.shape[1]
    mask = torch.ones_like(z, dtype=torch.bool)
    mask[torch.arange(len(y)), y] = False
    return (z.gather(1, y[:, None]) - z)[mask].view(len(y), k - 1)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running stats and affine parameters for every BatchNorm (so eval mode is non-trivial)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g) * 0.5 + 1.0)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def tiny_fc(n_in: int = 6, hidden: int = 8, k: int = 3, bn: bool = False, depth: int = 2) -> nn.Sequential:
    """Input [1, 1, n_in]: Normalize, Flatten, ``depth`` x (Linear, [BN], ReLU), Linear."""
    layers: list[nn.Module] = [Normalize([0.4], [0.3]), nn.Flatten()]
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden)] + ([nn.BatchNorm1d(hidden)] if bn else []) + [nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, k))
    return nn.Sequential(*layers)


def tiny_conv(bn: bool = False, k: int = 3) -> nn.Sequential:
    """Input [1, 6, 6]: conv(2, k3, s2, p1) -> [2, 3, 3] (needs output_padding 1 to invert), avgpool(2, s1)
    -> [2, 2, 2], conv(3, k2) -> [3, 1, 1], fc 6, fc k; nested Sequential and Dropout included."""
    bn2 = (lambda c: [nn.BatchNorm2d(c)]) if bn else (lambda c: [])
    return nn.Sequential(
        Normalize([0.5], [0.25]),
        nn.Conv2d(1, 2, 3, stride=2, padding=1), *bn2(2), nn.ReLU(),
        nn.AvgPool2d(2, stride=1),
        nn.Sequential(nn.Conv2d(2, 3, 2), *bn2(3), nn.ReLU()),
        nn.Flatten(), nn.Linear(3, 6), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(6, k),
    )  # fmt: skip


def lightly_train(model: nn.Module, in_shape: tuple[int, ...], k: int, seed: int, steps: int = 25) -> nn.Module:
    """A few gradient steps on a random separable task, so weights are not purely random (manual SGD:
    torch.optim's first use costs seconds of imports)."""
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(in_shape))
    proj = torch.randn(n, k, generator=g)
    model.train()
    for _ in range(steps):
        x = torch.rand(32, *in_shape, generator=g)
        y = (x.flatten(1) @ proj).argmax(1)
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, grad in zip(model.parameters(), grads, strict=True):
                p -= 0.2 * grad
    return model.eval()


def pgd_min_margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor,
                   steps: int = 30, restarts: int = 2, seed: int = 0) -> torch.Tensor:
    """Smallest margin per (sample, class) found by signed-gradient descent inside the box."""
    g = torch.Generator().manual_seed(seed)
    best = margins(model, x, y).detach()
    for _ in range(restarts):
        z = (xl + (xu - xl) * torch.rand(x.shape, generator=g, dtype=x.dtype)).requires_grad_(True)
        step = (xu - xl).max() / 8
        for _ in range(steps):
            m = margins(model, z, y)
            best = torch.minimum(best, m.detach())
            (grad,) = torch.autograd.grad(m.sum(), z)
            with torch.no_grad():
                z = torch.minimum(torch.maximum(z - step * grad.sign(), xl), xu)
            z.requires_grad_(True)
        best = torch.minimum(best, margins(model, z, y).detach())
    return best


def _flat_modules(model: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for m in model.children():
        out += _flat_modules(m) if isinstance(m, nn.Sequential) else [m]
    return out


def dense_blocks(model: nn.Module, in_shape: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The model (eval mode) as affine blocks ``h -> W h + b`` separated by ReLUs, in float64."""
    model = model.double().eval()
    blocks: list[list[nn.Module]] = [[]]
    for m in _flat_modules(model):
        if isinstance(m, nn.ReLU):
            blocks.append([])
        else:
            blocks[-1].append(m)
    out = []
    shape = in_shape
    with torch.no_grad():
        for block in blocks:
            f = nn.Sequential(*block)
            n = int(np.prod(shape))
            basis = torch.cat([torch.zeros(1, n), torch.eye(n)]).double().view(n + 1, *shape)
            img = f(basis)
            out_shape = tuple(img.shape[1:])
            img = img.flatten(1)
            b = img[0]
            W = (img[1:] - b).T
            out.append((W.numpy(), b.numpy()))
            shape = out_shape
    return out


def exact_min_margins(blocks: list[tuple[np.ndarray, np.ndarray]], xl: np.ndarray, xu: np.ndarray,
                      y: int) -> tuple[np.ndarray, int]:
    """Exact ``min z_y - z_t`` over the box for each ``t != y`` by big-M MILP; also the number of
    unstable ReLUs (under the oracle's own interval bounds)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    n0 = xl.size
    # variable layout: x, then (a_k, d_k) per ReLU layer
    lows, highs, integrality = list(xl), list(xu), [0] * n0
    rows, lbs, ubs = [], [], []
    prev_idx = np.arange(n0)
    lo_prev, hi_prev = xl.astype(float), xu.astype(float)
    unstable_total = 0
    nvars = n0
    specs = []
    for W, b in blocks[:-1]:
        wp, wn = np.clip(W, 0, None), np.clip(W, None, 0)
        lo = wp @ lo_prev + wn @ hi_prev + b - 1e-9
        hi = wp @ hi_prev + wn @ lo_prev + b + 1e-9
        m = len(b)
        a_idx = np.arange(nvars, nvars + m)
        d_idx = np.arange(nvars + m, nvars + 2 * m)
        nvars += 2 * m
        for j in range(m):
            specs.append((a_idx[j], d_idx[j], lo[j], hi[j], W[j], b[j], prev_idx))
        lows += [0.0] * m + [0.0] * m
        highs += list(np.maximum(hi, 0.0)) + [1.0] * m
        integrality += [0] * m + [1] * m
        prev_idx = a_idx
        lo_prev, hi_prev = np.maximum(lo, 0.0), np.maximum(hi, 0.0)
    for a, d, l, u, w, bj, pidx in specs:
        def row(coefs: dict[int, float]) -> np.ndarray:
            r = np.zeros(nvars)
            for i, v in coefs.items():
                r[i] += v
            return r

        base = {int(i): -float(v) for i, v in zip(pidx, w, strict=True)}
        if l >= 0:  # active: a = W h + b
            rows.append(row({**base, a: 1.0}))
            lbs.append(bj)
            ubs.append(bj)
            highs[d] = 0.0
        elif u <= 0:  # inactive: a = 0
            highs[a] = 0.0
            highs[d] = 0.0
        else:
            unstable_total += 1
            rows.append(row({**base, a: 1.0}))  # a >= z
            lbs.append(bj)
            ubs.append(np.inf)
            rows.append(row({**base, a: 1.0, d: -l}))  # a <= z - l (1 - d)
            lbs.append(-np.inf)
            ubs.append(bj - l)
            rows.append(row({a: 1.0, d: -u}))  # a <= u d
            lbs.append(-np.inf)
            ubs.append(0.0)
    W, b = blocks[-1]
    k = len(b)
    result = []
    constraints = [LinearConstraint(np.array(rows), lbs, ubs)] if rows else []
    for t in range(k):
        if t == y:
            continue
        c = np.zeros(nvars)
        c[prev_idx] = W[y] - W[t]
        res = milp(c, constraints=constraints, integrality=np.array(integrality),
                   bounds=Bounds(np.array(lows), np.array(highs)),
                   options={"mip_rel_gap": 0.0, "presolve": True})
        assert res.status == 0, res.message
        result.append(res.fun + b[y] - b[t])
    return np.array(result), unstable_total


def test_oracle_matches_enumeration_on_affine_net():
    """Without ReLUs the MILP is an LP whose optimum is the analytic box minimum."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    blocks = dense_blocks(model, (4,))
    xl, xu = np.zeros(4), np.full(4, 0.5)
    got, _ = exact_min_margins(blocks, xl, xu, 1)
    W, b = blocks[0]
    want = [(np.minimum((W[1] - W[t]) * xl, (W[1] - W[t]) * xu)).sum() + b[1] - b[t] for t in (0, 2)]
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_oracle_finds_known_relu_minimum():
    """z = relu(x) - relu(-x) = x on [-1, 2]; margin z_0 - z_1 with z_1 = 0.5 has minimum -1.5."""
    model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
        model[2].bias.copy_(torch.tensor([0.0, 0.5]))
    got, unstable = exact_min_margins(dense_blocks(model, (1,)), np.array([-1.0]), np.array([2.0]), 0)
    assert unstable == 2
    assert got[0] == pytest.approx(-1.5, abs=1e-6)
