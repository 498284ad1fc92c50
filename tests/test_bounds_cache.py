"""Prepared layers are never stale: implicit calls prepare afresh; ``prepared(model)`` reuses them explicitly."""

from __future__ import annotations

import copy

import pytest
import torch
from test_bounds_util import one_thread, randomize_bn  # noqa: F401

from actbench.bounds import cache, margin_bounds, prepared
from actbench.errors import InvalidInput
from actbench.models import create_model


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_bn(create_model("cnn3", (1, 12, 12), 10, [0.3], [0.3])).eval()


def _data(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g)


def _bn(model: torch.nn.Module, index: int = 0) -> torch.nn.Module:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)][index]


def _conv(model: torch.nn.Module) -> torch.nn.Module:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def _linear(model: torch.nn.Module) -> torch.nn.Module:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


PROBES = {  # edits that leave every tensor's identity, storage and version counter unchanged
    "conv weight .data": lambda m: _conv(m).weight.data.mul_(3.0),
    "linear weight .data": lambda m: _linear(m).weight.data.mul_(-2.0),
    "conv bias .data": lambda m: _conv(m).bias.data.add_(0.5),
    "linear bias .data": lambda m: _linear(m).bias.data.add_(torch.linspace(0.0, 2.0, 10)),
    "running_mean .data": lambda m: _bn(m).running_mean.data.add_(0.7),
    "running_var .data": lambda m: _bn(m, 1).running_var.data.mul_(4.0),
    "bn1d running_var .data": lambda m: _bn(m, 2).running_var.data.mul_(0.25),
    "bn weight .data": lambda m: _bn(m).weight.data.mul_(-1.0),
    "bn.eps": lambda m: setattr(_bn(m, 1), "eps", 0.5),
}


@pytest.mark.parametrize("method", ["ibp", "crown-ibp"])
def test_implicit_calls_see_every_in_place_edit(method):
    """The probes of the stale-cache report, applied in sequence: after each edit the bounds equal
    those of a fresh copy of the edited model (and differ from the bounds before the edit)."""
    model = _model()
    x, y = _data()
    with torch.no_grad():
        before = margin_bounds(model, x, y, 0.02, method=method).lower
        for name, edit in PROBES.items():
            edit(model)
            got = margin_bounds(model, x, y, 0.02, method=method).lower
            fresh = margin_bounds(copy.deepcopy(model), x, y, 0.02, method=method).lower
            torch.testing.assert_close(got, fresh, rtol=0, atol=0, msg=f"stale bounds after {name}")
            assert not torch.equal(got, before), f"{name} did not change the bounds"
            before = got


def test_no_false_certificates_after_data_edit():
    """The reported failure: an MLP certified more samples with stale IBP layers than it should."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    x = torch.rand(64, 1, 4, 4)
    with torch.no_grad():
        y = net(x).argmax(1)
        margin_bounds(net, x, y, 0.01)
        net[1].weight.data.mul_(3)
        got = margin_bounds(net, x, y, 0.01).certified
        want = margin_bounds(copy.deepcopy(net), x, y, 0.01).certified
        xl, xu = (x - 0.01).clamp(0, 1), (x + 0.01).clamp(0, 1)
        corners = torch.where(torch.rand(32, *x.shape) < 0.5, xl, xu)  # [32, B, ...]
        logits = net(corners.flatten(0, 1)).view(32, x.shape[0], -1)
        worst = (logits.gather(2, y.view(1, -1, 1).expand(32, -1, 1)).squeeze(2)
                 - logits.scatter(2, y.view(1, -1, 1).expand(32, -1, 1), float("-inf")).max(2).values).min(0).values
    assert torch.equal(got, want)
    assert not (got & (worst <= 0)).any()  # no certificate that a sampled corner refutes


def test_prepared_block_reuses_layers_and_matches_fresh_calls():
    model = _model()
    x, y = _data()
    with torch.no_grad():
        fresh = [margin_bounds(model, x[:n], y[:n], e, method="crown-ibp").lower for n, e in ((6, 0.01), (3, 0.03))]
        with prepared(model):
            with prepared(model):  # nesting shares the scope
                first = margin_bounds(model, x, y, 0.01, method="crown-ibp").lower
            second = margin_bounds(model, x[:3], y[:3], 0.03, method="crown-ibp").lower
            entries = cache._scopes()[id(model)].entries
            assert len(entries) == 1  # one preparation served both calls (and both batch sizes)
            model.train()  # other flags: another entry, with the clean batch's statistics
            margin_bounds(model, x, y, 0.01, bn_stats={m: (torch.zeros(m.num_features), torch.ones(m.num_features))
                                                        for m in model.modules()
                                                        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)})
            assert len(entries) == 2
            model.eval()
        assert id(model) not in cache._scopes()
    torch.testing.assert_close(first, fresh[0], rtol=0, atol=0)
    torch.testing.assert_close(second, fresh[1], rtol=0, atol=0)


@pytest.mark.parametrize("edit", [
    lambda m: _conv(m).weight.mul_(0.5),  # an optimizer-style in-place update
    lambda m: _bn(m).running_mean.add_(0.1),
    lambda m: setattr(_bn(m), "eps", 0.1),
    lambda m: setattr(_linear(m), "weight", torch.nn.Parameter(_linear(m).weight * 2)),
], ids=["weight-update", "running-stat-update", "bn-eps", "new-parameter"])
def test_visible_change_inside_prepared_block_raises(edit):
    model = _model()
    x, y = _data()
    with torch.no_grad(), prepared(model):
        margin_bounds(model, x, y, 0.01)
        edit(model)
        with pytest.raises(InvalidInput, match="changed inside"):
            margin_bounds(model, x, y, 0.01)


def test_prepared_block_never_reuses_layers_under_autograd():
    model = _model().train()
    x, y = _data()
    with prepared(model):
        for _ in range(2):  # a second backward through shared layers would fail
            margin_bounds(model, x, y, 0.01).lower.sum().backward()
        assert not cache._scopes()[id(model)].entries
    assert all(p.grad is not None for p in model.parameters())


def test_prepared_rejects_non_modules():
    with pytest.raises(InvalidInput, match="nn.Module"), prepared("model"):  # type: ignore[arg-type]
        pass
