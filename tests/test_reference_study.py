"""``scripts/reference-study.sh`` plans exactly the committed runs, each already complete (README "Results")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actbench.store import load_cards

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"│\s*\d+\s*│\s*(\S+)\s*│.*│\s*(\w+)[^│]*│\s*$")  # run id, first word of the status


def test_the_study_script_plans_the_committed_runs_as_complete() -> None:
    cards = load_cards(ROOT / "results").complete("fashion-mnist") if (ROOT / "results").is_dir() else None
    if cards is None or cards.empty:
        pytest.skip("no committed study results")
    env = {**os.environ, "DRY_RUN": "1", "BIN": str(Path(sys.executable).parent), "COLUMNS": "250"}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "reference-study.sh")], cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    planned = dict(m.groups() for line in out.stdout.splitlines() if (m := ROW.match(line.strip())))
    assert planned, out.stdout
    assert set(planned) == set(cards["run_id"]), "the script and the committed results disagree"
    assert set(planned.values()) == {"complete"}, {k: v for k, v in planned.items() if v != "complete"}
