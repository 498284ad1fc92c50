"""The tune loop with a stand-in trial task (no training): equal budgets, resuming, failures, locking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from actbench.errors import ActbenchError
from actbench.sweep import run_dir_of
from actbench.tune import plan_tune, run_tune
from actbench.tune.study import open_storage, open_study, study_lock
from actbench.tune.trial import TrialResult

optuna = pytest.importorskip("optuna")
ROOT = Path(__file__).resolve().parents[1]
CALLS: list = []
BEHAVIOUR: dict = {}


def fake_trial(request, threads=None):
    """Score a trial from its parameters without training: values (1 - p/2, p/2) for its one parameter p."""
    CALLS.append(request)
    if BEHAVIOUR.get("interrupt_at") == len(CALLS):
        raise KeyboardInterrupt
    if request.method in BEHAVIOUR.get("fail", ()):
        return TrialResult(request, run_dir_of(request), "failed", 1, 0.0, "RuntimeError: boom")
    p = float(next(iter(request.tune["params"].values())))
    return TrialResult(request, run_dir_of(request), "complete", 1, 0.0, values=(1 - p / 2, p / 2))


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    BEHAVIOUR.clear()
    yield
    CALLS.clear()
    BEHAVIOUR.clear()


def _plan(tmp_path: Path, trials: int = 3, methods: str = "ibp,sabr", **kwargs):
    return plan_tune(methods, "fashion-mnist", trials=trials, preset="quick", out=tmp_path, device="cpu", **kwargs)


def _run(plan):
    return run_tune(plan, console=Console(quiet=True), show_progress=False, task=fake_trial)


def _trials(plan, method: str):
    return optuna.load_study(study_name=method, storage=f"sqlite:///{plan.storage_path}").get_trials()


def test_every_method_gets_the_same_number_of_trials_and_they_take_turns(tmp_path):
    plan = _plan(tmp_path, trials=3)
    summary = _run(plan)
    assert [r.method for r in CALLS] == ["ibp", "sabr"] * 3
    for method in ("ibp", "sabr"):
        trials = _trials(plan, method)
        assert [t.number for t in trials] == [0, 1, 2]
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        for trial in trials:
            p = next(iter(trial.params.values()))
            assert trial.values == [1 - p / 2, p / 2] and trial.user_attrs["run_id"].startswith(method)
    assert summary.ok and len(summary.ran) == 6 and summary.resumed == 0
    report = json.loads(plan.fronts_path.read_text())
    assert [(r["method"], r["budget"], r["finished"], r["configs"]) for r in report["methods"]] == \
        [("ibp", 3, 3, 3), ("sabr", 3, 3, 3)]
    # every (1 - p/2, p/2) point is on the front; the validation hypervolume is that of the points
    from actbench.compare import hypervolume

    ibp = report["methods"][0]
    assert len(ibp["front"]) == 3 and ibp["hv_test"] is None  # no card, so nothing on test
    assert ibp["hv_val"] == pytest.approx(hypervolume(*zip(*[p["val"] for p in ibp["front"]], strict=True)))
    assert report["note"] == "" and report["trials_per_method"] == 3

    CALLS.clear()
    again = _run(plan)  # nothing left to do
    assert CALLS == [] and again.ran == [] and again.resumed == 0


def test_a_killed_tune_resumes_its_running_trial_and_never_repeats_parameters(tmp_path):
    plan = _plan(tmp_path, trials=3)
    BEHAVIOUR["interrupt_at"] = 4  # the 4th trial (sabr #1) is running when the tune is stopped
    with pytest.raises(KeyboardInterrupt):
        _run(plan)
    interrupted = CALLS[-1]
    assert (interrupted.method, interrupted.tune["trial"]) == ("sabr", 1)
    running = [t for t in _trials(plan, "sabr") if t.state == optuna.trial.TrialState.RUNNING]
    assert [t.number for t in running] == [1]
    assert json.loads(plan.fronts_path.read_text())["methods"][1]["finished"] == 1  # fronts so far were written

    BEHAVIOUR.clear()
    CALLS.clear()
    summary = _run(plan)
    assert summary.resumed == 1
    first = CALLS[0]  # the running trial comes first, with its number, parameters and run id
    assert (first.method, first.tune["trial"], first.tune["params"], first.run_id) == \
        ("sabr", 1, interrupted.tune["params"], interrupted.run_id)
    assert len(CALLS) == 3  # sabr #1 again, then ibp #2 and sabr #2: nothing finished runs again
    for method in ("ibp", "sabr"):
        trials = _trials(plan, method)
        assert [t.number for t in trials] == [0, 1, 2]
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        values = [next(iter(t.params.values())) for t in trials]
        assert len(set(values)) == 3  # a restarted sampler does not draw the first trial's parameters again


def test_a_trial_a_killed_driver_asked_but_never_drew_is_completed(tmp_path):
    plan = _plan(tmp_path, trials=2, methods="ibp")
    plan.folder.mkdir(parents=True)
    storage = open_storage(plan)
    open_study(plan, "ibp", storage).ask()  # running, no parameters yet
    summary = _run(plan)
    assert summary.resumed == 1 and [r.tune["trial"] for r in CALLS] == [0, 1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE and "kappa" in t.params for t in _trials(plan, "ibp"))


def test_a_failing_trial_is_retried_once_then_counts_toward_the_budget(tmp_path):
    plan = _plan(tmp_path, trials=2)
    BEHAVIOUR["fail"] = ("sabr",)
    summary = _run(plan)
    assert [r.method for r in CALLS].count("sabr") == 4  # two trials, two attempts each
    assert len(summary.failed) == 2 and len(summary.ran) == 2 and not summary.ok
    sabr = _trials(plan, "sabr")
    assert [t.state for t in sabr] == [optuna.trial.TrialState.FAIL] * 2
    assert sabr[0].user_attrs["error"] == "RuntimeError: boom"
    report = json.loads(plan.fronts_path.read_text())["methods"][1]
    assert (report["finished"], report["failed"], report["configs"]) == (2, 2, 0)
    assert report["failures"][0]["error"] == "RuntimeError: boom"


def test_growing_the_budget_continues_the_same_study_and_adding_a_method_starts_only_its_own(tmp_path):
    _run(_plan(tmp_path, trials=2, methods="ibp"))
    CALLS.clear()
    plan = _plan(tmp_path, trials=3, methods="ibp,mtl_ibp")
    summary = _run(plan)
    assert sorted((r.method, r.tune["trial"]) for r in CALLS) == [("ibp", 2), ("mtl_ibp", 0), ("mtl_ibp", 1),
                                                                 ("mtl_ibp", 2)]  # fmt: skip
    assert len(summary.ran) == 4 and [len(_trials(plan, m)) for m in ("ibp", "mtl_ibp")] == [3, 3]


def test_a_second_driver_on_the_same_study_is_refused(tmp_path):
    plan = _plan(tmp_path, trials=1, methods="ibp")
    with study_lock(plan.folder), pytest.raises(ActbenchError, match="being run by another actbench tune"):
        _run(plan)
    assert CALLS == []


def test_continuing_a_study_with_another_search_space_is_refused(tmp_path):
    text = (ROOT / "baselines" / "ibp.toml").read_text()
    spec = tmp_path / "ibp.toml"
    spec.write_text(text)
    _run(plan_tune(str(spec), "fashion-mnist", trials=1, preset="quick", out=tmp_path, study="mine"))
    spec.write_text(text.replace("kappa = { low = 0.0, high = 1.0 }", "kappa = { low = 0.0, high = 0.5 }"))
    CALLS.clear()
    with pytest.raises(ActbenchError, match=r"was started for ibp with other settings \(space.kappa.high: 1.0 -> 0.5"):
        _run(plan_tune(str(spec), "fashion-mnist", trials=2, preset="quick", out=tmp_path, study="mine"))
    assert CALLS == []


def test_a_configuration_drawn_twice_is_one_configuration_of_the_front(tmp_path):
    text = (ROOT / "baselines" / "ibp.toml").read_text()
    spec = tmp_path / "ibp_ramp.toml"
    spec.write_text(text.replace("kappa = { low = 0.0, high = 1.0 }", "ramp_epochs = { low = 1, high = 2 }")
                    .replace('name = "ibp"', 'name = "ibp_ramp"'))  # fmt: skip
    plan = plan_tune(str(spec), "fashion-mnist", trials=4, preset="quick", out=tmp_path, sampler="random")
    _run(plan)
    trials = _trials(plan, "ibp_ramp")
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {t.params["ramp_epochs"] for t in trials} <= {1, 2}
    assert all(r.track_settings == {"ramp_epochs": r.tune["params"]["ramp_epochs"]} and r.overrides == {}
               for r in CALLS)  # fmt: skip
    report = json.loads(plan.fronts_path.read_text())["methods"][0]
    assert report["finished"] == 4 and report["configs"] == len({t.user_attrs["run_id"] for t in trials}) <= 2


def test_two_trials_at_once_in_worker_processes(tmp_path):
    plan = _plan(tmp_path, trials=2)
    summary = run_tune(plan, jobs=2, console=Console(quiet=True), show_progress=False, task=fake_trial)
    assert summary.ok and len(summary.ran) == 4
    for method in ("ibp", "sabr"):
        trials = _trials(plan, method)
        assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
        assert len({t.user_attrs["run_id"] for t in trials}) == 2


@pytest.mark.parametrize("sampler", ["nsga2", "random"])
def test_the_other_samplers_run_the_same_budget_and_are_recorded(tmp_path, sampler):
    plan = _plan(tmp_path, trials=4, methods="mtl_ibp", sampler=sampler)
    summary = _run(plan)
    assert summary.ok and len(CALLS) == 4 and all(r.tune["sampler"]["name"] == sampler for r in CALLS)
    trials = _trials(plan, "mtl_ibp")
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert all(0.001 <= t.params["alpha"] <= 1.0 for t in trials)
    assert json.loads(plan.fronts_path.read_text())["methods"][0]["sampler"]["name"] == sampler
