"""The search reads validation only: the sealed test split, trial scores from selection.validation, fronts."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from actbench.data import is_available, load_splits
from actbench.errors import InvalidConfig, SplitSealed
from actbench.splitguard import SealedSplit, guard, is_sealed, sealed
from actbench.tune.fronts import Point, card_point, point_on_test, summarise
from actbench.tune.trial import objective_values, search_view

CARD = {
    "run_id": "ibp-x", "status": "complete", "method": {"name": "ibp", "params": {"kappa": 0.3}},
    "track": {"name": "fashion-mnist", "eps": 0.1, "eps_test": [0.05, 0.1]}, "seed": 0,
    "selection": {"rule": "val-acceps", "epoch": 3, "value": 0.7,
                  "validation": {"accuracy": 0.8, "certified_accuracy": 0.6, "acr": 0.07, "acceps": 0.75}},
    "metrics": {"clean_accuracy": 0.5, "acr": {"best": 0.02}, "eps_test": [0.05, 0.1],
                "certified_accuracy_test": {"best": [0.3, 0.1]}},
    "certifications": [{"protocol": {"id": "p1"}, "track_protocol": True, "metrics": {}}],
    "certification": {"verifiers": ["ibp"]},
    "budget": {"limit": {"kind": "epochs", "value": 3}}, "model": {"name": "cnn3"}, "environment": {},
    "tune": {"study": "s", "trial": 4, "trials": 6, "objectives": "clean,certified", "params": {"kappa": 0.3}},
}  # fmt: skip


def test_a_sealed_split_refuses_every_read_and_the_seal_lifts_after_the_block():
    splits = SimpleNamespace(train=[1], val=[2], test=[3])
    with sealed("test"):
        assert is_sealed("test") and not is_sealed("val")
        guarded = guard(copy.copy(splits))
        assert guarded.train == [1] and guarded.val == [2] and isinstance(guarded.test, SealedSplit)
        for read in (lambda s: len(s), lambda s: s.images, lambda s: s.subset(5), lambda s: list(s)):
            with pytest.raises(SplitSealed, match="the test split is sealed here"):
                read(guarded.test)
        with sealed("test"):  # nests
            pass
        assert is_sealed("test")
    assert not is_sealed("test") and guard(copy.copy(splits)).test == [3]
    with pytest.raises(ValueError):
        sealed("holdout").__enter__()


@pytest.mark.skipif(not is_available("fashion-mnist"), reason="Fashion-MNIST files not installed")
def test_load_splits_hands_out_an_unreadable_test_split_while_sealed():
    with sealed("test"):
        splits = load_splits("fashion-mnist", val_size=5000, train_subset=64, augment=False)
        assert splits.sizes["test"] == 10000 and len(splits.val) == 5000  # sizes still recorded, val readable
        x, _ = splits.val.subset(2).tensors()
        assert x.shape == (2, 1, 28, 28)
        with pytest.raises(SplitSealed):
            splits.test.subset(10)
    assert len(load_splits("fashion-mnist", val_size=5000, train_subset=64, augment=False).test) == 10000


def test_trials_are_scored_on_the_selected_epochs_validation_metrics_only():
    view = search_view(CARD)
    assert not {"metrics", "certifications", "certification"} & set(view) and view["selection"] == CARD["selection"]
    assert objective_values(view, "clean,certified") == (0.8, 0.6)
    assert objective_values(view, "clean,acr") == pytest.approx((0.8, 0.7))  # ACR / eps
    with pytest.raises(InvalidConfig, match="reads validation only"):
        objective_values(CARD, "clean,certified")
    bare = {**view, "selection": {"rule": "val-acceps", "epoch": 3}}
    with pytest.raises(InvalidConfig, match="records no validation metrics"):
        objective_values(bare, "clean,certified")


def test_older_cards_are_scored_from_the_selected_epoch_of_history_csv(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,val_acc,val_ibp_cert_acc,val_ibp_acr\n"
                                          "2,0.5,0.2,0.01\n3,0.7,0.4,0.05\n")  # fmt: skip
    bare = {**search_view(CARD), "selection": {"rule": "val-acceps", "epoch": 3}}
    assert objective_values(bare, "clean,certified", tmp_path) == (0.7, 0.4)


def test_a_cards_test_point_is_read_only_from_its_certification_for_reporting():
    point = card_point(CARD)
    assert point.val == (0.8, 0.6) and point.test == (0.5, 0.1) and point.trial == 4  # test cert at headline eps 0.1
    assert point_on_test(CARD, "clean,acr")[0] == pytest.approx((0.5, 0.2))
    assert point_on_test({**CARD, "status": "trained"}, "clean,certified") == (None, None)


def test_the_front_is_selected_on_validation_and_its_hypervolume_reported_on_both_splits():
    points = [Point("ibp", 0, "a", "kappa=0", (0.6, 0.5), (0.55, 0.50)),
              Point("ibp", 1, "b", "kappa=0.5", (0.8, 0.3), (0.70, 0.35)),
              Point("ibp", 2, "c", "kappa=0.3", (0.5, 0.4), (0.90, 0.90)),  # dominated on validation: left out
              Point("ibp", 3, "b", "kappa=0.5", (0.8, 0.3), (0.70, 0.35))]  # the same configuration again
    summary = summarise(points)
    assert summary["configs"] == 3 and [p["run_id"] for p in summary["front"]] == ["a", "b"]
    assert summary["hv_val"] == pytest.approx(0.8 * 0.3 + 0.6 * 0.2)
    # the test split never picks: c's excellent test point is not on the front and adds nothing
    assert summary["hv_test"] == pytest.approx(0.7 * 0.35 + 0.55 * 0.15)
    untested = summarise([Point("ibp", 0, "a", "", (0.6, 0.5), None)])
    assert untested["hv_test"] is None and untested["hv_val"] == pytest.approx(0.3)


def test_a_run_two_studies_used_counts_in_both_fronts_on_each_ones_objectives(tmp_path):
    from actbench.store import SCHEMA_VERSION, read_card, write_card
    from actbench.tune.fronts import tuned_fronts
    from actbench.tune.trial import record_trial

    card = {key: value for key, value in CARD.items() if key != "tune"}
    card.update({"schema": SCHEMA_VERSION, "environment": {}, "track": {**CARD["track"], "preset": "quick"}})
    write_card(tmp_path, card)
    first = {"study": "s-cert", "trial": 0, "trials": 4, "objectives": "clean,certified", "params": {"kappa": 0.3}}
    record_trial(tmp_path, first, (0.8, 0.6))
    record_trial(tmp_path, {**first, "study": "s-acr", "trial": 2, "objectives": "clean,acr"}, (0.8, 0.7))
    record_trial(tmp_path, {**first, "study": "s-acr", "trial": 2, "objectives": "clean,acr"}, (0.8, 0.7))  # again
    tune = read_card(tmp_path)["tune"]
    assert tune["study"] == "s-cert" and [(r["study"], r["trial"]) for r in tune["also"]] == [("s-acr", 2)]
    rows = {r["study"]: r for r in tuned_fronts([(str(tmp_path), read_card(tmp_path))], "fashion-mnist")}
    assert rows["s-cert"]["front"][0]["test"] == [0.5, 0.1]  # certified accuracy at the headline eps
    assert rows["s-acr"]["front"][0]["test"] == pytest.approx([0.5, 0.2])  # ACR / eps
    assert rows["s-acr"]["front"][0]["val"] == [0.8, 0.7] and rows["s-acr"]["budget"] == 4
