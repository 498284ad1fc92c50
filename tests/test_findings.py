"""The findings sentences say what the cards say, including where the headline method loses or ties."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from leaderboard_helpers import TRACK, _metrics, _radii, make_card

from actbench.compare import load_results, track_info
from actbench.leaderboard.findings import _versus, findings


def _write(root: Path, method: str, kappa: float, seed: int, clean: float, cert: float) -> None:
    radii = _radii(np.random.default_rng(seed), 50, 0.8, 0.5)
    metrics = _metrics(radii)
    metrics["clean_accuracy"] = clean
    metrics["acr"] = {v: cert * 0.1 for v in metrics["acr"]}
    for key in ("certified_accuracy", "certified_accuracy_test"):
        metrics[key] = {v: [cert] * len(values) for v, values in metrics[key].items()}
    card = make_card(f"{method}-k{kappa}-s{seed}", method, method, "kappa", kappa, seed, metrics)
    run_dir = root / TRACK / card["run_id"]
    run_dir.mkdir(parents=True)
    (run_dir / "card.json").write_text(json.dumps(card))
    radii.to_parquet(run_dir / "radii.parquet", index=False)


def _study(root: Path, spread: float = 0.001) -> list[str]:
    for seed, sign in ((0, -1), (1, 1)):
        _write(root, "ibp", 0.0, seed, 0.76, 0.64 + sign * 0.001)
        _write(root, "ibp", 0.5, seed, 0.80, 0.60 + sign * 0.001)
        _write(root, "adaptive", 0.0, seed, 0.81, 0.63 + sign * spread)
        _write(root, "adaptive", 0.5, seed, 0.86, 0.55 + sign * 0.001)
    index = load_results(root)
    return findings(index.frame, track_info(index.frame, TRACK), (0.75, 0.8, 0.85))


def test_findings_report_losses_wins_and_levels(tmp_path: Path) -> None:
    lines = _study(tmp_path / "results")
    at = {tau: next(line for line in lines if line.startswith(f"At clean accuracy ≥ {tau} %")) for tau in (75, 80, 85)}
    assert "ibp certifies the most" in at[75] and "64.0 %" in at[75] and "1.0 points below it" in at[75]
    assert "adaptive certifies the most" in at[80] and "3.0 points above ibp (60.0 %)" in at[80]
    assert "adaptive certifies the most" in at[85] and "55.0 %" in at[85]
    assert any(line.startswith("Hypervolume (clean × certified") for line in lines)


def test_equal_hypervolumes_are_a_tie(tmp_path: Path) -> None:
    root = tmp_path / "results"
    for method in ("ibp", "adaptive"):
        _write(root, method, 0.0, 0, 0.8, 0.0)  # nothing certified: both hypervolumes are 0
    index = load_results(root)
    lines = findings(index.frame, track_info(index.frame, TRACK), (0.75,))
    assert "Hypervolume (clean × certified accuracy at 0.1): adaptive ties with ibp at 0.0000." in lines


def test_a_difference_within_the_seed_spread_is_a_tie(tmp_path: Path) -> None:
    lines = _study(tmp_path / "results", spread=0.02)  # adaptive kappa=0: 61 % and 65 % over its two seeds
    line = next(line for line in lines if line.startswith("At clean accuracy ≥ 75 %"))
    assert "tied with it" in line and "below" not in line
    assert _versus(0.70, 0.01, 0.60, 0.01, "x") == "10.0 points above x"
    assert _versus(0.60, float("nan"), 0.61, float("nan"), "x") == "1.0 points below x"
    assert _versus(0.60, 0.004, 0.605, 0.002, "x").startswith("tied with x")


def test_the_headline_method_alone_gives_no_ranking(tmp_path: Path) -> None:
    root = tmp_path / "results"
    _write(root, "adaptive", 0.0, 0, 0.81, 0.63)
    index = load_results(root)
    lines = findings(index.frame, track_info(index.frame, TRACK), (0.75,))
    assert not any(line.startswith("Hypervolume") for line in lines)
    assert any("adaptive certifies the most" in line for line in lines)
