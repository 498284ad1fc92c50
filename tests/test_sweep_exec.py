"""Sweep execution without training: retries, failure reports, worker processes, Ray connection errors."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import actbench.sweep as sweep_module
from actbench.errors import ActbenchError
from actbench.runner import RunOutcome, RunRequest
from actbench.sweep import failures_table, plan_sweep, run_dir_of, run_sweep


def _requests(out: Path, seeds: list[int]) -> list[RunRequest]:
    return plan_sweep(["standard"], "fashion-mnist", seeds=seeds, preset="quick", epochs=1, out=out, device="cpu")


class FlakyRuns:
    """A stand-in for execute_run: seed 1 fails once then succeeds, seed 2 always fails, others succeed."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, request: RunRequest) -> RunOutcome:
        self.calls.append(request.seed)
        assert request.progress is False  # no per-run progress bars inside a sweep
        if request.seed == 2 or (request.seed == 1 and self.calls.count(1) == 1):
            raise RuntimeError(f"boom on seed {request.seed}")
        return RunOutcome(run_dir_of(request), {"status": "complete"})


def test_failed_run_is_retried_once_and_reported_without_stopping_the_others(tmp_path, monkeypatch):
    fake = FlakyRuns()
    monkeypatch.setattr(sweep_module, "execute_run", fake)
    requests = _requests(tmp_path / "results", [0, 1, 2, 3])
    console = Console(record=True, width=200)
    summary = run_sweep(requests, console=console)
    assert sorted(fake.calls) == [0, 1, 1, 2, 2, 3]  # one retry each for the failures, none for the rest
    assert fake.calls.index(3) > fake.calls.index(2)  # the failure did not stop the later run
    assert sorted(r.request.seed for r in summary.completed) == [0, 1, 3]
    assert [r.request.seed for r in summary.failed] == [2]
    assert summary.skipped == [] and not summary.ok and summary.total == 4
    failed = summary.failed[0]
    assert failed.attempts == 2 and failed.error == "RuntimeError: boom on seed 2"
    assert next(r for r in summary.completed if r.request.seed == 1).attempts == 2
    report = Console(record=True, width=200)
    report.print(failures_table(summary))
    text = report.export_text()
    assert "boom on seed 2" in text and failed.request.run_id in text
    assert "retrying" in console.export_text()


def test_cli_reports_failures_and_exits_non_zero(tmp_path, monkeypatch):
    from actbench.cli import app

    monkeypatch.setattr(sweep_module, "execute_run", FlakyRuns())
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["sweep", "--methods", "standard", "--seeds", "0,2", "--preset", "quick",
                                      "--epochs", "1", "--device", "cpu", "--out", str(out)],
                                env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "1 completed, 0 skipped (already complete), 1 failed" in result.output
    assert "1 failed runs" in result.output and "boom on seed 2" in result.output


def test_worker_processes_report_errors_of_their_runs(tmp_path):
    """--jobs 2: runs go to spawned worker processes; a run that fails there is retried and reported."""
    bad = RunRequest(method="standard", track="fashion-mnist", preset="quick", epochs=1, out=tmp_path / "r",
                     device="cpu", overrides={"nope": 1}, run_id="bad-param")  # fmt: skip
    bad2 = RunRequest(method="no-such-method", track="fashion-mnist", out=tmp_path / "r", run_id="bad-method")
    summary = run_sweep([bad, bad2], jobs=2, show_progress=False, console=Console(quiet=True))
    assert {r.request.run_id for r in summary.failed} == {"bad-param", "bad-method"}
    assert all(r.attempts == 2 for r in summary.failed)
    errors = {r.request.run_id: r.error for r in summary.failed}
    assert "unknown method 'no-such-method'" in errors["bad-method"]
    assert "'nope'" in errors["bad-param"]


def test_unreachable_ray_address_fails_fast_before_anything_runs(tmp_path):
    pytest.importorskip("ray")
    import ray

    out = tmp_path / "results"
    requests = _requests(out, [0])
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1"):
        start = time.monotonic()
        with pytest.raises(ActbenchError, match=r"cannot reach the Ray cluster at '.*127\.0\.0\.1:1'"):
            run_sweep(requests, executor="ray", address=address, console=Console(quiet=True))
        assert time.monotonic() - start < 10
    with pytest.raises(ActbenchError, match="host:port"):
        run_sweep(requests, executor="ray", address="nonsense", console=Console(quiet=True))
    assert not ray.is_initialized()
    assert not out.exists()


def test_auto_address_without_a_cluster_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(sweep_module, "RAY_CURRENT_CLUSTER", tmp_path / "none")
    with pytest.raises(ActbenchError, match="no running Ray cluster found"):
        run_sweep(_requests(tmp_path / "r", [0]), executor="ray", address="auto", console=Console(quiet=True))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ActbenchError, match="cannot reach"):
        run_sweep(_requests(tmp_path / "r", [0]), executor="ray", address="auto", console=Console(quiet=True))


def test_missing_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(ActbenchError, match=r"actbench\[ray\]"):
        run_sweep(_requests(tmp_path / "r", [0]), executor="ray", console=Console(quiet=True))


def test_bad_executor_and_jobs(tmp_path):
    requests = _requests(tmp_path / "r", [0])
    with pytest.raises(ActbenchError, match="executor"):
        run_sweep(requests, executor="slurm")
    with pytest.raises(ActbenchError, match="jobs"):
        run_sweep(requests, jobs=0)
