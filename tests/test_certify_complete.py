"""Complete verification inside certification: the phase after the cascade, its card fields, resume,
and alpha-crown as a cascade verifier."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_certify_fixtures import fmnist, make_run, one_thread

import actbench.complete as complete_pkg
from actbench.certify.attack import margins, pgd
from actbench.certify.complete import STATE_FILE, CompleteSettings
from actbench.certify.engine import AttackSettings
from actbench.certify.run import certify_run
from actbench.errors import InvalidConfig
from actbench.models import load_model
from actbench.store import read_card, write_card

FAST_ATTACK = AttackSettings(steps=5, restarts=1, bisect_steps=3)
pytestmark = pytest.mark.skipif(fmnist()[2] != "fashion-mnist", reason="needs the Fashion-MNIST files")


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def complete_run(path, samples: int = 16):
    """A trained run whose track asks for complete verification at eps 0.03 (above the cascade's cap
    0.02, so every correctly classified, unattacked sample is searched)."""
    run = make_run(path, samples=samples)
    card = read_card(run)
    card["track"]["certify_complete"] = {"verifier": "bab", "eps": [0.03], "samples": None, "timeout": 10.0,
                                         "clock": "wall", "options": {}}
    write_card(run, card)
    return run


def test_bab_phase_counts_and_records(tmp_path):
    run = complete_run(tmp_path / "run")
    card = certify_run(run, verifier="bab", progress=False, attack_settings=FAST_ATTACK, complete_timeout=5,
                       complete_samples=12)
    record = card["certifications"][-1]  # another protocol than the track's: a record beside the headline
    assert not record["track_protocol"] and record["protocol"]["complete"]["timeout"] == 5
    phase = record["metrics"]["complete"]
    assert phase["verifier"] == "bab" and phase["samples"] == 12 and phase["eps"] == [0.03]
    (row,) = phase["per_eps"]
    parts = row["certified"] + row["falsified"] + row["unknown"] + row["misclassified"]
    assert parts == 12 and row["certified"] >= row["certified_by_cascade"]
    assert row["certified_accuracy"] == pytest.approx(row["certified"] / 12)
    assert record["settings"]["complete"]["timeout"] == 5
    rec = pd.read_parquet(run / record["radii"])
    status = rec["complete_0.03"].to_numpy(str)
    assert (status[12:] == "").all() and set(status[:12]) <= {"certified", "verified", "falsified", "unknown",
                                                               "misclassified"}
    # what the search proved lies strictly between the cascade's certificate and the attack
    searched = np.isin(status[:12], ["verified"])
    assert searched.sum() >= 3
    assert (rec["radius_best"].to_numpy()[:12][searched] < 0.03).all()
    assert (rec["radius_attack"].to_numpy()[:12][searched] > 0.03).all()
    assert row["searched"] == (status[:12] == "verified").sum() + (status[:12] == "unknown").sum() + \
        row["falsified_by_search"]
    lines = (run / STATE_FILE).read_text().splitlines()
    assert json.loads(lines[0])["key"]["verifier"] == "bab" and len(lines) == 1 + row["searched"]
    # soundness sweep: no sample the search proved at 0.03 falls to a strong PGD there
    idx = np.nonzero(status[:12] == "verified")[0]
    model, _ = load_model(run / "model.pt")
    x, y = fmnist()[1].tensors(torch.as_tensor(idx))
    x, m64 = x.double().repeat(8, 1, 1, 1), model.double()
    y = y.repeat(8)
    adv = pgd(m64, x, y, 0.03, loss="margin", steps=50, step_size=0.1, restarts=3,
              generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert bool((margins(m64(adv), y) > 0).all())


def test_interrupted_phase_resumes_without_redoing_samples(tmp_path, monkeypatch):
    run = complete_run(tmp_path / "run", samples=10)
    calls = []
    real = complete_pkg.verify_compiled

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the machine dies in the middle of the third search
        return real(*args, **kwargs)

    monkeypatch.setattr(complete_pkg, "verify_compiled", counting)
    kwargs = dict(verifier="bab", progress=False, attack_settings=FAST_ATTACK, complete_timeout=5)
    before = read_card(run)
    with pytest.raises(KeyboardInterrupt):
        certify_run(run, **kwargs)
    assert read_card(run) == before, "an interrupted certification leaves the card untouched"
    assert len((run / STATE_FILE).read_text().splitlines()) == 1 + 2
    calls.clear()
    monkeypatch.setattr(complete_pkg, "verify_compiled", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    card = certify_run(run, **kwargs)
    searched = card["certifications"][-1]["metrics"]["complete"]["per_eps"][0]["searched"]
    assert searched >= 3 and len(calls) == searched - 2
    calls.clear()
    certify_run(run, **kwargs)  # everything is logged: nothing is searched again
    assert calls == []
    certify_run(run, **{**kwargs, "complete_timeout": 4})  # another setting: a fresh log
    assert len(calls) == searched


def test_alpha_crown_in_the_cascade_only_raises_radii(tmp_path):
    run = make_run(tmp_path / "run", samples=12)
    base = certify_run(run, verifiers=["ibp", "crown-ibp"], progress=False, attack_settings=FAST_ATTACK)
    base = base["certifications"][-1]
    r0 = pd.read_parquet(run / base["radii"])["radius_best"].to_numpy()
    card = certify_run(run, verifiers=["ibp", "crown-ibp", "alpha-crown"], progress=False,
                       attack_settings=FAST_ATTACK)
    record = card["certifications"][-1]
    rec = pd.read_parquet(run / record["radii"])
    assert "radius_alpha-crown" in rec and (rec["radius_best"].to_numpy() >= r0).all()
    assert record["metrics"]["acr"]["best"] >= base["metrics"]["acr"]["best"]
    single = certify_run(run, verifier="alpha-crown", progress=False, attack_settings=FAST_ATTACK)
    assert single["certifications"][-1]["settings"]["verifiers"] == ["alpha-crown"]


def test_bad_complete_settings_are_rejected_before_anything_is_written(tmp_path):
    run = make_run(tmp_path / "run", samples=8)
    before = read_card(run)
    with pytest.raises(InvalidConfig):
        certify_run(run, verifier="bab", progress=False, complete_timeout=-1)
    with pytest.raises(InvalidConfig):
        CompleteSettings.from_track({"verifier": "nope"}, [0.1])
    with pytest.raises(InvalidConfig):
        CompleteSettings.from_track({"samples": 10, "typo": 1}, [0.1])
    with pytest.raises(InvalidConfig):
        CompleteSettings.from_track({"clock": "sundial"}, [0.1])
    assert read_card(run) == before and not (run / STATE_FILE).exists()


def test_track_with_complete_table_makes_it_part_of_the_headline(tmp_path):
    run = complete_run(tmp_path / "run", samples=8)
    card = certify_run(run, progress=False)
    record = card["certifications"][-1]
    assert record["track_protocol"] and "complete bab at 0.03" in record["protocol"]["label"]
    assert card["metrics"]["complete"]["per_eps"][0]["eps"] == 0.03
    assert "complete_0.03" in pd.read_parquet(run / "radii.parquet")
