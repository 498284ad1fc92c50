"""Complete verification (actbench.complete): α-CROWN, β-CROWN branch and bound and MILP against exact
answers on tiny nets (fully connected and convolutional, with BatchNorm, random and trained)."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from actbench.bounds import box_margin_bounds
from actbench.certify.attack import margins, pgd
from actbench.complete import compile_model, use_clock, verify_box
from actbench.complete import linear as lin
from actbench.complete.alpha_crown import AlphaSettings, alpha_crown
from actbench.complete.milp import row_minima
from actbench.complete.problem import robustness_spec
from actbench.errors import InvalidConfig, InvalidInput, UnknownName, UnsupportedLayer


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is much faster than two on a shared machine (and deterministic)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


def fc_net(seed: int, width: int = 16) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, width), nn.BatchNorm1d(width), nn.ReLU(),
                        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))
    return _randomise_bn(net, seed), (8,)


def conv_net(seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, stride=1, padding=0), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.Conv2d(3, 3, 2, stride=1, padding=0), nn.ReLU(), nn.Flatten(),
                        nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():  # steeper than the default init, so that the radii below matter
        for m in net:
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(4.0)
    return _randomise_bn(net, seed), (1, 5, 5)


def trained_net(seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    """An MLP fitted for a few steps to a synthetic 3-class problem (weights shaped by training);
    ``net.sample`` is a training point."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(3, 6, generator=gen)
    x = (centres.repeat(40, 1) + 0.1 * torch.randn(120, 6, generator=gen)).clamp(0, 1)
    y = torch.arange(3).repeat(40)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                        nn.Linear(12, 3))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.sample = x[:1].double()
    return net.eval(), (6,)


# (net, radii): random nets are robust to much larger boxes than the trained one
def trained_conv_net(seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    """A small conv net with BatchNorm fitted for a few steps to 3 synthetic 5x5 image classes."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.rand(3, 1, 5, 5, generator=gen)
    x = (templates.repeat(30, 1, 1, 1) + 0.15 * torch.randn(90, 1, 5, 5, generator=gen)).clamp(0, 1)
    y = torch.arange(3).repeat(30)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 8),
                        nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.sample = x[:1].double()
    return net.eval(), (1, 5, 5)


NETS = [(fc_net(0), (0.3, 0.6, 0.9)), (fc_net(1), (0.3, 0.6, 0.9)), (conv_net(2), (0.05, 0.15, 0.3)),
        (conv_net(3), (0.05, 0.15, 0.3)), (trained_net(4), (0.1, 0.3, 0.5)), (trained_net(5), (0.1, 0.3, 0.5)),
        (trained_conv_net(6), (0.05, 0.08, 0.1))]


def instances():
    """(model, lower, upper, label) over the nets, one input each and several radii."""
    out = []
    for i, ((model, shape), radii) in enumerate(NETS):
        x = getattr(model, "sample", None)
        if x is None:
            x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(100 + i), dtype=torch.float64)
        with torch.no_grad():
            label = int(model.double()(x).argmax())
        model.float()
        for eps in radii:
            out.append((model, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1), label))
    return out


CASES = instances()


@functools.cache
def _exact_case(i: int) -> torch.Tensor:
    return _exact(*CASES[i])


def _exact(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, label: int) -> torch.Tensor:
    """The exact minimum of every margin (MILP solved to optimality): the oracle."""
    net = compile_model(model, tuple(lower.shape[1:]))
    return row_minima(net, lower, upper, robustness_spec(torch.tensor([label]), net.num_outputs))


def _check_counterexample(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, label: int, verdict) -> None:
    x = verdict.counterexample
    assert x is not None and x.dtype == torch.float64
    assert bool((x >= lower).all() and (x <= upper).all()), "the counterexample must lie in the box"
    with torch.no_grad():
        m = margins(model.double().eval()(x.view_as(lower)), torch.tensor([label]))
    model.float()
    assert float(m) <= 0, f"float64 margin {float(m)} at the counterexample is not a violation"


def test_alpha_crown_between_crown_and_exact_minimum():
    gains = []
    for i, (model, lower, upper, label) in enumerate(CASES):
        net = compile_model(model, tuple(lower.shape[1:]))
        spec = robustness_spec(torch.tensor([label]), net.num_outputs)
        with torch.no_grad():
            crown = box_margin_bounds(model.double(), lower, upper, torch.tensor([label]), method="crown").lower[0]
        model.float()
        exact = _exact_case(i)
        for settings in (AlphaSettings(intermediate=False), AlphaSettings(intermediate=True)):
            alpha = alpha_crown(net, lower, upper, spec, settings).lower[0]
            scale = 1e-9 * (1 + exact.abs().max())
            assert bool((alpha >= crown - scale).all()), (alpha, crown)
            assert bool((alpha <= exact + scale).all()), (alpha, exact)
            gains.append(float((alpha - crown).max()))
    assert max(gains) > 1e-3, "alpha-CROWN should tighten some bound beyond CROWN"


def test_bab_agrees_with_milp_and_counterexamples_are_real():
    outcomes = {"verified": 0, "falsified": 0, "branched": 0}
    for i, (model, lower, upper, label) in enumerate(CASES):
        exact = _exact_case(i)
        truth = "verified" if float(exact.min()) > 0 else "falsified"
        for verifier in ("milp", "bab"):
            v = verify_box(model, lower, upper, label, verifier, timeout=60, options={"attack": False})
            assert v.status == truth, (verifier, v, exact)
            if v.status == "falsified":
                _check_counterexample(model, lower, upper, label, v)
            else:
                assert v.lower_bound is not None and 0 < v.lower_bound <= float(exact.min()) + 1e-9
        outcomes[truth] += 1
        outcomes["branched"] += v.domains > 0
    assert outcomes["verified"] >= 5 and outcomes["falsified"] >= 5 and outcomes["branched"] >= 2, outcomes


@pytest.mark.parametrize("branching", ["babsr", "fsb"])
def test_bab_branching_rules_and_intermediate_refinement(branching):
    hard = []
    for i, (model, lower, upper, label) in enumerate(CASES):
        a = verify_box(model, lower, upper, label, "alpha-crown", options={"attack": False})
        if a.status == "unknown":
            hard.append(i)
    assert hard, "some case must need branching"
    for i in hard[:4]:
        model, lower, upper, label = CASES[i]
        truth = "verified" if float(_exact_case(i).min()) > 0 else "falsified"
        for refine in (False, True):
            v = verify_box(model, lower, upper, label, "bab", timeout=60,
                           options={"attack": False, "branching": branching, "refine_intermediate": refine})
            assert v.status == truth


def test_soundness_sweep_verified_boxes_resist_strong_pgd():
    """No box any verifier proves is broken by a strong PGD (64 starts x 4 restarts x 60 steps)."""
    proofs = 0
    for model, lower, upper, label in CASES:
        verified = [v for v in ("alpha-crown", "bab", "milp")
                    if verify_box(model, lower, upper, label, v, timeout=60).status == "verified"]
        if not verified:
            continue
        proofs += len(verified)
        x = ((lower + upper) * 0.5).expand(64, *lower.shape[1:]).clone()
        y = torch.full((64,), label)
        m64 = model.double()
        adv = pgd(m64, x, y, (lower.expand_as(x), upper.expand_as(x)), loss="margin", steps=60, step_size=0.1,
                  restarts=4, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert float(margins(m64(adv), y).min()) > 0, f"{verified} verified an attackable box"
        model.float()
    assert proofs >= 10


def test_timeout_gives_unknown_never_verified():
    """A true property that needs branching, with no time: unknown (never a proof, never a wrong sat)."""
    hard = [i for i, (model, lower, upper, label) in enumerate(CASES) if float(_exact_case(i).min()) > 0
            and verify_box(model, lower, upper, label, "alpha-crown", options={"attack": False}).status == "unknown"]
    assert hard
    model, lower, upper, label = CASES[hard[0]]
    for verifier in ("bab", "milp"):
        v = verify_box(model, lower, upper, label, verifier, timeout=1e-4, options={"attack": False})
        assert v.status == "unknown" and v.reason == "timeout", v
    with use_clock("process"):  # the limit in CPU seconds of this process
        v = verify_box(model, lower, upper, label, "bab", timeout=1e-4, options={"attack": False})
    assert v.status == "unknown" and v.reason == "timeout", v
    with pytest.raises(UnknownName), use_clock("sundial"):
        pass


def test_generic_spec_rows_and_offsets():
    """A spec row ``-z_0 + offset > 0`` (z_0 stays below offset): decided both ways around the exact max."""
    model, shape = fc_net(3)
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lower, upper = (x - 0.1).clamp(0, 1), (x + 0.1).clamp(0, 1)
    net = compile_model(model, shape)
    spec = -torch.eye(4)[:1]
    top = -_row_min(net, lower, upper, spec)
    ok = verify_box(model, lower, upper, spec=spec, offset=torch.tensor([top + 1e-2]), verifier="bab", timeout=30)
    bad = verify_box(model, lower, upper, spec=spec, offset=torch.tensor([top - 1e-2]), verifier="bab", timeout=30)
    assert ok.status == "verified" and bad.status == "falsified"
    with torch.no_grad():
        assert float(model.double()(bad.counterexample)[0, 0]) >= top - 1e-2
    model.float()


def _row_min(net, lower, upper, spec_rows: torch.Tensor) -> float:
    from actbench.complete.problem import Spec

    spec = Spec(spec_rows.double().unsqueeze(0), torch.zeros(1, spec_rows.shape[0], dtype=torch.float64))
    return float(row_minima(net, lower, upper, spec)[0])


def test_bad_input_raises_actbench_errors():
    model, shape = fc_net(0)
    x = torch.rand((1, *shape))
    with pytest.raises(UnknownName):
        verify_box(model, x, x, 0, verifier="nope")
    with pytest.raises(InvalidInput):
        verify_box(model, x[0], x[0], 0)
    with pytest.raises(InvalidInput):
        verify_box(model, x + 0.1, x, 0)
    with pytest.raises(InvalidInput):
        verify_box(model, x, x, 7)
    with pytest.raises(InvalidInput):
        verify_box(model, x, x, 0, timeout=-1)
    with pytest.raises(InvalidConfig):
        verify_box(model, x, x, 0, options={"no_such_setting": 1})
    pooled = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(UnsupportedLayer):
        verify_box(pooled, torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4), 0)


def test_backward_pass_matches_engine_crown():
    model, shape = conv_net(5)
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    lower, upper = (x - 0.05).clamp(0, 1), (x + 0.05).clamp(0, 1)
    ref = box_margin_bounds(model.double(), lower, upper, y, method="crown")
    model.float()
    net = compile_model(model, shape)
    bounds = lin.crown_bounds(net, lower, upper)
    spec = robustness_spec(y, 3)
    mine = lin.backward(net, spec.C, bounds, lower, upper).lower
    assert torch.allclose(mine, ref.lower, atol=1e-10)


def test_lp_of_a_fully_split_domain_is_exact_there():
    """A domain fixing every unstable ReLU to its state at a point x0 is an LP: its minimum lies between
    the exact minimum over the whole box and the margin at x0 (which is in the domain)."""
    from actbench.complete.milp import lp_leaf

    model, lower, upper, label = CASES[3]
    net = compile_model(model, tuple(lower.shape[1:]))
    spec = robustness_spec(torch.tensor([label]), net.num_outputs)
    x0 = (lower + upper) * 0.5
    pre, logits = net.pre_activations(x0)
    bounds = lin.crown_bounds(net, lower, upper)
    signs = [torch.where(z > 0, 1.0, -1.0) for z in pre]
    fixed = lin.apply_splits(bounds, signs)
    exact = _exact_case(3)
    at_x0 = (spec.C[0] @ logits[0]).double()
    for row in range(spec.rows):
        out = lp_leaf(net, fixed, lower, upper, spec, row, -1e9, None)  # tolerance below: report the bound
        assert out.status == "verified" and exact[row] - 1e-7 <= out.bound <= at_x0[row] + 1e-7
