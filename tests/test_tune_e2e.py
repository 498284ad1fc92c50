"""End-to-end tunes on a small subset of real Fashion-MNIST: killed and continued (CLI), and on local Ray.

A tiny tune is 2 methods × 3 trials of 1 epoch on 300 training images, 20 certified test images.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from actbench.data import is_available
from actbench.errors import SplitSealed
from actbench.splitguard import sealed
from actbench.store import CARD_FILE, CHECKPOINT_FILE, read_card

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not is_available("fashion-mnist"), reason="Fashion-MNIST files not installed"),
]
pytest.importorskip("optuna")
METHODS = ("ibp", "mtl_ibp")
# no complete verification: 1-epoch models leave every sample to the search, 10 s each (tested elsewhere)
SMALL = ["--preset", "quick", "--epochs", "1", "--train-subset", "300", "--samples", "20", "--complete-samples", "0",
         "--device", "cpu"]


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "actbench.cli", "tune", "--method", ",".join(METHODS), "--trials", "3", *SMALL,
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def _trial_rows(db: Path) -> list[tuple[str, int, str]]:
    """(method, trial number, state) of every trial in the study database, read with sqlite3 only."""
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT s.study_name, t.number, t.state FROM trials t JOIN studies s "
                               "ON s.study_id = t.study_id ORDER BY s.study_name, t.number").fetchall()  # fmt: skip
    except sqlite3.Error:
        return []


def _complete_trials(out: Path) -> int:
    dbs = out.glob("fashion-mnist/tune/*/study.db")
    return sum(state == "COMPLETE" for db in dbs for _, _, state in _trial_rows(db))


def _tuned_cards(out: Path) -> dict[str, dict]:
    cards = {}
    for path in sorted(out.glob(f"fashion-mnist/*/{CARD_FILE}")):
        card = json.loads(path.read_text())
        if "tune" in card:
            cards[path.parent.name] = card
    return cards


def _wait_for(condition, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.05)
    return False


def _study_db(out: Path) -> Path:
    (db,) = out.glob("fashion-mnist/tune/*/study.db")
    return db


def _check_finished_tune(out: Path) -> tuple[dict[str, dict], Path]:
    """6 complete cards, 3 complete trials per method told their validation objectives, fronts written."""
    import optuna

    db = _study_db(out)
    cards = _tuned_cards(out)
    assert len(cards) == 6 and all(c["status"] == "complete" for c in cards.values())
    storage = f"sqlite:///{db}"
    for method in METHODS:
        study = optuna.load_study(study_name=method, storage=storage)
        trials = study.get_trials()
        assert sorted(t.number for t in trials) == [0, 1, 2]
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        mine = {c["tune"]["trial"]: (run_id, c) for run_id, c in cards.items() if c["method"]["name"] == method}
        assert sorted(mine) == [0, 1, 2]
        for trial in trials:
            run_id, card = mine[trial.number]
            assert trial.user_attrs["run_id"] == run_id
            validation = card["selection"]["validation"]
            # the study was told the selected epoch's validation metrics, never the test ones
            assert trial.values == [validation["accuracy"], validation["certified_accuracy"]]
            assert card["tune"]["values"] == trial.values
            assert card["tune"]["params"] == trial.params and card["tune"]["trials"] == 3
            assert card["method"]["params"][next(iter(trial.params))] == next(iter(trial.params.values()))
            assert not any(key in json.dumps(trial.user_attrs) for key in ("metrics", "clean_accuracy"))
    fronts = json.loads(db.with_name("fronts.json").read_text())
    assert [row["method"] for row in fronts["methods"]] == list(METHODS)
    for row in fronts["methods"]:
        assert row["budget"] == row["finished"] == 3 and row["failed"] == 0 and row["configs"] == 3
        assert row["front"] and 0.0 <= row["hv_val"] <= 1.0 and row["hv_test"] is not None
    return cards, db


def test_tune_killed_after_two_trials_finishes_six_without_repeating_any(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(_command(out), cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert _wait_for(lambda: _complete_trials(out) >= 2, 400, proc), proc.communicate()[0]
        # kill it while the third trial runs (once its run folder has a checkpoint), or at least has started
        _wait_for(lambda: sum((p.parent / CHECKPOINT_FILE).is_file() for p in out.glob("fashion-mnist/*/card.json"))
                  >= 3, 90, proc)  # fmt: skip
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    db = _study_db(out)
    before = _trial_rows(db)
    finished_before = {(m, n) for m, n, s in before if s == "COMPLETE"}
    running_before = {(m, n) for m, n, s in before if s == "RUNNING"}
    assert len(finished_before) >= 2 and len(finished_before) + len(running_before) <= 6
    kept = {run_id: (out / "fashion-mnist" / run_id / CARD_FILE).read_bytes()
            for run_id, card in _tuned_cards(out).items() if card["status"] == "complete"
            and (card["method"]["name"], card["tune"]["trial"]) in finished_before}  # fmt: skip
    assert len(kept) == len(finished_before)

    # continued with two trials at once (worker processes): the executor is not part of the study
    restart = subprocess.run(_command(out, "--jobs", "2"), cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    assert restart.returncode == 0, restart.stdout + restart.stderr
    cards, db = _check_finished_tune(out)
    # nothing finished before the kill ran again; the trial running at the kill was continued, not redrawn
    for run_id, blob in kept.items():
        assert (out / "fashion-mnist" / run_id / CARD_FILE).read_bytes() == blob
    after = _trial_rows(db)
    assert len(after) == 6 and {(m, n) for m, n, _ in after} == {(m, n) for m in METHODS for n in range(3)}
    left = 6 - len(finished_before)
    assert f"{len(running_before)} resumed" in restart.stdout
    ran = int(restart.stdout.split("tune finished: ")[1].split(" trials run")[0])
    reused = int(restart.stdout.split("trials run, ")[1].split(" reused")[0])
    assert ran + reused == left and len({c["run_id"] for c in cards.values()}) == 6

    # run once more: nothing to do, nothing touched
    stamps = {run_id: (out / "fashion-mnist" / run_id / CARD_FILE).stat().st_mtime_ns for run_id in cards}
    again = subprocess.run(_command(out), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 trials run, 0 reused" in again.stdout, again.stdout + again.stderr
    assert {r: (out / "fashion-mnist" / r / CARD_FILE).stat().st_mtime_ns for r in cards} == stamps

    # compare reports the tuned fronts with their budget
    compare = [sys.executable, "-m", "actbench.cli", "compare", "--results", str(out), "--dataset", "fashion-mnist",
               "--format", "json"]  # fmt: skip
    shown = subprocess.run(compare, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    tuned = json.loads(shown.stdout)["tuned"]
    assert [(r["method"], r["budget"], r["configs"]) for r in tuned] == [(m, 3, 3) for m in METHODS]

    # the guard the search phase runs under really seals the test split: certification cannot run inside it
    from actbench.certify.run import certify_run

    run_dir = out / "fashion-mnist" / next(iter(cards))
    with sealed("test"), pytest.raises(SplitSealed):
        certify_run(run_dir, samples=5, progress=False)
    assert read_card(run_dir)["status"] == "complete"


def test_ray_tune_runs_the_same_tiny_tune_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("ray")
    import ray

    from actbench.tune import plan_tune, run_tune

    out = tmp_path / "results"
    plan = plan_tune(list(METHODS), "fashion-mnist", trials=3, preset="quick", epochs=1, train_subset=300,
                     certify_samples=20, complete_samples=0, device="cpu", out=out)  # fmt: skip
    summary = run_tune(plan, executor="ray", num_cpus=2, console=Console(quiet=True), show_progress=False)
    assert not ray.is_initialized()  # the local instance started for the tune is shut down again
    assert summary.ok and len(summary.ran) == 6, [r.error for r in summary.failed]
    _check_finished_tune(out)
