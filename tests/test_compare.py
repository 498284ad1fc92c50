"""compare: tables computed from the run cards, checked against values read independently from the cards.

Results come from ``tests/fixtures/results/`` (real short runs) when committed, else from the synthetic
folder of ``leaderboard_helpers`` (see its docstring). Every expectation below is derived from the raw
card JSON in the test itself, so it holds for any fixture.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from leaderboard_helpers import add_budget_twin, finite, make_card, raw_cards, results_root

from actbench.compare import (
    DASH,
    compare_command,
    pareto_front,
    pareto_mask,
    parse_thresholds,
    runs_table,
    threshold_table,
)
from actbench.errors import CardError, InvalidConfig, NoResults, UnknownName
from actbench.store import acr_column, cert_column, headline_eps, load_cards


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results_root(tmp_path_factory.mktemp("compare"))


def _track(card: dict) -> str:
    return card["track"]["name"]


def _key(card: dict) -> tuple:
    """A configuration, read independently from the raw card: everything that is not the seed."""
    method = card["method"]
    return (method["name"], json.dumps(method.get("params") or {}, sort_keys=True),
            json.dumps(card["budget"]["limit"], sort_keys=True), card["track"].get("preset", "full"),
            card["track"].get("train_subset"))


def _configs(cards: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for card in cards:
        groups[_key(card)].append(card)
    return groups


def _mean(cards: list[dict], value) -> float:
    values = [value(c) for c in cards]
    values = [v for v in values if finite(v)]
    return statistics.mean(values) if values else math.nan


def _headline(card: dict) -> float:
    metrics = card["metrics"]
    return headline_eps(float(card["track"]["eps"]), metrics.get("eps_test", card["track"].get("eps_test", [])))


def _cert_at_headline(card: dict) -> float:
    metrics, eps = card["metrics"], _headline(card)
    for e, v in zip(metrics["eps_test"], metrics["certified_accuracy_test"]["best"], strict=True):
        if abs(e - eps) < 1e-12:
            return v
    return math.nan


def _tracks(root: Path) -> list[str]:
    return sorted({_track(c) for c in raw_cards(root)})


def test_load_cards_counts_only_complete_runs(root: Path) -> None:
    index = load_cards(root)
    assert index.warnings == []
    complete = raw_cards(root)
    assert len(index.complete()) == len(complete)
    assert set(index.complete()["run_id"]) == {c["run_id"] for c in complete}
    row = index.complete().iloc[0]
    card = next(c for c in complete if c["run_id"] == row["run_id"])
    assert row["clean_accuracy"] == pytest.approx(card["metrics"]["clean_accuracy"])
    assert row[acr_column("best")] == pytest.approx(card["metrics"]["acr"]["best"])


def test_runs_table_mean_std_and_ranking(root: Path) -> None:
    index = load_cards(root)
    for track in _tracks(root):
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for card in raw_cards(root):
            if _track(card) == track:
                groups[_key(card)].append(card)
        table = runs_table(index.frame, track)
        assert len(table) == len(groups)
        assert list(table["rank"]) == list(range(1, len(table) + 1))
        for _, row in table.iterrows():
            members = set(row["runs"].split(","))
            (cards,) = [cs for cs in groups.values() if {c["run_id"] for c in cs} == members]
            assert row["n"] == len(cards) and len({c["method"]["name"] for c in cards}) == 1
            acrs = [c["metrics"]["acr"]["best"] for c in cards]
            cleans = [c["metrics"]["clean_accuracy"] for c in cards]
            assert row["acr_best_mean"] == pytest.approx(statistics.mean(acrs))
            assert row["clean_accuracy_mean"] == pytest.approx(statistics.mean(cleans))
            if len(cards) > 1:
                assert row["acr_best_std"] == pytest.approx(statistics.stdev(acrs))
                assert row["clean_accuracy_std"] == pytest.approx(statistics.stdev(cleans))
            else:
                assert math.isnan(row["acr_best_std"])
        # ranked by mean ACR (best verifier), highest first
        expected = sorted((statistics.mean(c["metrics"]["acr"]["best"] for c in cs) for cs in groups.values()),
                          reverse=True)
        assert list(table["acr_best_mean"]) == pytest.approx(expected)


def test_threshold_cells_match_cards(root: Path) -> None:
    """Threshold cells are seed means of configurations (never a single run), checked from the raw cards."""
    index = load_cards(root)
    taus = (0.5, 0.6, 0.7, 0.8, 0.9)
    for track in _tracks(root):
        cards = [c for c in raw_cards(root) if _track(c) == track]
        table = threshold_table(index.frame, track, taus)
        methods = sorted({c["method"]["name"] for c in cards})
        assert len(table) == len(taus) * len(methods)
        groups = _configs(cards)
        for tau in taus:
            for method in methods:
                row = table[(table["threshold"] == tau) & (table["method"] == method)].iloc[0]
                mine = [cs for key, cs in groups.items() if key[0] == method]
                assert row["configs"] == len(mine)
                ok = [cs for cs in mine if _mean(cs, lambda c: c["metrics"]["clean_accuracy"]) >= tau - 1e-12]
                assert row["qualifying"] == len(ok)
                if not ok:
                    assert math.isnan(row["best_acr"]) and math.isnan(row["best_cert"])
                    continue
                assert row["best_acr"] == pytest.approx(max(_mean(cs, lambda c: c["metrics"]["acr"]["best"])
                                                            for cs in ok))
                certs = [_mean(cs, _cert_at_headline) for cs in ok]
                if any(finite(v) for v in certs):
                    assert row["best_cert"] == pytest.approx(max(v for v in certs if finite(v)))


def test_threshold_table_says_dash_when_no_run_qualifies(root: Path) -> None:
    track = _tracks(root)[0]
    text = compare_command(root, track, "1.0", "best", "markdown")
    cards = [c for c in raw_cards(root) if _track(c) == track]
    if all(c["metrics"]["clean_accuracy"] < 1.0 for c in cards):
        section = text.split("### Robustness")[1].split("###")[0]
        rows = [line for line in section.splitlines() if line.startswith("| ") and "method" not in line]
        assert rows and all(line.count(DASH) == 2 for line in rows)


def test_pareto_front_matches_brute_force(root: Path) -> None:
    """Fronts over configuration means (clean × ACR and clean × certified), checked by brute force."""
    index = load_cards(root)
    for track in _tracks(root):
        front = pareto_front(index.frame, track)
        groups = _configs([c for c in raw_cards(root) if _track(c) == track])
        points = {key: (_mean(cs, lambda c: c["metrics"]["clean_accuracy"]),
                        _mean(cs, lambda c: c["metrics"]["acr"]["best"]), _mean(cs, _cert_at_headline))
                  for key, cs in groups.items()}
        assert len(front) == len(points)
        for _, row in front.iterrows():
            (key,) = [k for k, (x, y, _) in points.items() if k[0] == row["method"]
                      and x == pytest.approx(row["clean_accuracy"]) and y == pytest.approx(row["acr"])]
            x, y, z = points[key]
            mine = [p for k, p in points.items() if k[0] == row["method"]]
            dominated = any(a >= x and b >= y and (a > x or b > y) for a, b, _ in mine)
            assert bool(row["on_front"]) == (not dominated)
            if finite(z):
                dominated = any(a >= x and c >= z and (a > x or c > z) for a, _, c in mine if finite(c))
                assert bool(row["on_front_cert"]) == (not dominated)
        assert front.groupby("method")["on_front"].any().all()  # every method has a front


def test_pareto_mask_rules() -> None:
    assert pareto_mask([0.9, 0.8, 0.7, 0.8], [0.1, 0.2, 0.15, 0.2]) == [True, True, False, True]
    assert pareto_mask([0.5, float("nan")], [0.1, 0.9]) == [True, False]
    assert pareto_mask([], []) == []


def _copy_results(root: Path, dest: Path) -> Path:
    shutil.copytree(root, dest)
    return dest


def test_corrupt_cards_are_skipped_with_their_path(root: Path, tmp_path: Path) -> None:
    results = _copy_results(root, tmp_path / "results")
    track = _tracks(root)[0]
    bad = {
        "bad-json": '{"schema": 1, "run_id": ',
        "wrong-schema": json.dumps({"schema": 99, "run_id": "x"}),
        "missing-keys": json.dumps({"schema": 1, "run_id": "missing-keys", "status": "complete"}),
        "no-metrics": json.dumps(make_card("no-metrics", "ibp", "IBP", "kappa", 0.0, 0, None)),
        "not-object": "[1, 2, 3]",
    }
    for name, text in bad.items():
        (results / track / name).mkdir()
        (results / track / name / "card.json").write_text(text)
    index = load_cards(results)
    assert len(index.warnings) == len(bad)
    for name in bad:
        assert any(str(results / track / name / "card.json") in w for w in index.warnings), name
    assert len(index.complete()) == len(raw_cards(root))
    with pytest.raises(CardError, match="unreadable card.*--skip-invalid"):
        compare_command(results, track, None, "best", "table")
    text = compare_command(results, track, None, "best", "table", skip_invalid=True)
    assert "warning: skipped" in text and "bad-json" in text
    csv = compare_command(results, track, None, "best", "csv", skip_invalid=True)
    assert csv.count("\n") == len(runs_table(index.frame, track)) + 1


def test_compare_command_formats(root: Path) -> None:
    track = _tracks(root)[0]
    index = load_cards(root)
    expected = runs_table(index.frame, track)
    csv = pd.read_csv(io.StringIO(compare_command(root, track, None, "best", "csv")))
    assert list(csv["method"]) == list(expected["method"])
    data = json.loads(compare_command(root, track, "0.6,0.8", "best", "json"))
    assert data["track"] == track and len(data["runs"]) == len(expected)
    assert {t["threshold"] for t in data["thresholds"]} == {0.6, 0.8}
    assert {p["config"] for p in data["pareto"]} == set(index.complete(track)["config"])
    assert data["protocol"]["id"] and data["tuning_budgets"] and len(data["hypervolume"]) == len(data["tuning_budgets"])
    markdown = compare_command(root, track, None, "best", "markdown")
    assert markdown.count("\n| ") >= len(expected) + 2
    table = compare_command(root, track, None, "ibp", "table")
    assert "Robustness at a level of clean accuracy" in table
    assert all(m in table for m in expected["method"])
    everything = json.loads(compare_command(root, None, None, "best", "json"))
    assert set(everything) == set(_tracks(root))


def test_compare_command_cert_column_uses_verifier(root: Path) -> None:
    index = load_cards(root)
    track = _tracks(root)[0]
    table = runs_table(index.frame, track, "ibp")
    headline = _headline(raw_cards(root)[0])
    assert f"{cert_column('ibp', headline)}_mean" in table


def test_compare_command_errors(root: Path, tmp_path: Path) -> None:
    track = _tracks(root)[0]
    with pytest.raises(UnknownName, match="track"):
        compare_command(root, "no-such-track", None, "best", "table")
    with pytest.raises(UnknownName, match="verifier"):
        compare_command(root, track, None, "no-such-verifier", "table")
    with pytest.raises(UnknownName, match="format"):
        compare_command(root, track, None, "best", "html")
    for bad in ("", "abc", "70", "-0.1", "0.5,x"):
        with pytest.raises(InvalidConfig):
            compare_command(root, track, bad, "best", "table")
    with pytest.raises(NoResults, match="no run cards"):
        compare_command(tmp_path, None, None, "best", "table")
    with pytest.raises(NoResults, match="does not exist"):
        compare_command(tmp_path / "missing", None, None, "best", "table")


def test_parse_thresholds() -> None:
    assert parse_thresholds(None) == (0.5, 0.6, 0.7, 0.8, 0.9)
    assert parse_thresholds("0.8, 0.6,0.8") == (0.6, 0.8)
    assert parse_thresholds([0.7]) == (0.7,)
    with pytest.raises(InvalidConfig, match="did you mean 0.7"):
        parse_thresholds("70")


def test_runs_given_other_budgets_get_their_own_rows(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    first = json.loads(sorted(copy.glob("*/*/card.json"))[0].read_text())
    track = _track(first)
    before = runs_table(load_cards(copy).frame, track)
    # the same run once more, given a propagation budget: a new row, not one more seed of the old one
    card = add_budget_twin(copy, "propagations", 1.5e6)
    method = card["method"]["name"]
    original = str(before[before["method"] == method]["budget"].iloc[0])
    after = runs_table(load_cards(copy).frame, track)
    assert len(after) == len(before) + 1
    assert list(after[after["budget"] == "propagations=1.5e+06"]["n"]) == [1]
    same = lambda t: t[(t["method"] == method) & (t["budget"] == original)][["key_value", "n"]]  # noqa: E731
    pd.testing.assert_frame_equal(same(before).reset_index(drop=True), same(after).reset_index(drop=True))
    assert "| budget |" in compare_command(copy, track, None, "best", "markdown")
    only = pd.read_csv(io.StringIO(compare_command(copy, track, None, "best", "csv", "propagations=1.5e6")))
    assert list(only["budget"]) == ["propagations=1.5e+06"] and list(only["method"]) == [method]
    kept = pd.read_csv(io.StringIO(compare_command(copy, track, None, "best", "csv", original)))
    assert len(kept) == len(before) and "| budget |" not in compare_command(copy, track, None, "best",
                                                                            "markdown", original)
    with pytest.raises(InvalidConfig):
        compare_command(copy, track, None, "best", "table", "twelve")
    with pytest.raises(NoResults, match="runs exist but none was given budget epochs=99"):
        compare_command(copy, track, None, "best", "table", "epochs=99")
