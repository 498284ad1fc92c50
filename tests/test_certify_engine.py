"""Certification engine: consistency of records and metrics, exactness on the grid, cascade, limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_certify_fixtures import fmnist, one_thread, trained_model

import actbench.certify.engine as engine
from actbench.bounds import margin_bounds
from actbench.certify.engine import AttackSettings, certify
from actbench.errors import InvalidConfig, SoundnessError, UnknownName

EPS_MAX = 0.03
GRID = [0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03]
FAST_ATTACK = AttackSettings(steps=8, restarts=1, bisect_steps=4)



@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def report():
    _, test, _ = fmnist()
    model = trained_model("mlp")
    with one_thread():
        rep = certify(model, test, EPS_MAX, GRID, verifiers=("ibp", "crown-ibp"), samples=48, cascade=False,
                      progress=False, eps_test=[0.01], attack_settings=FAST_ATTACK)
    return rep


def test_records_and_metrics_are_consistent(report):
    rec, summary = report.records, report.summary
    assert len(rec) == 48 and summary["samples"] == 48
    assert 0.5 < summary["clean_accuracy"] == pytest.approx(rec["correct"].mean())
    best = rec["radius_best"].to_numpy()
    for v in ("ibp", "crown-ibp"):
        own = rec[f"radius_{v}"].to_numpy()
        assert not np.isnan(own).any()  # no cascade: every verifier ran on every sample
        assert (best >= own).all()
        assert summary["acr"][v] == pytest.approx(own.mean(), abs=1e-15)
    assert summary["acr"]["best"] == pytest.approx(best.mean(), abs=1e-15)
    assert (best <= EPS_MAX).all() and ((best > 0) == (rec["correct"] & (best > 0))).all()
    wrong = ~rec["correct"].to_numpy(bool)
    assert (best[wrong] == 0).all() and (rec["radius_attack"].to_numpy()[wrong] == 0).all()
    assert (rec["radius_attack"].to_numpy() >= best).all()
    assert (rec["radius_attack"].to_numpy()[~wrong] > best[~wrong]).all()
    for curve in [*summary["certified_accuracy"].values(), summary["attack_accuracy"]]:
        assert len(curve) == len(GRID)
        assert all(a >= b for a, b in zip(curve, curve[1:], strict=False))
    assert summary["certified_accuracy"]["best"][0] == summary["clean_accuracy"]
    for k, curve in summary["certified_accuracy"].items():
        assert all(c <= a for c, a in zip(curve, summary["attack_accuracy"], strict=True)), k
    assert set(rec["status"]) <= {"certified_max", "partial", "misclassified"}
    assert (rec["status"] == "certified_max").sum() == (best >= EPS_MAX).sum()
    assert report.settings["dtype"] == "float64" and report.settings["unknown"] == 0


def test_ibp_curve_equals_direct_certification(report):
    _, test, _ = fmnist()
    model = trained_model("mlp").double()
    x, y = test.tensors(torch.arange(48))
    x = x.double()
    for eps, acc in zip(GRID, report.summary["certified_accuracy"]["ibp"], strict=True):
        with torch.no_grad():
            direct = (margin_bounds(model, x, y, eps, "ibp").lower.min(1).values > 0).double().mean()
        assert acc == float(direct), eps
    with torch.no_grad():
        direct = (margin_bounds(model, x, y, 0.01, "ibp").lower.min(1).values > 0).double().mean()
    assert report.summary["certified_accuracy_test"]["ibp"] == [float(direct)]


def test_cascade_skips_certified_and_keeps_own_radii():
    _, test, _ = fmnist()
    model = trained_model("mlp")
    params = [p.detach().clone() for p in model.parameters()]
    with one_thread():
        rep = certify(model, test, EPS_MAX, GRID, verifiers=("crown-ibp", "ibp"), samples=32, attack=False,
                      progress=False)
    rec = rep.records
    # The caller's model is untouched (dtype, mode, weights).
    assert all(p.dtype == torch.float32 and torch.equal(p, q) for p, q in zip(model.parameters(), params,
                                                                                strict=True))
    assert not model.training
    assert rep.settings["verifiers"] == ["ibp", "crown-ibp"] and rep.summary["attack_accuracy"] is None
    at_cap = rec["radius_ibp"].to_numpy() >= EPS_MAX
    assert at_cap.any() and np.isnan(rec["radius_crown-ibp"].to_numpy()[at_cap]).all()
    assert (rec["passes_crown-ibp"].to_numpy()[at_cap] == 0).all()
    ran = ~at_cap & rec["correct"].to_numpy(bool)
    x, y = test.tensors(torch.arange(32))
    own = torch.tensor(rec["radius_crown-ibp"].to_numpy()[ran])
    pos = own > 0
    with torch.no_grad():  # its own radius re-certifies with its own verifier
        lower = margin_bounds(model.double(), x[ran][pos].double(), y[ran][pos], own[pos], "crown-ibp").lower
    assert (lower.min(1).values > 0).all()
    cum = np.maximum(rec["radius_ibp"].to_numpy(), np.nan_to_num(rec["radius_crown-ibp"].to_numpy()))
    assert rep.summary["acr"]["crown-ibp"] == pytest.approx(cum.mean(), abs=1e-15)
    assert rep.summary["acr"]["ibp"] == pytest.approx(rec["radius_ibp"].mean(), abs=1e-15)


def test_time_limit_marks_unknown(monkeypatch):
    _, test, _ = fmnist()
    model = trained_model("mlp")
    clock = iter(range(0, 10_000, 100))  # every clock read advances 100 s
    monkeypatch.setattr(engine.time, "monotonic", lambda: float(next(clock)))
    rep = certify(model, test, EPS_MAX, GRID, verifiers=("ibp",), samples=20, attack=False, progress=False,
                  max_seconds=50, batch_size=8)
    rec = rep.records
    correct = rec["correct"].to_numpy(bool)
    r = rec["radius_ibp"].to_numpy()
    assert np.isnan(r[correct]).all() and (r[~correct] == 0).all()
    assert (rec["status"][correct] == "unknown").all()
    assert rep.settings["unknown"] == int(correct.sum())
    assert rep.summary["acr"]["ibp"] == 0 and rep.summary["certified_accuracy"]["ibp"][1] == 0


def test_unsound_verifier_is_caught(monkeypatch):
    _, test, _ = fmnist()
    model = trained_model("mlp")
    real = engine.certified_radii

    def liar(*args, **kwargs):
        res = real(*args, **kwargs)
        res.radius[:] = 0.3  # claims robustness far beyond what holds
        return res

    monkeypatch.setattr(engine, "certified_radii", liar)
    with pytest.raises(SoundnessError, match=r"sample \d+"), one_thread():
        certify(model, test, 0.3, [0.0, 0.3], verifiers=("ibp",), samples=16, progress=False,
                attack_settings=FAST_ATTACK)


def test_bad_arguments():
    _, test, _ = fmnist()
    model = trained_model("mlp")
    with pytest.raises(UnknownName, match="verifier"):
        certify(model, test, 0.1, [0.1], verifiers=("ibp", "beta-crown"), progress=False)
    with pytest.raises(InvalidConfig):
        certify(model, test, 0.1, [0.0, 1.5], progress=False)
    with pytest.raises(InvalidConfig):
        certify(model, test, -0.1, [0.0], progress=False)
    with pytest.raises(InvalidConfig):
        certify(model, test, 0.1, [0.0], dtype="float16", progress=False)


def test_zero_cap_and_float32():
    _, test, _ = fmnist()
    model = trained_model("mlp")
    rep = certify(model, test, 0.0, [0.0], verifiers=("ibp",), samples=16, attack=False, progress=False)
    assert (rep.records["radius_ibp"] == 0).all() and rep.summary["acr"]["best"] == 0
    assert rep.summary["certified_accuracy"]["best"] == [rep.summary["clean_accuracy"]]
    rep32 = certify(model, test, EPS_MAX, GRID, verifiers=("ibp",), samples=16, attack=False, progress=False,
                    dtype="float32")
    assert rep32.settings["dtype"] == "float32"
    r = rep32.records["radius_ibp"].to_numpy()
    assert not math.isnan(r.sum()) and (r <= EPS_MAX).all()
    at_cap = r == EPS_MAX
    assert ((r == r.astype(np.float32)) | at_cap).all()
    assert at_cap.any() and (rep32.records["status"][at_cap] == "certified_max").all()


def test_memory_refusal_halves_the_batch(monkeypatch):
    from actbench.errors import ResourceLimit

    _, test, _ = fmnist()
    model = trained_model("mlp")
    real = engine.certified_radii
    sizes = []

    def picky(model, x, *args, **kwargs):
        sizes.append(x.shape[0])
        if x.shape[0] > 5:
            raise ResourceLimit("too big")
        return real(model, x, *args, **kwargs)

    plain = certify(model, test, EPS_MAX, GRID, verifiers=("ibp",), samples=24, attack=False, progress=False)
    monkeypatch.setattr(engine, "certified_radii", picky)
    split = certify(model, test, EPS_MAX, GRID, verifiers=("ibp",), samples=24, attack=False, progress=False)
    assert max(s for s in sizes if s <= 5) <= 5 and sizes[0] > 5
    # Same radii up to the search tolerance (sub-batches round differently in the last bits).
    np.testing.assert_allclose(plain.records["radius_ibp"], split.records["radius_ibp"], rtol=2e-4)
