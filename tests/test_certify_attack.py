"""PGD helper and empirical radii: box containment, BatchNorm untouched, upper bounds of certificates."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_certify_fixtures import fmnist, one_thread, trained_model

from actbench.certify import attack_radii, attack_success, certified_radii, margins, pgd
from actbench.errors import InvalidInput


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def batch():
    _, test, _ = fmnist()
    x, y = test.tensors(torch.arange(32))
    return trained_model("mlp").double(), x.double(), y


def test_pgd_stays_in_the_region(batch):
    model, x, y = batch
    gen = torch.Generator().manual_seed(0)
    with one_thread():
        xa = pgd(model, x, y, 0.05, steps=4, generator=gen)
        assert ((xa - x).abs() <= 0.05 + 1e-15).all() and xa.min() >= 0 and xa.max() <= 1
        eps = torch.linspace(0, 0.1, 32, dtype=torch.float64)
        xa = pgd(model, x, y, eps, loss="margin", steps=4, restarts=2, generator=gen)
        assert ((xa - x).abs() <= eps.view(-1, 1, 1, 1) + 1e-15).all()
        assert torch.equal(xa[0], x[0])  # eps 0: nowhere to go
        lower, upper = (x - 0.08).clamp(0, 1), (x + 0.01).clamp(0, 1)
        xa = pgd(model, x, y, (lower, upper), steps=3, generator=gen)
        assert (xa >= lower).all() and (xa <= upper).all()
    with pytest.raises(InvalidInput):
        pgd(model, x, y, 0.1, loss="hinge")


def test_pgd_increases_the_loss_and_leaves_the_model_alone():
    _, test, _ = fmnist()
    x, y = test.tensors(torch.arange(64))
    model = trained_model("mlp")
    model.train()
    bn = model[3]
    stats = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    with one_thread():
        xa = pgd(model, x, y, 0.05, loss="ce", steps=5, generator=torch.Generator().manual_seed(1))
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert int(bn.num_batches_tracked) == stats[2]
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(xa), y) > F.cross_entropy(model(x), y)


def test_attack_radii_bound_certificates(batch):
    model, x, y = batch
    with one_thread():
        cert = certified_radii(model, x, y, 0.1)
        res = attack_radii(model, x, y, 0.1, steps=8, restarts=1, bisect_steps=4, start=cert.radius,
                           generator=torch.Generator().manual_seed(0))
    wrong = margins(model(x), y) <= 0
    assert (res.radius[wrong] == 0).all() and (res.attacks[wrong] == 0).all()
    assert (res.radius[~wrong] > cert.radius[~wrong]).all()
    finite = torch.isfinite(res.radius) & ~wrong
    assert finite.any()
    with one_thread():  # a finite attack radius is an eps where an attack really succeeded
        hit = attack_success(model, x[finite], y[finite], res.radius[finite], steps=8, restarts=1,
                             generator=torch.Generator().manual_seed(0))
    assert hit.float().mean() > 0.5
    assert math.isinf(float(attack_radii(model, x[:1], y[:1], 0.0).radius[0])) or bool(wrong[0])
