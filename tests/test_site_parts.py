"""Parts of the site with rules of their own: published-point files, thresholds chosen from the data,
verification-status shares and certified-accuracy curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from site_helpers import LITERATURE

from actbench.compare import TrackInfo
from actbench.errors import InvalidConfig
from actbench.leaderboard.literature import load_literature, parse_point
from actbench.leaderboard.plots import certified_curve
from actbench.leaderboard.status import complete_shares, status_table
from actbench.leaderboard.takeaway import auto_thresholds, takeaway

GOOD = {"method": "m", "paper": "p", "link": "https://x.org", "source": "Table 1", "eps": "8/255",
        "certified_accuracy": 0.3, "verifier": "MN-BaB", "time_limit": "1000 s"}


def test_literature_file_is_read_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text(LITERATURE)
    points = load_literature("t", tmp_path)
    assert [p.method for p in points] == ["paper method B", "paper method A"]  # by eps
    assert points[0].clean_accuracy is None and points[1].clean_accuracy == 0.55
    assert load_literature("no-such-track", tmp_path) == []
    assert parse_point(GOOD, "here").eps == pytest.approx(8 / 255)


@pytest.mark.parametrize(("change", "message"), [
    ({"certified_accuracy": 41.0}, "did you mean 0.41"),
    ({"verifier": ""}, "non-empty"),
    ({"link": "example.org"}, "web address"),
    ({"eps": "8/0"}, "divides by zero"),
    ({"table": 2}, "unknown key"),
    ({"time_limit": None}, "missing time_limit"),
])
def test_literature_point_rejects_what_cannot_be_checked(change: dict, message: str) -> None:
    raw = {**GOOD, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(InvalidConfig, match=message):
        parse_point(raw, "file point 1")


def test_literature_file_that_is_not_toml(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text("[[point]\n")
    with pytest.raises(InvalidConfig, match="not a readable TOML"):
        load_literature("t", tmp_path)


def _frame(clean: list[float], cert: list[float]) -> pd.DataFrame:
    """A card-index frame of one run per configuration, complete, under one protocol."""
    rows = []
    for i, (c, k) in enumerate(zip(clean, cert, strict=True)):
        rows.append({"track": "tt", "track_title": "tt", "run_id": f"r{i}", "method": f"m{i % 2}", "title": "m",
                     "key_param": "kappa", "key_value": float(i), "seed": 0, "status": "complete", "preset": "full",
                     "model": "x", "eps": 0.1, "eps_test": (0.1,), "headline_eps": 0.1, "verifiers": ("ibp",),
                     "clean_accuracy": c, "samples": 100.0, "epochs": 1.0, "seconds": 1.0, "propagations": 1.0,
                     "budget": "epochs=1", "updated": "2025-01-01T00:00:00Z", "path": f"/x/r{i}", "config": f"c{i}",
                     "params": {"kappa": float(i)}, "recipe": "shared", "train_subset": None, "source": "actbench",
                     "protocol": "p1", "protocol_label": "ibp", "protocol_sound": True, "protocol_checked": True,
                     "headline": True, "acr_best": k / 10, "acr_ibp": k / 10, "cert_best@0.1": k, "cert_ibp@0.1": k,
                     "attack@0.1": min(1.0, k + 0.1)})  # fmt: skip
    return pd.DataFrame(rows)


def test_thresholds_span_the_robust_configurations() -> None:
    frame = _frame([0.76, 0.79, 0.83, 0.89], [0.6, 0.55, 0.5, 0.0])  # the last one certifies nothing
    info = TrackInfo("tt", "tt", 0.1, (0.1,), 0.1, ("ibp",), "p1")
    taus = auto_thresholds(frame, info)
    assert taus == (0.76, 0.78, 0.80, 0.83)
    narrow = auto_thresholds(_frame([0.801, 0.812], [0.5, 0.4]), info)
    assert narrow == (0.8, 0.805, 0.81)  # half percents when the spread is narrow
    assert auto_thresholds(_frame([0.7], [0.0]), info) == (0.7,)


def test_takeaway_reads_the_strictest_and_loosest_threshold() -> None:
    frame = _frame([0.76, 0.79, 0.83, 0.89], [0.6, 0.55, 0.5, 0.0])
    info = TrackInfo("tt", "tt", 0.1, (0.1,), 0.1, ("ibp",), "p1")
    text = takeaway(frame, info, (0.76, 0.78, 0.80, 0.83))
    assert text == ("At clean accuracy ≥ 83 %, the best certified accuracy at eps 0.1 is 50.0 %, by m0 (kappa=2, "
                    "1 seed); at ≥ 76 % it rises to 60.0 %, by m0 (kappa=0, 1 seed) (configuration means over seeds).")
    assert takeaway(frame, info, ()) == ""


def test_complete_shares_in_every_documented_shape() -> None:
    expected = {"certified": 0.6, "falsified": 0.3, "unknown": 0.1}
    shapes = [
        {"complete": {"eps": [0.05, 0.1], "certified": [9, 6], "falsified": [1, 3], "unknown": [0, 1]}},
        {"metrics": {"complete": {"eps": {"0.1": {"certified": 60, "falsified": 30, "unknown": 10}}}}},
        {"settings": {"complete": {"results": [{"eps": 0.1, "certified": 0.6, "falsified": 0.3, "unknown": 0.1}]}}},
    ]
    for record in shapes:
        assert complete_shares(record, 0.1) == pytest.approx(expected)
        assert complete_shares(record, 0.2) is None
    assert complete_shares({"metrics": {}}, 0.1) is None
    empty = {"complete": {"eps": [0.1], "certified": [0], "falsified": [0], "unknown": [0]}}
    assert complete_shares(empty, 0.1) is None


def test_status_shares_from_the_protocol_add_up() -> None:
    frame = _frame([0.8, 0.7], [0.5, 0.4])
    info = TrackInfo("tt", "tt", 0.1, (0.1,), 0.1, ("ibp",), "p1")
    table = status_table(frame, info, {})
    assert len(table) == 2 and not table["complete"].any()
    first = table.iloc[0]
    assert (first["certified"], first["falsified"], first["unknown"]) == pytest.approx((0.5, 0.4, 0.1))
    unchecked = TrackInfo("tt", "tt", 0.1, (0.1,), 0.1, ("ibp",), "p1", protocol_checked=False)
    assert status_table(frame, unchecked, {}).empty  # no attack: nothing is known to be falsified


def test_certified_curve_counts_correct_samples_at_or_above_each_eps() -> None:
    radii = pd.DataFrame({"radius_best": [0.0, 0.02, 0.05, 0.1, 0.03], "correct": [True, True, True, True, False]})
    grid, acc = certified_curve(radii, 0.1, points=11)
    direct = [(radii["correct"] & (radii["radius_best"] >= e - 1e-12)).mean() for e in grid]
    assert np.allclose(acc, direct)
    assert acc[0] == pytest.approx(0.8) and acc[-1] == pytest.approx(0.2)
