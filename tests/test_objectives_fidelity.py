"""Each baseline as its reference implementation computes it: the warm-up regulariser at 1e-6, SABR's κ
schedule and centre attack, MTL-IBP's corner attack and BatchNorm statistics, per-family model selection."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_train_fixtures import make_model, small_track, synthetic_splits
from torch import nn

from actbench.bounds import margin_bounds
from actbench.models import Normalize, ibp_init
from actbench.objectives import create_objective, load_method
from actbench.objectives.base import StepContext
from actbench.objectives.cost import PropagationCounter
from actbench.objectives.losses import robust_ce
from actbench.objectives.mtl_ibp import attack as mtl_attack
from actbench.objectives.robust import MIN_REG_EPS
from actbench.objectives.sabr import centre_attack, kappa_at, step_factors
from actbench.train.schedules import EpsSchedule
from actbench.train.selection import Selector, ValMetrics

EPS = 0.1
IBP_FAMILY = ("ibp", "crown_ibp", "sabr", "mtl_ibp", "adaptive")


def _batch(n: int = 64):
    x, y = synthetic_splits(n_train=n, n_val=8).train.tensors()
    return x, y, torch.arange(n)


def _ctx(index, eps_t=EPS, reg_phase=False, reg_weight=0.0) -> StepContext:
    return StepContext(eps_t=eps_t, eps=EPS, epoch=0, step=0, reg_phase=reg_phase, reg_weight=reg_weight,
                       indices=index, counter=PropagationCounter(), num_classes=10)  # fmt: skip


def _objective(name: str, **overrides):
    track = small_track()
    objective = create_objective(load_method(name, track.name, overrides), track)
    objective.setup(64, "cpu")
    return objective


# --- 1. the warm-up regulariser is evaluated on a 1e-6 box ---------------------------------------------


def _independent_tightness(model: nn.Sequential, x: torch.Tensor, eps: float, tol: float = 0.5) -> float:
    """Shi et al.'s tightness term by a plain interval pass over the modules (train-mode BatchNorm with the
    clean batch's statistics), written independently of the bound engine."""
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    clean = x
    widths, delta0 = [], None
    for module in model:
        if isinstance(module, Normalize):
            lower, upper, clean = module(lower), module(upper), module(clean)
            delta0 = ((upper - lower) / 2).mean()
        elif isinstance(module, nn.Conv2d | nn.Linear):
            centre, radius = (upper + lower) / 2, (upper - lower) / 2
            if isinstance(module, nn.Conv2d):
                c = F.conv2d(centre, module.weight, module.bias, module.stride, module.padding)
                r = F.conv2d(radius, module.weight.abs(), None, module.stride, module.padding)
            else:
                c, r = F.linear(centre, module.weight, module.bias), F.linear(radius, module.weight.abs())
            lower, upper, clean = c - r, c + r, module(clean)
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            dims = [0, *range(2, clean.dim())]
            mean, var = clean.mean(dims), clean.var(dims, unbiased=False)
            shape = (1, -1, *([1] * (clean.dim() - 2)))
            scale = (module.weight / torch.sqrt(var + module.eps)).view(shape)
            shift = module.bias.view(shape) - mean.view(shape) * scale
            lo, hi = lower * scale + shift, upper * scale + shift
            lower, upper, clean = torch.minimum(lo, hi), torch.maximum(lo, hi), clean * scale + shift
        elif isinstance(module, nn.ReLU):
            widths.append(((upper - lower) / 2).mean())
            lower, upper, clean = lower.relu(), upper.relu(), clean.relu()
        elif isinstance(module, nn.Flatten):
            lower, upper, clean = lower.flatten(1), upper.flatten(1), clean.flatten(1)
    terms = [max(tol - float((delta0 / w).detach()), 0.0) / tol for w in widths]
    return sum(terms) / len(widths)


@pytest.mark.parametrize("name", IBP_FAMILY)
def test_warmup_tightness_is_computed_at_1e6(name: str) -> None:
    torch.manual_seed(0)
    x, y, index = _batch()
    model = make_model(3)
    ibp_init(model)
    model.train()
    objective = _objective(name)
    loss, stats = objective.loss(model, x, y, _ctx(index, eps_t=0.0, reg_phase=True, reg_weight=1.0))
    assert stats["reg_tightness"] > 0
    assert stats["reg_tightness"] == pytest.approx(_independent_tightness(model, x, MIN_REG_EPS), rel=1e-4)
    assert "robust_loss" not in stats or name == "adaptive"  # eps 0: no robust term (ACERT: its clean CE)
    assert float(loss.detach()) == pytest.approx(stats.get("clean_loss", 0) + stats["reg_loss"], rel=1e-5)


@pytest.mark.parametrize("name", IBP_FAMILY)
def test_one_warmup_epoch_records_a_positive_tightness(name: str, tmp_path) -> None:
    from actbench.config import Budget
    from actbench.train import train

    splits = synthetic_splits(n_train=128, n_val=32)
    track = small_track(budget=Budget("epochs", 1), warmup_epochs=1, ramp_epochs=1)
    objective = create_objective(load_method(name, track.name, {}), track)
    torch.manual_seed(0)
    result = train(make_model(0), splits, track, objective, budget=track.budget, run_dir=tmp_path, seed=0,
                   progress=False)  # fmt: skip
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(result.history) == 1 and history["eps_t"].iloc[0] == 0.0
    assert history["reg_tightness"].iloc[0] > 0


# --- 2-3. SABR: κ schedule and the centre attack ---------------------------------------------------------


def test_sabr_kappa_is_one_in_the_clean_epoch_and_zero_on_the_ramp() -> None:
    schedule = EpsSchedule(EPS, warmup_epochs=1, ramp_epochs=3, steps_per_epoch=7)
    for step in range(1, 6 * 7 + 1):
        eps_t = schedule.value(step)
        assert kappa_at(eps_t, 0.0) == (1.0 if step <= schedule.init else 0.0)
    x, y, index = _batch()
    model = make_model(0).train()
    sabr = _objective("sabr")
    first_ramp_eps = schedule.value(schedule.init + 1)
    assert 0 < first_ramp_eps < 1e-4
    _, warm = sabr.loss(model, x, y, _ctx(index, eps_t=0.0, reg_phase=True, reg_weight=1.0))
    _, ramp = sabr.loss(model, x, y, _ctx(index, eps_t=first_ramp_eps, reg_phase=True, reg_weight=1.0))
    assert warm["kappa_t"] == 1.0 and ramp["kappa_t"] == 0.0 and "robust_loss" in ramp


def test_sabr_step_sizes_decay_at_50_80_90_percent() -> None:
    assert step_factors(8, 0.5) == pytest.approx([0.5] * 4 + [0.05] * 3 + [0.005])
    assert step_factors(10, 1.0) == pytest.approx([1.0] * 5 + [0.1] * 3 + [0.01] + [0.001])


class _Recorder(nn.Module):
    """Wraps a model and records every input it is evaluated on."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.inputs = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.model(x)


def test_sabr_centre_attack_takes_the_decaying_steps() -> None:
    torch.manual_seed(0)
    x, y, _ = _batch(16)
    x = x.double() * 0.5 + 0.25  # inside (0, 1) with room: the box is never clipped
    eps = 0.05
    recorder = _Recorder(make_model(1).double())
    best = centre_attack(recorder, x, y, eps, steps=8, step_size=0.5)
    points = recorder.inputs
    assert len(points) == 9  # the start and one evaluation after each of the 8 steps
    lower, upper = x - eps, x + eps
    start = points[0]
    assert bool(((start - x).abs() <= eps + 1e-12).all())  # uniform in x ± width/2, inside the box
    for i, factor in enumerate(step_factors(8, 0.5)):
        move = (points[i + 1] - points[i]).abs()
        free = (points[i + 1] > lower + 1e-12) & (points[i + 1] < upper - 1e-12)  # not projected
        assert bool(torch.allclose(move[free], torch.full_like(move[free], factor * eps), atol=1e-12))
        assert bool((move <= factor * eps + 1e-12).all())
    assert bool(((best >= lower - 1e-12) & (best <= upper + 1e-12)).all())


# --- 4. MTL-IBP: corner attack, adversarial-batch statistics -------------------------------------------


def test_mtl_ibp_attack_lands_on_the_corners_of_the_clipped_box() -> None:
    torch.manual_seed(0)
    x, y, _ = _batch(32)
    model = make_model(0).train()
    eps = 0.1
    x_adv = mtl_attack(model, x, y, eps, steps=1, step_size=10.0)
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    on_boundary = (x_adv == lower) | (x_adv == upper)
    # every pixel with a non-zero input gradient at the random start is on the boundary; here that is all
    assert float(on_boundary.double().mean()) == 1.0
    assert model.training  # eval mode only during the attack


def test_mtl_ibp_uses_the_adversarial_batch_statistics() -> None:
    x, y, index = _batch()
    model = make_model(2)
    ibp_init(model)
    model.train()
    twin = copy.deepcopy(model)
    objective = _objective("mtl_ibp", alpha=0.3)
    eps_t = 0.05
    torch.manual_seed(7)
    loss, stats = objective.loss(model, x, y, _ctx(index, eps_t=eps_t))
    # the same steps by hand: the clean batch in train mode (running statistics, as the reference), the
    # attack in eval mode from the same random start, then a train-mode forward on the attack point
    with torch.no_grad():
        twin(x)
    torch.manual_seed(7)
    x_adv = mtl_attack(twin, x, y, eps_t, steps=1, step_size=10.0)
    from actbench.bounds import clean_forward

    with torch.no_grad():
        logits_adv, adv_stats = clean_forward(twin, x_adv)  # train mode: the adversarial batch's statistics
        assert stats["adv_loss"] == pytest.approx(float(F.cross_entropy(logits_adv, y)), rel=1e-6)
        robust = robust_ce(margin_bounds(twin, x, y, eps_t, bn_stats=adv_stats).lower)
        assert stats["robust_loss"] == pytest.approx(float(robust), rel=1e-5)
        _, clean_stats = clean_forward(twin, x)
        with_clean = robust_ce(margin_bounds(twin, x, y, eps_t, bn_stats=clean_stats).lower)
    assert abs(float(with_clean) - stats["robust_loss"]) > 1e-4  # the statistics differ visibly
    assert float(loss.detach()) == pytest.approx(
        0.3 * stats["robust_loss"] + 0.7 * stats["adv_loss"] + stats.get("reg_loss", 0.0), rel=1e-5)


# --- 6. model selection per method family --------------------------------------------------------------


def _offer(rule: str, rows: list[tuple[float, float, float, bool]]) -> int:
    selector = Selector(rule)
    model = nn.Linear(2, 2)
    for epoch, (acc, acceps, pgd_acc, reached) in enumerate(rows, start=1):
        selector.update(epoch, ValMetrics(acc, 0.0, 0.0, acceps, pgd_acc), reached, model)
    return selector.epoch


def test_standard_and_pgd_select_on_their_validation_accuracy() -> None:
    # epoch:        1                       2                       3                       4
    rows = [(0.80, 0.010, 0.50, False), (0.90, 0.005, 0.55, False), (0.85, 0.020, 0.60, True),
            (0.84, 0.015, 0.65, True)]  # fmt: skip
    assert _offer("val-accuracy", rows) == 2  # the clean-accuracy peak, not acceps's epoch 3
    assert _offer("val-acceps", rows) == 3
    assert _offer("val-pgd-accuracy", rows) == 4  # the PGD-accuracy peak among epochs at the full eps
    assert _offer("last", rows) == 4


def test_pgd_selection_runs_a_validation_attack(tmp_path) -> None:
    from actbench.config import Budget
    from actbench.train import train

    splits = synthetic_splits(n_train=128, n_val=32)
    track = small_track(budget=Budget("epochs", 2), selection="val-pgd-accuracy")
    objective = create_objective(load_method("pgd", track.name, {}), track)
    train(make_model(0), splits, track, objective, budget=track.budget, run_dir=tmp_path, seed=0, progress=False)
    history = pd.read_csv(tmp_path / "history.csv")
    assert "val_pgd_acc" in history and history["val_pgd_acc"].between(0, 1).all()
    assert bool((history["val_pgd_acc"] <= history["val_acc"] + 1e-12).all())
    assert not math.isnan(float(history["val_pgd_acc"].iloc[-1]))
