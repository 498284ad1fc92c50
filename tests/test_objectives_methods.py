"""Every objective: finite loss that falls over a few steps, counted propagations, method specifics."""

from __future__ import annotations

import pytest
import torch
from test_train_fixtures import make_model, small_track, synthetic_splits

import actbench.objectives.adaptive as adaptive_module
from actbench.bounds import clean_forward, margin_bounds
from actbench.certify import clean_margin
from actbench.objectives import create_objective, list_methods, load_method
from actbench.objectives.adaptive import MIN_RADIUS
from actbench.objectives.base import StepContext
from actbench.objectives.cost import PropagationCounter
from actbench.objectives.crown_ibp import crown_weight

EPS = 0.1


def _batch(n: int = 64):
    x, y = synthetic_splits(n_train=n, n_val=8).train.tensors()
    return x, y, torch.arange(n)


def _ctx(index, eps_t=EPS, reg_phase=False, reg_weight=0.0, step=0, counter=None) -> StepContext:
    return StepContext(eps_t=eps_t, eps=EPS, epoch=3, step=step, reg_phase=reg_phase, reg_weight=reg_weight,
                       indices=index, counter=counter or PropagationCounter(), num_classes=10)  # fmt: skip


def _objective(name: str, **overrides):
    track = small_track()
    objective = create_objective(load_method(name, track.name, overrides), track)
    objective.setup(64, "cpu")
    return objective


@pytest.mark.parametrize("name", sorted(list_methods()))
def test_loss_finite_and_falls(name: str) -> None:
    torch.manual_seed(0)
    x, y, index = _batch()
    model = make_model(1)
    objective = _objective(name)
    if objective.ibp_init:
        from actbench.models import ibp_init

        ibp_init(model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    eps_t = 0.02  # a small mid-ramp eps, so a few steps visibly lower every robust loss
    losses, radii = [], []
    for step in range(8):
        loss, stats = objective.loss(model, x, y, _ctx(index, eps_t=eps_t, step=step))
        assert torch.isfinite(loss) and loss.dim() == 0 and all(map(lambda v: v == v, stats.values()))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        losses.append(float(loss.detach()))
        radii.append(stats.get("adaptive_radius", 0.0))
    if name == "adaptive":
        # the adaptive radii grow as samples become certifiable, which keeps the loss up (the robust CE
        # at a sample's own certified radius is >= log 2): the loss falls, then the radii grow
        assert min(losses) < 0.85 * losses[0] and radii[-1] > 2 * radii[0], (losses, radii)
    else:
        assert losses[-1] < 0.8 * losses[0], losses
    # regulariser phase at eps 0 (the warm-up epoch) also gives a finite loss with a gradient
    loss, stats = objective.loss(model, x, y, _ctx(index, eps_t=0.0, reg_phase=True, reg_weight=1.0))
    assert torch.isfinite(loss) and loss.requires_grad
    if objective.shi_reg:
        assert "reg_loss" in stats


def test_propagation_costs_of_one_step() -> None:
    x, y, index = _batch()
    counts, stats = {}, {}
    for name in ("standard", "ibp", "crown_ibp", "pgd", "adaptive"):
        counter = PropagationCounter()
        _, stats[name] = _objective(name).loss(make_model(0).train(), x, y, _ctx(index, eps_t=0.05, counter=counter))
        counts[name] = counter.total / 64
    assert counts["standard"] == 2  # forward + backward
    assert counts["ibp"] == 2 + 4  # clean forward with grad + IBP with grad
    assert counts["crown_ibp"] == 2 + 2 * (2 + 9)  # beta = 0.5 > 0: CROWN-IBP pass with grad
    assert counts["pgd"] == 21 + 2  # 10 steps (+ the scoring forward) and the training forward
    # clean pass with grad, no-grad search passes (2 each), IBP with grad on the samples with radius > 0
    searched = stats["adaptive"]["radius_passes"]
    robust = stats["adaptive"]["bound_passes"] - searched
    assert counts["adaptive"] == pytest.approx(2 + 2 * searched + 4 * robust)


def test_crown_ibp_weight_decays_to_plain_ibp() -> None:
    assert crown_weight(0.0, EPS) == 1.0 and crown_weight(EPS / 2, EPS) == 0.5 and crown_weight(EPS, EPS) == 0.0
    x, y, index = _batch()
    model = make_model(0).train()
    torch.manual_seed(0)
    crown, _ = _objective("crown_ibp").loss(model, x, y, _ctx(index, eps_t=EPS))
    ibp, _ = _objective("ibp").loss(model, x, y, _ctx(index, eps_t=EPS))
    assert torch.allclose(crown, ibp)


class TestAdaptiveRadii:
    """ACERT.md §2.1 steps 3-4 on a model that classifies part of the batch correctly."""

    @pytest.fixture(scope="class")
    def trained(self):
        torch.manual_seed(0)
        x, y, index = _batch()
        model = make_model(2).train()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        standard = _objective("standard")
        for step in range(6):
            loss, _ = standard.loss(model, x, y, _ctx(index, step=step))
            opt.zero_grad()
            loss.backward()
            opt.step()
        y = y.clone()
        y[:16] = (y[:16] + 1) % 10  # a quarter of the batch is now misclassified
        return model, x, y, index

    def test_radii_zero_capped_and_certified(self, trained) -> None:
        model, x, y, index = trained
        objective = _objective("adaptive", train_rtol=1e-3)
        eps_t = 0.01
        with torch.no_grad():
            logits, stats = clean_forward(model, x)
        correct = logits.argmax(1) == y
        assert 0 < int(correct.sum()) < 64
        radius, passes = objective.radii(model, x, y, logits, stats, _ctx(index, eps_t=eps_t))
        assert torch.all(radius[~correct] == 0) and torch.all(passes[~correct] == 0)
        assert torch.all(radius <= eps_t) and bool((radius[correct] > 0).any())
        with torch.no_grad():
            bounds = margin_bounds(model, x[correct], y[correct], radius[correct], bn_stats=stats)
        assert bool(bounds.certified.all())
        # a sample not certified at the cap is not certified 1 % beyond its radius (rtol 1e-3)
        inner = correct & (radius < eps_t)
        if bool(inner.any()):
            with torch.no_grad():
                beyond = margin_bounds(model, x[inner], y[inner], radius[inner] * 1.01 + 1e-6, bn_stats=stats)
            assert not bool(beyond.certified.any())
        # radii were cached for the warm start, certified-at-cap samples are left for the cap
        cached = objective.cache[index]
        assert torch.all(torch.isnan(cached[radius == eps_t])) and torch.all(cached[~correct] == 0)

    def test_regulariser_phase_clamp(self, trained) -> None:
        model, x, y, index = trained
        objective = _objective("adaptive")
        with torch.no_grad():
            logits, stats = clean_forward(model, x)
        radius, _ = objective.radii(model, x, y, logits, stats, _ctx(index, eps_t=0.01, reg_phase=True))
        correct = logits.argmax(1) == y
        assert torch.all(radius[~correct] == MIN_RADIUS) and torch.all(radius >= MIN_RADIUS)
        radius0, passes0 = objective.radii(model, x, y, logits, stats, _ctx(index, eps_t=0.0, reg_phase=True))
        assert torch.all(radius0 == MIN_RADIUS) and int(passes0.sum()) == 0
        loss, s = objective.loss(model, x, y, _ctx(index, eps_t=0.0, reg_phase=True, reg_weight=1.0))
        assert s["reg_loss"] > 0 and "robust_loss" in s
        assert float(loss.detach()) == pytest.approx(s["clean_loss"] + s["reg_loss"], rel=1e-5)  # eps 0: L_std + reg

    def test_warm_start_saves_passes_and_keeps_radii(self, trained) -> None:
        model, x, y, index = trained
        with torch.no_grad():
            logits, stats = clean_forward(model, x)
        cold = _objective("adaptive", warm_start=False)
        warm = _objective("adaptive")
        ctx = _ctx(index, eps_t=0.01)
        r_cold, p_cold = cold.radii(model, x, y, logits, stats, ctx)
        warm.radii(model, x, y, logits, stats, ctx)
        r_warm, p_warm = warm.radii(model, x, y, logits, stats, ctx)
        assert int(p_warm.sum()) < int(p_cold.sum())
        assert torch.allclose(r_warm, r_cold, rtol=0.03, atol=2e-6)

    def test_warm_start_follows_margins_and_growth(self, trained) -> None:
        """The next warm start is the last radius times the margin ratio times the median growth."""
        model, x, y, index = trained
        with torch.no_grad():
            logits, stats = clean_forward(model, x)
        objective = _objective("adaptive")
        ctx = _ctx(index, eps_t=0.01)
        radius, _ = objective.radii(model, x, y, logits, stats, ctx)
        correct = logits.argmax(1) == y
        margin = clean_margin(logits.double(), y)
        assert torch.allclose(objective.margins[index][correct], margin[correct].float())
        seen = []
        original = adaptive_module.passes.certified_radii

        def spy(*args, **kwargs):
            seen.append(kwargs["init"])
            return original(*args, **kwargs)

        objective.growth = 1.25
        scaled = logits * torch.linspace(0.8, 1.2, x.shape[0]).unsqueeze(1)  # every margin scaled
        try:
            adaptive_module.passes.certified_radii = spy
            with torch.no_grad():
                objective.radii(model, x, y, scaled, stats, ctx)
        finally:
            adaptive_module.passes.certified_radii = original
        ratio = clean_margin(scaled.double(), y) / margin
        inner = correct & (radius > 0) & (radius < 0.01)
        expected = radius.double() * ratio * 1.25
        assert bool(inner.any()) and torch.allclose(seen[0][inner].double(), expected[inner], rtol=1e-6)

    def test_loss_matches_definition(self, trained) -> None:
        model, x, y, index = trained
        objective = _objective("adaptive", kappa=0.25)
        ctx = _ctx(index, eps_t=0.01)
        loss, s = objective.loss(model, x, y, ctx)
        assert float(loss.detach()) == pytest.approx(0.75 * s["robust_loss"] + 0.25 * s["clean_loss"], rel=1e-5)
        # the robust loss of misclassified samples (radius 0) equals their clean CE: robust >= clean overall
        assert s["robust_loss"] >= s["clean_loss"] - 1e-6 and 0 < s["adaptive_radius"] <= 0.01
