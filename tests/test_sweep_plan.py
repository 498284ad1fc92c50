"""Sweep planning: grid expansion per method, seeds, up-front validation, plan statuses, dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from actbench.errors import InvalidConfig, UnknownName
from actbench.objectives import Objective, register_objective
from actbench.objectives.base import positive, unit_interval
from actbench.runner import RunRequest
from actbench.store import CARD_FILE, CHECKPOINT_FILE, SCHEMA_VERSION
from actbench.sweep import (
    COMPLETE,
    FAILED,
    INTERRUPTED,
    NEW,
    parse_grid,
    parse_int_list,
    parse_values,
    plan_sweep,
    plan_table,
    run_dir_of,
    run_status,
)


@register_objective("sweeptest_kappa")
class _KappaObjective(Objective):
    """A stand-in objective with a κ-like weight in [0, 1] (planning never trains it)."""

    PARAMS = {"kappa": unit_interval("weight", 0.5), "steps": positive(int, "steps", 3)}
    KEY_PARAM = "kappa"


@register_objective("sweeptest_lambda")
class _LambdaObjective(Objective):
    """A stand-in objective with a positive λ-like box scale."""

    PARAMS = {"lambda": positive(float, "box scale", 0.4), "steps": positive(int, "steps", 3)}
    KEY_PARAM = "lambda"


SPEC = """name = "{name}"
title = "{name} (test spec)"
objective = "{objective}"
ibp_init = false
[citation]
authors = "A. Author"
title = "A paper"
venue = "Nowhere"
year = 2024
link = "https://example.org"
"""


@pytest.fixture()
def specs(tmp_path: Path) -> dict[str, str]:
    """Two method specs on the stand-in objectives, as spec-file paths."""
    out = {}
    for name, objective in (("kmethod", "sweeptest_kappa"), ("lmethod", "sweeptest_lambda")):
        path = tmp_path / "specs" / f"{name}.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(SPEC.format(name=name, objective=objective))
        out[name] = str(path)
    return out


def _plan(specs: dict[str, str], out: Path, **kwargs) -> list[RunRequest]:
    kwargs.setdefault("methods", [specs["kmethod"], specs["lmethod"], "standard"])
    return plan_sweep(track="fashion-mnist", preset="quick", epochs=1, out=out, **kwargs)


def test_grid_applies_only_to_methods_that_take_the_key(specs, tmp_path):
    out = tmp_path / "results"
    grid = {"kappa": [0, 0.25, 0.5], "lambda": [0.3, 0.6]}
    requests = _plan(specs, out, grid=grid, seeds=[0, 1])
    by_method: dict[str, list[RunRequest]] = {}
    for r in requests:
        by_method.setdefault(Path(r.method).stem, []).append(r)
    assert len(by_method["kmethod"]) == 3 * 2
    assert len(by_method["lmethod"]) == 2 * 2
    assert len(by_method["standard"]) == 2  # no grid key of its own: defaults, once per seed
    assert {tuple(r.overrides) for r in by_method["kmethod"]} == {("kappa",)}
    assert {tuple(r.overrides) for r in by_method["lmethod"]} == {("lambda",)}
    assert all(r.overrides == {} for r in by_method["standard"])
    assert sorted((r.overrides["kappa"], r.seed) for r in by_method["kmethod"]) == [
        (0, 0), (0, 1), (0.25, 0), (0.25, 1), (0.5, 0), (0.5, 1)]  # fmt: skip
    # every run has its own deterministic id, progress bars are off, and the id follows the run folder
    assert len({r.run_id for r in requests}) == len(requests) == 12
    assert all(r.progress is False for r in requests)
    assert run_dir_of(requests[0]) == out / "fashion-mnist" / requests[0].run_id
    again = _plan(specs, out, grid=grid, seeds=[0, 1])
    assert [r.run_id for r in again] == [r.run_id for r in requests]
    assert not out.exists()  # planning writes nothing


def test_shared_key_and_fixed_overrides(specs, tmp_path):
    """A key both methods declare applies to both; --set keys apply, like grid keys, where declared."""
    requests = _plan(specs, tmp_path / "r", methods=[specs["kmethod"], specs["lmethod"]],
                     grid={"steps": [1, 2]}, overrides={"kappa": 0.1}, seeds=[3])  # fmt: skip
    assert len(requests) == 4
    kruns = [r for r in requests if "kmethod" in r.method]
    lruns = [r for r in requests if "lmethod" in r.method]
    assert [r.overrides for r in kruns] == [{"kappa": 0.1, "steps": 1}, {"kappa": 0.1, "steps": 2}]
    assert [r.overrides for r in lruns] == [{"steps": 1}, {"steps": 2}]
    assert {r.seed for r in requests} == {3}


def test_scoped_keys_apply_to_one_method(specs, tmp_path):
    """``method.param`` limits a key to one method and wins over the plain key for that method."""
    requests = _plan(specs, tmp_path / "r", methods=[specs["kmethod"], specs["lmethod"]], seeds=[0],
                     grid={"steps": [1, 2], "lmethod.steps": [5]}, overrides={"kmethod.kappa": 0.2})  # fmt: skip
    assert [r.overrides for r in requests if "kmethod" in r.method] == [{"kappa": 0.2, "steps": 1},
                                                                        {"kappa": 0.2, "steps": 2}]  # fmt: skip
    assert [r.overrides for r in requests if "lmethod" in r.method] == [{"steps": 5}]
    with pytest.raises(InvalidConfig, match="'sabr' is not one of the selected methods"):
        _plan(specs, tmp_path / "r", methods=[specs["kmethod"]], grid={"sabr.lam": [0.1]})
    with pytest.raises(InvalidConfig, match="method kmethod has no hyper-parameter 'lambda'"):
        _plan(specs, tmp_path / "r", methods=[specs["kmethod"]], grid={"kmethod.lambda": [0.1]})


REAL = ("adaptive", "ibp", "sabr")


def test_registered_methods_take_their_own_keys(tmp_path):
    """The design's example: κ for ACERT/IBP (and SABR, which also declares κ), λ (``lam``) for SABR only."""
    from actbench.objectives import list_methods

    if not set(REAL) <= set(list_methods()):
        pytest.skip("adaptive, ibp and sabr specs are not registered yet")
    out = tmp_path / "results"
    requests = plan_sweep(list(REAL), "fashion-mnist", grid={"kappa": "0,0.25,0.5", "lam": "0.3,0.6"},
                          seeds=[0, 1], preset="quick", out=out)  # fmt: skip
    count = {m: sum(r.method == m for r in requests) for m in REAL}
    assert count == {"adaptive": 3 * 2, "ibp": 3 * 2, "sabr": 3 * 2 * 2}
    assert all(set(r.overrides) == {"kappa"} for r in requests if r.method != "sabr")
    assert all(r.run_id.startswith(f"{r.method}-") for r in requests)
    scoped = plan_sweep(list(REAL), "fashion-mnist", grid={"kappa": "0,0.5", "sabr.kappa": "0"}, seeds=[0],
                        preset="quick", out=out)  # fmt: skip
    assert [r.overrides for r in scoped if r.method == "sabr"] == [{"kappa": 0}]
    with pytest.raises(InvalidConfig, match="'lambda'.*lam"):
        plan_sweep(list(REAL), "fashion-mnist", grid={"lambda": [0.3]}, out=out)
    with pytest.raises(InvalidConfig, match="kappa"):
        plan_sweep(list(REAL), "fashion-mnist", grid={"kappa": [0.5, 2.0]}, out=out)
    assert not out.exists()


def test_seeds_multiply_and_repeats_collapse(specs, tmp_path):
    requests = _plan(specs, tmp_path / "r", methods=["standard"], seeds=[0, 1, 2, 1])
    assert [r.seed for r in requests] == [0, 1, 2]
    assert len(_plan(specs, tmp_path / "r", methods=[specs["kmethod"]], grid={"kappa": [0.5, 0.5]}, seeds=[0])) == 1


def test_unknown_grid_key_names_the_key_and_the_methods(specs, tmp_path):
    out = tmp_path / "results"
    with pytest.raises(InvalidConfig, match=r"'kapa'.*kmethod.*standard") as info:
        _plan(specs, out, methods=[specs["kmethod"], "standard"], grid={"kapa": [0.1]})
    assert "kappa" in str(info.value)  # lists what the methods do take
    with pytest.raises(InvalidConfig, match="'lambda'"):
        _plan(specs, out, methods=[specs["kmethod"]], grid={"lambda": [0.1]})
    with pytest.raises(InvalidConfig, match="--set key 'nope'"):
        _plan(specs, out, overrides={"nope": 1})
    assert not out.exists()


def test_empty_grid_and_bad_values_fail_before_anything_runs(specs, tmp_path):
    out = tmp_path / "results"
    with pytest.raises(InvalidConfig, match="no values"):
        _plan(specs, out, grid={"kappa": []})
    with pytest.raises(InvalidConfig, match=r"kappa=1\.5.*must be in \[0, 1\]"):
        _plan(specs, out, grid={"kappa": [0.25, 1.5]})
    with pytest.raises(InvalidConfig, match="lambda"):
        _plan(specs, out, grid={"lambda": [-1.0]})
    with pytest.raises(UnknownName, match="no-such-method"):
        _plan(specs, out, methods=["standard", "no-such-method"])
    with pytest.raises(InvalidConfig, match="seed"):
        _plan(specs, out, seeds=[])
    with pytest.raises(InvalidConfig, match="budget"):
        plan_sweep(["standard"], "fashion-mnist", budget="hours=3", out=out)
    with pytest.raises(InvalidConfig, match="device"):
        plan_sweep(["standard"], "fashion-mnist", device="tpu", out=out)
    assert not out.exists()


def test_grid_values_parse_like_set_values():
    assert parse_values("kappa", "0,0.25, 0.5") == [0, 0.25, 0.5]
    assert parse_values("eps", "8/255,0.1") == ["8/255", 0.1]  # not TOML: passed on to the method as text
    assert parse_values("flag", "true,false") == [True, False]
    assert parse_grid(["kappa=0,0.5", "lambda=0.3"]) == {"kappa": [0, 0.5], "lambda": [0.3]}
    for bad in (["kappa"], ["=1"], ["kappa="], ["kappa=0,,1"], ["kappa=0", "kappa=1"], ["bad key=1"]):
        with pytest.raises(InvalidConfig):
            parse_grid(bad)
    assert parse_int_list("0,1,2") == [0, 1, 2]
    with pytest.raises(InvalidConfig, match="whole numbers"):
        parse_int_list("0,x")


def _card(status: str) -> dict:
    card = {"schema": SCHEMA_VERSION, "run_id": "x", "status": status, "track": {"name": "fashion-mnist"},
            "method": {"name": "standard"}, "model": {}, "seed": 0, "budget": {}, "environment": {}}  # fmt: skip
    if status == "complete":
        card["metrics"] = {"clean_accuracy": 0.5}
    return card


def test_plan_statuses(specs, tmp_path):
    out = tmp_path / "results"
    requests = _plan(specs, out, methods=["standard"], seeds=[0, 1, 2, 3, 4])
    dirs = [run_dir_of(r) for r in requests]
    for d, (status, checkpoint) in zip(dirs, [("complete", True), ("training", True), ("failed", False),
                                               ("training", False)], strict=False):  # fmt: skip
        d.mkdir(parents=True)
        (d / CARD_FILE).write_text(json.dumps(_card(status)))
        if checkpoint:
            (d / CHECKPOINT_FILE).write_bytes(b"x")
    assert [run_status(d) for d in dirs] == [COMPLETE, INTERRUPTED, FAILED, INTERRUPTED, NEW]
    (dirs[4]).mkdir(parents=True)
    (dirs[4] / CARD_FILE).write_text("{not json")  # an unreadable card is not complete
    assert run_status(dirs[4]) == NEW
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(plan_table(requests))
    text = console.export_text()
    assert "complete (will skip)" in text and "interrupted (will resume)" in text and "new" in text
    assert all(r.run_id in text for r in requests)


def test_cli_dry_run_prints_the_plan_and_runs_nothing(specs, tmp_path):
    from actbench.cli import app

    out = tmp_path / "results"
    result = CliRunner().invoke(app, [
        "sweep", "--methods", f"{specs['kmethod']},standard", "--grid", "kappa=0,0.5", "--seeds", "0,1",
        "--preset", "quick", "--epochs", "1", "--out", str(out), "--dry-run"], env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sweep plan: 6 runs" in result.output
    assert result.output.count("kmethod-kappa") == 4 and result.output.count("standard-s") == 2
    assert not out.exists()


def test_cli_bad_grid_is_a_clear_error(specs, tmp_path):
    from actbench.cli import app

    result = CliRunner().invoke(app, ["sweep", "--methods", "standard", "--grid", "kappa=0,0.5",
                                      "--out", str(tmp_path / "r")])  # fmt: skip
    assert result.exit_code != 0
    assert isinstance(result.exception, InvalidConfig) and "kappa" in str(result.exception)
    assert not (tmp_path / "r").exists()
