"""End-to-end sweeps on a small subset of real Fashion-MNIST: a local Ray cluster, and kill + restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from actbench.data import is_available
from actbench.store import CARD_FILE, CHECKPOINT_FILE, read_card
from actbench.sweep import COMPLETE, plan_sweep, run_dir_of, run_status, run_sweep

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not is_available("fashion-mnist"), reason="Fashion-MNIST files not installed"),
]
TRAIN_SUBSET = 300


def _plan(out: Path, samples: int, epochs: int = 1):
    return plan_sweep(["standard"], "fashion-mnist", seeds=[0, 1], preset="quick", epochs=epochs, out=out,
                      device="cpu", train_subset=TRAIN_SUBSET, certify_samples=samples)  # fmt: skip


def test_ray_sweep_on_a_local_cluster_then_skips_when_run_again(tmp_path):
    pytest.importorskip("ray")
    import ray

    out = tmp_path / "results"
    requests = _plan(out, samples=100)
    summary = run_sweep(requests, executor="ray", num_cpus=2, console=Console(quiet=True))
    assert not ray.is_initialized()  # the local instance started for the sweep is shut down again
    assert summary.ok, [r.error for r in summary.failed]
    assert sorted(r.request.seed for r in summary.completed) == [0, 1] and summary.skipped == []
    for request in requests:
        card = read_card(run_dir_of(request))
        assert card["status"] == "complete" and card["seed"] == request.seed
        assert card["data"]["train_subset"] == TRAIN_SUBSET and card["metrics"]["samples"] == 100
        assert card["track"]["budget"] == {"kind": "epochs", "value": 1}
    stamps = {r.run_id: (run_dir_of(r) / CARD_FILE).stat().st_mtime_ns for r in requests}

    again = run_sweep(requests, executor="ray", num_cpus=2, console=Console(quiet=True))
    assert sorted(r.request.seed for r in again.skipped) == [0, 1] and again.completed == [] and again.ok
    assert {r.run_id: (run_dir_of(r) / CARD_FILE).stat().st_mtime_ns for r in requests} == stamps


def _sweep_command(out: Path, samples: int, epochs: int) -> list[str]:
    return [sys.executable, "-m", "actbench.cli", "sweep", "--methods", "standard", "--seeds", "0,1",
            "--preset", "quick", "--epochs", str(epochs), "--train-subset", str(TRAIN_SUBSET),
            "--samples", str(samples), "--device", "cpu", "--out", str(out), "--quiet"]  # fmt: skip


def _wait_for(condition, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.02)
    return False


def test_sweep_killed_part_way_finishes_only_the_missing_runs_when_restarted(tmp_path):
    out = tmp_path / "results"
    samples, epochs = 30, 3
    first, second = (run_dir_of(r) for r in _plan(out, samples, epochs))
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(_sweep_command(out, samples, epochs), cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert _wait_for(lambda: run_status(first) == COMPLETE, 240, proc), proc.communicate()[0]
        # kill it once the second run has a checkpoint (it is then mid-training), or at least has started
        _wait_for(lambda: (second / CHECKPOINT_FILE).is_file(), 60, proc)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    first_card = (first / CARD_FILE).read_bytes()
    first_mtime = (first / CARD_FILE).stat().st_mtime_ns
    second_status = run_status(second)
    second_created = json.loads((second / CARD_FILE).read_text())["created"] if (second / CARD_FILE).is_file() else None

    restart = subprocess.run(_sweep_command(out, samples, epochs), cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "complete (will skip)" in restart.stdout
    # the finished run was not touched; the other one is complete now
    assert (first / CARD_FILE).read_bytes() == first_card
    assert (first / CARD_FILE).stat().st_mtime_ns == first_mtime
    card = read_card(second)
    assert card["status"] == "complete" and card["budget"]["used"]["epochs"] == epochs
    if second_status != COMPLETE:
        assert "1 completed, 1 skipped" in restart.stdout
        assert "interrupted (will resume)" in restart.stdout or second_created is None
        if second_created is not None:
            assert card["created"] == second_created  # continued in place, not started over
    else:  # the second run finished before the kill landed: everything is skipped
        assert "0 completed, 2 skipped" in restart.stdout
