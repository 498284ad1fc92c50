"""Planning a tune: everything is checked before any trial starts, and bad input writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actbench.errors import InvalidConfig, UnknownName
from actbench.tune import plan_tune
from actbench.tune.driver import trial_request

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command line as a user runs it (a fresh process)."""
    return subprocess.run([sys.executable, "-m", "actbench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300, check=False)  # fmt: skip


def _spec(tmp_path: Path, name: str, search: str) -> Path:
    """A copy of baselines/ibp.toml with another [search] table."""
    text = (ROOT / "baselines" / "ibp.toml").read_text()
    text = text[: text.index("[search]")] + "[search]\n" + search + "\n"
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace('name = "ibp"', f'name = "{name}"'))
    return path


def test_plan_fixes_spaces_budget_and_a_stable_study_name(tmp_path):
    plan = plan_tune("ibp,sabr", "fashion-mnist", trials=5, preset="quick", out=tmp_path)
    assert plan.methods == ["ibp", "sabr"] and plan.trials == 5 and plan.objectives == "clean,certified"
    assert set(plan.spaces["ibp"]) == {"kappa"} and set(plan.spaces["sabr"]) == {"lam"}
    assert plan.folder == tmp_path / "fashion-mnist" / "tune" / plan.study
    assert plan.study.startswith("clean-certified-tpe-s0-")
    again = plan_tune(["sabr", "ibp"], "fashion-mnist", trials=9, preset="quick", out=tmp_path)
    assert again.study == plan.study  # the methods and the trial count do not name the study: it can grow
    other = plan_tune("ibp", "fashion-mnist", trials=5, preset="quick", objectives="clean,acr", out=tmp_path)
    assert other.study != plan.study and other.study.startswith("clean-acr-")
    assert plan_tune("ibp", "fashion-mnist", trials=5, out=tmp_path).study != plan.study  # full vs quick preset
    assert not tmp_path.joinpath("fashion-mnist").exists()  # planning writes nothing


def test_trial_request_splits_method_parameters_from_track_settings(tmp_path):
    spec = _spec(tmp_path, "ibp_lr", 'kappa = { low = 0.0, high = 1.0 }\nlr = { low = 1e-4, high = 3e-3, log = true }')
    plan = plan_tune(str(spec), "fashion-mnist", trials=2, preset="quick", out=tmp_path)
    request = trial_request(plan, str(spec), 0, {"kappa": 0.25, "lr": 2e-3}, {"name": "tpe"})
    assert request.overrides == {"kappa": 0.25} and request.track_settings == {"lr": 2e-3}
    assert request.tune["trial"] == 0 and request.tune["trials"] == 2 and request.tune["params"]["lr"] == 2e-3
    same = trial_request(plan, str(spec), 1, {"kappa": 0.25, "lr": 2e-3}, {"name": "tpe"})
    assert same.run_id == request.run_id  # the run id is the configuration's, as for any run
    assert trial_request(plan, str(spec), 1, {"kappa": 0.25, "lr": 1e-3}, {}).run_id != request.run_id


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"methods": "pgd"}, InvalidConfig, "no search space declared for pgd"),
        ({"methods": "ibp,standard"}, InvalidConfig, "no search space declared for standard"),
        ({"methods": "magic"}, UnknownName, "unknown method 'magic'"),
        ({"methods": ""}, InvalidConfig, "at least one method"),
        ({"trials": 0}, InvalidConfig, "--trials 0"),
        ({"objectives": "clean,attack"}, InvalidConfig, "clean,certified or clean,acr"),
        ({"sampler": "grid"}, InvalidConfig, "--sampler 'grid'"),
        ({"study": "../escape"}, InvalidConfig, "--study '../escape'"),
        ({"preset": "tiny"}, InvalidConfig, "preset 'tiny'"),
        ({"budget": "epochs=0"}, InvalidConfig, "budget"),
        ({"track": "imagenet"}, UnknownName, "unknown track 'imagenet'"),
        ({"methods": "ibp,ibp"}, None, None),
    ],
)
def test_bad_tunes_are_refused_before_anything_is_written(tmp_path, kwargs, error, message):
    args = {"methods": "ibp", "track": "fashion-mnist", "trials": 3, "out": tmp_path, **kwargs}
    if error is None:
        assert plan_tune(**args).methods == ["ibp"]  # a method named twice is tuned once
        return
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        plan_tune(**args)
    assert not any(tmp_path.iterdir())


def test_a_searched_ramp_must_fit_the_budget(tmp_path):
    spec = _spec(tmp_path, "ibp_ramp", "ramp_epochs = { low = 1, high = 3 }")
    with pytest.raises(InvalidConfig, match=r"1 warm-up \+ 3 ramp epochs > 3 planned epochs"):
        plan_tune(str(spec), "fashion-mnist", trials=2, preset="quick", out=tmp_path)
    plan = plan_tune(str(spec), "fashion-mnist", trials=2, preset="quick", epochs=4, out=tmp_path)
    assert plan.spaces[str(spec)]["ramp_epochs"].kind is int


def test_cli_bad_range_unknown_parameter_and_undeclared_space_exit_2_with_one_line_and_write_nothing(tmp_path):
    out = tmp_path / "results"
    cases = [
        (["--method", str(_spec(tmp_path, "ibp_bad", "kappa = { low = 0.9, high = 0.1 }"))],
         "bad range [0.9, 0.1]: low must be below high"),
        (["--method", str(_spec(tmp_path, "ibp_unknown", "kapa = { low = 0.0, high = 1.0 }"))],
         "unknown parameter 'kapa'"),
        (["--method", "ibp,pgd"], "no search space declared for pgd (a [search] table"),
        (["--method", "ibp", "--executor", "slurm"], "executor 'slurm'"),
    ]  # fmt: skip
    for args, message in cases:
        result = _cli("tune", *args, "--trials", "2", "--preset", "quick", "--out", str(out), cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not out.exists()


def test_run_command_rejects_an_unknown_track_setting_with_exit_2(tmp_path):
    result = _cli("run", "--method", "ibp", "--track-set", "eps=0.3", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2 and "'eps' cannot be changed per run" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "results"
    result = _cli("tune", "--method", "ibp,mtl_ibp", "--trials", "4", "--preset", "quick", "--out", str(out),
                  "--dry-run", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "4 trials per method" in result.stdout and "ibp: kappa in [0, 1] — 0 finished, 4 new" in result.stdout
    assert "mtl_ibp: alpha in [0.001, 1] (log)" in result.stdout and not out.exists()
