"""The README's study tables are what ``actbench compare`` prints for the committed cards."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from actbench.store import load_cards

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme-results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_equal_compare_on_committed_results():
    script = _script()
    cards = list((ROOT / "results" / script.TRACK).glob("*/card.json"))
    if not cards:
        pytest.skip("no committed study results")
    block = script.readme_block((ROOT / "README.md").read_text())
    assert block == script.study_tables(), "README out of date: run python scripts/readme-results.py"
    findings = script.readme_block((ROOT / "README.md").read_text(), script.FINDINGS)
    assert findings == script.study_findings(), "README findings out of date: run python scripts/readme-results.py"
    assert "adaptive ranks" in findings  # the hypervolume sentences: the study has ACERT runs
    complete = load_cards(ROOT / "results").complete(script.TRACK)
    runs_rows = [line.split("|") for line in block.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert sum(int(row[4]) for row in runs_rows) == len(complete)  # the n column counts every complete run


def test_readme_block_needs_markers():
    script = _script()
    with pytest.raises(ValueError):
        script.readme_block("no markers here")


def test_committed_site_shows_every_committed_run():
    cards = list((ROOT / "results").glob("*/*/card.json"))
    if not cards:
        pytest.skip("no committed study results")
    frame = load_cards(ROOT / "results").complete()
    complete = dict(zip(frame["run_id"], frame["track"], strict=True))
    for run_id, track in complete.items():
        assert (ROOT / "site" / "runs" / track / f"{run_id}.html").is_file(), f"site lacks the page of {run_id}"
        assert run_id in (ROOT / "site" / "tracks" / f"{track}.html").read_text(), f"{track} page lacks {run_id}"
    pages = {p.stem for p in (ROOT / "site" / "runs").glob("*/*.html")}
    assert pages == set(complete), "site/ has pages of runs that are not in results/: rebuild it"
