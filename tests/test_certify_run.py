"""certify_run: card and radii written atomically, reproducible radii, bad input leaves the card alone."""

from __future__ import annotations

import pandas as pd
import pytest
from test_certify_fixtures import fmnist, make_run, one_thread

from actbench.certify.engine import AttackSettings
from actbench.certify.run import certify_run
from actbench.errors import ActbenchError, CheckpointError, InvalidConfig, UnknownName
from actbench.store import read_card

FAST_ATTACK = AttackSettings(steps=5, restarts=1, bisect_steps=3)

pytestmark = pytest.mark.skipif(fmnist()[2] != "fashion-mnist", reason="needs the Fashion-MNIST files")



@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def test_certify_run_writes_card_and_radii_reproducibly(tmp_path):
    run = make_run(tmp_path / "run-a", samples=24)
    with one_thread():
        card = certify_run(run, verifier="ibp", progress=False, attack_settings=FAST_ATTACK)
    # not the track's protocol (one verifier, a weaker attack): a record of its own, no headline yet
    assert card["status"] == "trained" and "metrics" not in card
    (record,) = card["certifications"]
    assert not record["track_protocol"] and record["radii"] == f"radii-{record['protocol']['id']}.parquet"
    metrics, cert = record["metrics"], record["settings"]
    assert metrics["samples"] == 24 and metrics["eps_grid"] == [0.0, 0.005, 0.01, 0.015, 0.02]
    assert set(metrics["acr"]) == {"ibp", "best"} and len(metrics["attack_accuracy"]) == 5
    assert metrics["eps_test"] == [0.01] and len(metrics["certified_accuracy_test"]["best"]) == 1
    assert cert["verifier"] == "ibp" and cert["dtype"] == "float64" and cert["eps_max"] == 0.02
    first = pd.read_parquet(run / record["radii"])
    assert len(first) == 24 and metrics["acr"]["best"] == pytest.approx(first["radius_best"].mean(), abs=1e-15)
    with one_thread():
        again = certify_run(run, verifier="ibp", progress=False, attack_settings=FAST_ATTACK)
    assert len(again["certifications"]) == 1  # the same protocol refreshes its record
    second = pd.read_parquet(run / record["radii"])
    pd.testing.assert_series_equal(first["radius_ibp"], second["radius_ibp"], check_exact=True)
    pd.testing.assert_series_equal(first["radius_attack"], second["radius_attack"], check_exact=True)
    assert not list(run.glob(".*.tmp")) and not (run / "radii.parquet").exists()
    # the track's protocol (its cascade, the default attack, its samples): the headline
    with one_thread():
        card = certify_run(run, progress=False)
    assert card["status"] == "complete" and len(card["certifications"]) == 2
    headline = card["certifications"][-1]
    assert headline["track_protocol"] and headline["radii"] == "radii.parquet"
    assert card["metrics"] == headline["metrics"] and card["certification"]["protocol"] == headline["protocol"]["id"]
    assert (run / "radii.parquet").exists()


def test_cascade_uses_track_verifiers(tmp_path):
    run = make_run(tmp_path / "run-b", samples=12)
    with one_thread():
        card = certify_run(run, progress=False, attack=False, samples=12)
    (record,) = card["certifications"]
    assert record["settings"]["verifiers"] == ["ibp", "crown-ibp"]
    assert record["metrics"]["attack_accuracy"] is None
    assert not record["protocol"]["checked"] and "not checked" in record["protocol"]["label"]
    rec = pd.read_parquet(run / record["radii"])
    assert {"radius_ibp", "radius_crown-ibp", "radius_best", "status"} <= set(rec.columns)


@pytest.mark.parametrize(
    ("break_it", "kwargs", "error"),
    [
        (lambda run: (run / "model.pt").unlink(), {}, CheckpointError),
        (lambda run: (run / "model.pt").write_bytes(b"not a checkpoint"), {}, CheckpointError),
        (lambda run: None, {"eps_grid": [0.0, 1.5]}, InvalidConfig),
        (lambda run: None, {"eps_grid": "0:2:3"}, InvalidConfig),
        (lambda run: None, {"verifier": "mn-bab"}, UnknownName),
        (lambda run: None, {"verifiers": ["ibp", "mn-bab"]}, UnknownName),
        (lambda run: None, {"samples": 0}, InvalidConfig),
        (lambda run: None, {"dtype": "float16"}, InvalidConfig),
    ],
)
def test_bad_input_leaves_card_untouched(tmp_path, break_it, kwargs, error):
    run = make_run(tmp_path / "run-c")
    break_it(run)
    before = (run / "card.json").read_bytes()
    with pytest.raises(error) as info:
        certify_run(run, progress=False, **kwargs)
    assert isinstance(info.value, ActbenchError) and str(info.value)
    assert (run / "card.json").read_bytes() == before
    assert not (run / "radii.parquet").exists()
    assert read_card(run)["status"] == "trained"


def test_missing_run_folder(tmp_path):
    with pytest.raises(ActbenchError):
        certify_run(tmp_path / "nowhere", progress=False)
