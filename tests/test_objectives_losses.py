"""Robust CE, the Shi regularisers and SABR's small box (property tests)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from actbench.objectives.losses import REG_TOLERANCE, relu_balance_loss, robust_ce, tightness_loss
from actbench.objectives.sabr import small_box


def test_robust_ce_is_ce_of_worst_case_logits() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 10)
    y = torch.randint(0, 10, (5,))
    margins = torch.stack([torch.cat([logits[i, y[i]] - logits[i, :y[i]], logits[i, y[i]] - logits[i, y[i] + 1:]])
                           for i in range(5)])  # fmt: skip
    assert torch.allclose(robust_ce(margins), F.cross_entropy(logits, y), atol=1e-6)
    lower = torch.tensor([[1.0, 2.0]])
    assert float(robust_ce(lower)) == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-2)))


def test_tightness_matches_formula_and_skips_degenerate_layers() -> None:
    box = (torch.zeros(2, 3), torch.full((2, 3), 0.2))  # Δ0 = 0.1
    wide = (torch.full((2, 4), -1.0), torch.full((2, 4), 1.0))  # Δ = 1 -> relu(0.5 - 0.1)/0.5 = 0.8
    tight = (torch.zeros(2, 4), torch.full((2, 4), 0.1))  # Δ = 0.05 -> relu(0.5 - 2) = 0
    flat = (torch.ones(2, 4), torch.ones(2, 4))  # Δ = 0 -> inf ratio, skipped but counted
    value = tightness_loss([wide, tight, flat], box)
    assert float(value) == pytest.approx((0.8 + 0.0) / 3)


def test_relu_balance_matches_formula() -> None:
    lower = torch.tensor([[0.5, 1.0, -3.0, -1.0]])
    upper = torch.tensor([[1.5, 2.0, -1.0, 1.0]])
    c = (lower + upper) / 2  # [1, 1.5, -2, 0]
    act, inact = (lower > 0).float(), (upper < 0).float()
    rho_mean = (c * act).mean() / -(c * inact).mean()  # 2.5/4 / (2/4) = 1.25 -> 0.8
    dev = (c - c.mean()) ** 2
    rho_var = (dev * act).sum() / (dev * inact).sum()
    sym = lambda r: min(float(r), 1 / float(r))  # noqa: E731
    expected = (max(REG_TOLERANCE - sym(rho_mean), 0) + max(REG_TOLERANCE - sym(rho_var), 0)) / REG_TOLERANCE
    assert float(relu_balance_loss([(lower, upper)])) == pytest.approx(expected)
    # a layer with no inactive units: both ratios are inf, symmetrised to 0 -> full penalty on both terms
    all_active = (torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 3.0, 4.0]]))
    assert float(relu_balance_loss([all_active])) == pytest.approx(2.0)
    # gradients stay finite
    lo = lower.clone().requires_grad_(True)
    relu_balance_loss([(lo, upper), all_active]).backward()
    assert torch.isfinite(lo.grad).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(1e-4, 0.5), lam=st.floats(1e-3, 1.0))
def test_sabr_small_box_inside_clipped_box(seed: int, eps: float, lam: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 1, 5, 5, generator=gen)
    x[0] = 0.0  # pixels on the boundary of [0, 1]
    x[1] = 1.0
    box_lo, box_hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    x_star = box_lo + (box_hi - box_lo) * torch.rand(x.shape, generator=gen)
    lower, upper = small_box(x, x_star, eps, lam)
    assert torch.all(lower >= box_lo) and torch.all(upper <= box_hi) and torch.all(lower <= upper)
    half = (upper - lower) / 2
    expected = torch.minimum(torch.full_like(x, lam * eps), (box_hi - box_lo) / 2)
    assert torch.allclose(half, expected, atol=1e-6)
    # where the clipped box has room, the small box contains the attack point (centre not moved)
    room = (x_star - box_lo >= expected + 1e-6) & (box_hi - x_star >= expected + 1e-6)
    centre = (upper + lower) / 2
    assert torch.allclose(centre[room], x_star[room], atol=1e-6)


def test_sabr_small_box_per_sample_eps() -> None:
    x = torch.full((2, 1, 2, 2), 0.5)
    lower, upper = small_box(x, x, torch.tensor([0.1, 0.2]), 0.5)
    assert torch.allclose((upper - lower)[0], torch.full((1, 2, 2), 0.1))
    assert torch.allclose((upper - lower)[1], torch.full((1, 2, 2), 0.2))
