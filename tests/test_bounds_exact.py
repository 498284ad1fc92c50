"""Every method's margin lower bound against the exact minimum margin from a MILP (big-M) oracle."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_bounds_util import (
    METHODS,
    dense_blocks,
    exact_min_margins,
    lightly_train,
    one_thread,  # noqa: F401
    randomize_bn,
    tiny_conv,
    tiny_fc,
)

from actbench.bounds import margin_bounds

CASES = [
    # (name, builder, input shape, trained)
    ("fc", lambda: tiny_fc(), (1, 1, 6), False),
    ("fc-deep", lambda: tiny_fc(n_in=5, hidden=7, k=4, depth=3), (1, 1, 5), False),
    ("fc-bn", lambda: tiny_fc(bn=True), (1, 1, 6), False),
    ("fc-trained", lambda: tiny_fc(), (1, 1, 6), True),
    ("fc-bn-trained", lambda: tiny_fc(bn=True), (1, 1, 6), True),
    ("conv", lambda: tiny_conv(), (1, 6, 6), False),
    ("conv-bn", lambda: tiny_conv(bn=True), (1, 6, 6), False),
    ("conv-bn-trained", lambda: tiny_conv(bn=True), (1, 6, 6), True),
]
EPS = (0.02, 0.05, 0.1, 0.25)


def _model(builder, shape, trained: bool, seed: int):
    torch.manual_seed(seed)
    model = randomize_bn(builder(), seed)
    if trained:
        k = model[-1].out_features
        lightly_train(model, shape, k, seed)
    return model.double().eval()


@pytest.mark.parametrize(("name", "builder", "shape", "trained"), CASES, ids=[c[0] for c in CASES])
def test_bounds_below_exact_minimum(name, builder, shape, trained):
    """Sound on ~hundreds of (sample, eps, class) cases; exact for CROWN methods when all ReLUs are stable."""
    checked = stable_cases = 0
    for seed in range(3):
        model = _model(builder, shape, trained, seed)
        blocks = dense_blocks(copy.deepcopy(model), shape)
        k = model[-1].out_features
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.rand(2, *shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, k, (2,), generator=g)
        for eps in (*EPS, 1e-4):
            with torch.no_grad():
                bounds = {m: margin_bounds(model, x, y, eps, method=m).lower for m in METHODS}
            xl, xu = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
            for i in range(2):
                exact, unstable = exact_min_margins(blocks, xl[i].flatten().numpy(), xu[i].flatten().numpy(),
                                                    int(y[i]))
                for method, lb in bounds.items():
                    got = lb[i].numpy()
                    assert (got <= exact + 1e-6).all(), f"{name} {method} eps={eps}: {got} > exact {exact}"
                    if unstable == 0 and method != "ibp":
                        np.testing.assert_allclose(got, exact, atol=1e-6, err_msg=f"{name} {method}")
                checked += 1
                stable_cases += unstable == 0
    assert checked == 30 and stable_cases >= 1


def test_crown_tighter_than_ibp_on_average():
    """Not required for soundness, but a broken relaxation usually shows up as a looser bound."""
    model = _model(CASES[0][1], (1, 1, 6), False, 0)
    x = torch.rand(16, 1, 1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(16, dtype=torch.long)
    with torch.no_grad():
        lb = {m: margin_bounds(model, x, y, 0.1, method=m).lower for m in METHODS}
    assert lb["crown"].mean() >= lb["crown-ibp"].mean() - 1e-9
    assert lb["crown"].mean() > lb["ibp"].mean()
    r = margin_bounds(model, x, y, 0.1, method="crown")
    ibp_r = margin_bounds(model, x, y, 0.1, method="ibp")
    for (l1, u1), (l2, u2) in zip(r.relu_bounds, ibp_r.relu_bounds, strict=True):
        assert (l1 >= l2 - 1e-12).all() and (u1 <= u2 + 1e-12).all()
