"""compare's complete-verification table: seed means of what branch and bound decided on the subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from leaderboard_helpers import EPS, TRACK, _metrics, _radii, make_card

from actbench.compare import compare_command, complete_runs, runs_table
from actbench.compare_complete import complete_table
from actbench.store import load_cards


def _summary(samples: int, cascade: int, verified: int, falsified: int, unknown: int, wrong: int) -> dict:
    searched = verified + unknown + falsified
    return {"verifier": "bab", "timeout": 10, "samples": samples, "per_eps": [{
        "eps": EPS, "certified": cascade + verified, "certified_by_cascade": cascade, "verified_by_search": verified,
        "falsified": falsified + 3, "falsified_by_search": falsified, "unknown": unknown, "misclassified": wrong,
        "searched": searched, "seconds": 2.0 * searched, "median_seconds": 1.5,
        "certified_accuracy": (cascade + verified) / samples,
        "upper_accuracy": (samples - falsified - 3 - wrong) / samples}]}


def _write(root: Path, run_id: str, seed: int, summary: dict | None) -> None:
    rng = np.random.default_rng(seed)
    card = make_card(run_id, "ibp", "IBP", "kappa", 0.0, seed, None)
    radii = _radii(rng, 200, 0.8, 0.5)
    card["metrics"] = _metrics(radii)
    if summary is not None:
        card["metrics"]["complete"] = summary
    run_dir = root / TRACK / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "card.json").write_text(json.dumps(card))
    radii.to_parquet(run_dir / "radii.parquet", index=False)


def test_complete_table_averages_the_seeds_of_a_configuration(tmp_path: Path) -> None:
    root = tmp_path / "results"
    _write(root, "ibp-s0", 0, _summary(100, 60, 10, 4, 2, 20))
    _write(root, "ibp-s1", 1, _summary(100, 64, 8, 2, 0, 22))
    frame = load_cards(root).frame
    table = complete_table(complete_runs(frame, TRACK), runs_table(frame, TRACK))
    assert len(table) == 1
    row = table.iloc[0]
    assert row["n"] == 2 and row["samples"] == 100
    assert np.isclose(row["cascade_accuracy_mean"], 0.62)
    assert np.isclose(row["certified_accuracy_mean"], 0.71)  # (70 + 72) / 2 of 100
    assert np.isclose(row["upper_accuracy_mean"], ((100 - 7 - 20) + (100 - 5 - 22)) / 200)
    assert row["unknown"] == 1 and np.isclose(row["unknown_share"], 0.01)
    text = compare_command(root, TRACK, fmt="markdown")
    assert "### Complete verification" in text and "bab, 10 s per sample" in text
    assert "| ibp | kappa=0 | 2 |" in text.split("### Complete verification")[1]


def test_no_complete_phase_no_table(tmp_path: Path) -> None:
    root = tmp_path / "results"
    _write(root, "ibp-s0", 0, None)
    frame = load_cards(root).frame
    assert complete_table(complete_runs(frame, TRACK), runs_table(frame, TRACK)).empty
    assert "Complete verification" not in compare_command(root, TRACK, fmt="markdown")
