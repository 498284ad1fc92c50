"""Certified-radius search: bound passes per sample and samples/second, root search vs plain bisection.

Trains a cnn3 on Fashion-MNIST for a few hundred IBP steps (so radii are non-trivial), then computes
IBP certified radii (float64, eps_max 0.1, relative tolerance 1e-4) of test samples three ways:
actbench's safeguarded root search, the same search warm-started near the answer (what training sees
with last epoch's radii), and plain bisection with the same stopping rule. Checks the answers agree
within the tolerance and prints one table. Target: <= 8 passes per sample (bisection ~14).

Run: ``.venv/bin/python benchmarks/certify.py [--steps 300] [--samples 500]``
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from actbench.bounds import margin_bounds
from actbench.certify.radius import certified_radii, clean_margin
from actbench.data import load_splits
from actbench.models import create_model, ibp_init

EPS_MAX, RTOL = 0.1, 1e-4


def train(steps: int, seed: int = 0) -> torch.nn.Module:
    """A few hundred steps of IBP training (eps ramped to 0.1, half clean CE) of cnn3."""
    splits = load_splits("fashion-mnist", val_size=1000, train_subset=20000, augment=False)
    torch.manual_seed(seed)
    model = ibp_init(create_model("cnn3", (1, 28, 28), 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        x, y = splits.train.tensors(torch.randint(0, len(splits.train), (128,), generator=gen))
        eps = EPS_MAX * min(1.0, 2.0 * step / steps)
        lower = margin_bounds(model, x, y, eps).lower
        robust = F.cross_entropy(torch.cat([torch.zeros_like(lower[:, :1]), -lower], 1), torch.zeros_like(y))
        loss = 0.5 * F.cross_entropy(model(x), y) + 0.5 * robust
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def bisection(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain batched bisection with the same rules: eps_max first, stop at (hi - lo) <= rtol * hi."""
    with torch.no_grad():
        f0 = clean_margin(model(x), y)
        n = x.shape[0]
        lo = torch.zeros(n, dtype=torch.float64)
        hi = torch.full((n,), EPS_MAX, dtype=torch.float64)
        passes = torch.zeros(n, dtype=torch.int64)
        active = f0 > 0
        idx = active.nonzero().squeeze(1)
        cert = margin_bounds(model, x[idx], y[idx], EPS_MAX).lower.min(1).values > 0
        passes[idx] += 1
        lo[idx[cert]] = EPS_MAX
        active[idx[cert]] = False
        while bool(active.any()):
            idx = active.nonzero().squeeze(1)
            mid = 0.5 * (lo[idx] + hi[idx])
            cert = margin_bounds(model, x[idx], y[idx], mid).lower.min(1).values > 0
            passes[idx] += 1
            lo[idx] = torch.where(cert, mid, lo[idx])
            hi[idx] = torch.where(cert, hi[idx], mid)
            active[idx] = (hi[idx] - lo[idx]) > RTOL * hi[idx]
    return lo, passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model = train(args.steps).double()
    print(f"trained cnn3 for {args.steps} IBP steps in {time.perf_counter() - t0:.1f} s")
    test = load_splits("fashion-mnist", val_size=1000, augment=False).test
    x, y = test.tensors(torch.arange(args.samples))
    x = x.double()
    with torch.no_grad():
        correct = clean_margin(model(x), y) > 0

    rows = []
    t = time.perf_counter()
    res = certified_radii(model, x, y, EPS_MAX, "ibp", rtol=RTOL)
    rows.append(("root search", res.radius.double(), res.passes, time.perf_counter() - t))
    guess = res.radius.double() * (1 + 0.05 * torch.randn(args.samples, generator=torch.Generator().manual_seed(1)))
    t = time.perf_counter()
    warm = certified_radii(model, x, y, EPS_MAX, "ibp", rtol=RTOL, init=guess)
    rows.append(("root search, warm start (±5%)", warm.radius.double(), warm.passes, time.perf_counter() - t))
    t = time.perf_counter()
    r_bis, p_bis = bisection(model, x, y)
    rows.append(("plain bisection", r_bis, p_bis, time.perf_counter() - t))

    ref = rows[0][1]
    partial = correct & (ref < EPS_MAX)
    print(f"{args.samples} test samples: clean accuracy {float(correct.double().mean()):.3f}, "
          f"IBP ACR {float(ref.mean()):.4f}, certified at eps_max {float((ref >= EPS_MAX).double().mean()):.3f}, "
          f"partial (root inside the bracket) {int(partial.sum())}")
    print(f"{'method':32s} {'passes/sample':>14s} {'(partial only)':>15s} {'samples/s':>10s} {'ACR':>9s}")
    for name, radius, passes, seconds in rows:
        ran = correct
        per = float(passes[ran].double().mean())
        per_partial = float(passes[partial].double().mean()) if bool(partial.any()) else float("nan")
        print(f"{name:32s} {per:14.2f} {per_partial:15.2f} {args.samples / seconds:10.1f} {float(radius.mean()):9.5f}")
        # Each answer is certified and within the tolerance of the others.
        close = (radius - ref).abs() <= 2 * RTOL * torch.maximum(radius, ref) + 1e-12
        assert bool(close.all()), f"{name}: radii differ from the root search beyond the tolerance"
    ratio = float(rows[2][2][correct].double().mean() / rows[0][2][correct].double().mean())
    print(f"root search vs bisection: {ratio:.2f}x fewer passes, {rows[2][3] / rows[0][3]:.2f}x faster")


if __name__ == "__main__":
    main()
