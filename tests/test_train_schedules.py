"""eps ramp and LR schedules."""

from __future__ import annotations

import math

import pytest
import torch

from actbench.errors import InvalidConfig
from actbench.train.schedules import EpsSchedule, make_lr_scheduler


@pytest.mark.parametrize("warmup,ramp,steps", [(1, 4, 7), (1, 20, 469), (2, 1, 3), (0, 3, 10), (1, 80, 13)])
def test_eps_schedule_shape(warmup: int, ramp: int, steps: int) -> None:
    eps = 0.1
    sched = EpsSchedule(eps, warmup, ramp, steps)
    total = (warmup + ramp + 2) * steps
    values = [sched.value(s) for s in range(1, total + 1)]
    # zero during the warm-up epochs
    assert all(v == 0.0 for v in values[: warmup * steps])
    # monotone, never above eps
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert max(values) <= eps
    # reaches eps exactly at the last batch of the ramp, constant afterwards
    final = (warmup + ramp) * steps
    assert values[final - 1] == eps
    assert values[final - 2] < eps
    assert all(v == eps for v in values[final - 1 :])
    # continuous: no jump bigger than a couple of linear-phase slopes
    slope = eps / max(sched.final - sched.mid, 1)
    assert max(b - a for a, b in zip(values, values[1:], strict=False)) <= 1.5 * slope + 1e-12
    assert sched.reached(warmup + ramp - 1) and not sched.reached(warmup + ramp - 2)


def test_eps_schedule_polynomial_then_linear() -> None:
    sched = EpsSchedule(1.0, 1, 8, 10)  # init 10, final 90, mid 30
    assert (sched.init, sched.mid, sched.final) == (10, 30, 90)
    a = sched.value(11) / 1**4
    assert sched.value(12) == pytest.approx(a * 2**4)  # polynomial of degree 4
    # slope continuity at mid: left derivative 4·α·m^3 equals the linear slope
    alpha = 1.0 / ((90 - 30) * 4 * 20**3 + 20**4)
    assert sched.value(11) == pytest.approx(alpha)
    left = 4 * alpha * 20**3
    right = sched.value(31) - sched.value(30)
    assert right == pytest.approx(left, rel=1e-9)
    assert sched.end_of_epoch(0) == 0.0 and sched.end_of_epoch(8) == 1.0


def test_eps_schedule_no_ramp_and_bad_values() -> None:
    sched = EpsSchedule(0.3, 1, 0, 5)
    assert [sched.value(s) for s in range(1, 8)] == [0, 0, 0, 0, 0, 0.3, 0.3]
    with pytest.raises(InvalidConfig):
        EpsSchedule(0.3, -1, 2, 5)


def _lrs(sched_name: str, epochs: int, steps: int, **kw) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=2e-3)
    sched = make_lr_scheduler(opt, sched_name, 2e-3, epochs, steps, **kw)
    out = []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_multistep_at_epoch_fractions() -> None:
    lrs = _lrs("multistep", 8, 3, milestones=(0.5, 0.75), gamma=0.2)
    per_epoch = lrs[::3]
    assert per_epoch[:4] == pytest.approx([2e-3] * 4)
    assert per_epoch[4:6] == pytest.approx([4e-4] * 2)
    assert per_epoch[6:] == pytest.approx([8e-5] * 2)


def test_onecycle_three_phase() -> None:
    lrs = _lrs("onecycle", 10, 10)
    assert lrs[0] == pytest.approx(2e-3 / 25)
    assert max(lrs) == pytest.approx(2e-3)
    assert lrs.index(max(lrs)) == pytest.approx(0.3 * 100, abs=1)
    assert lrs[-1] == pytest.approx(2e-3 / 25 / 100, rel=1e-6)
    assert math.isclose(lrs[59], 2e-3 / 25, rel_tol=0.05)


def test_unknown_lr_schedule() -> None:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(InvalidConfig):
        make_lr_scheduler(opt, "cosine", 1e-3, 2, 2)
    with pytest.raises(InvalidConfig):
        make_lr_scheduler(opt, "multistep", 1e-3, 2, 2, milestones=(1.5,))
