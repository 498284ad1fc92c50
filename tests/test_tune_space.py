"""Search spaces in method specs ([search]) and per-run track settings (--track-set): validation and use."""

from __future__ import annotations

from pathlib import Path

import pytest

from actbench.errors import InvalidConfig
from actbench.objectives import load_method
from actbench.objectives.base import declared_params, objective_class
from actbench.objectives.search import check_track_settings, parse_search
from actbench.runner import RunRequest, _overrides_from_argv, default_run_id, reproduce_command, resolve_run

ROOT = Path(__file__).resolve().parents[1]
IBP = declared_params(objective_class("ibp"))
ADAPTIVE = declared_params(objective_class("adaptive"))


def test_a_space_of_linear_log_int_and_track_ranges_is_read_with_its_types():
    space = parse_search({"kappa": {"low": 0, "high": 1}, "lr": {"low": 1e-4, "high": 3e-3, "log": True},
                          "ramp_epochs": {"low": 1, "high": 3}}, IBP, "spec.toml")  # fmt: skip
    kappa = space["kappa"]
    assert (kappa.low, kappa.high, kappa.log, kappa.kind) == (0.0, 1.0, False, float)
    assert space["lr"].log and space["lr"].track and not space["kappa"].track
    assert space["ramp_epochs"].kind is int and space["ramp_epochs"].track
    assert space["lr"].describe() == "lr in [0.0001, 0.003] (log)"
    assert space["kappa"].to_dict() == {"low": 0.0, "high": 1.0, "log": False, "type": "float", "target": "method"}


@pytest.mark.parametrize(
    ("table", "params", "message"),
    [
        ({"kappa": {"low": 0.8, "high": 0.2}}, IBP, "bad range [0.8, 0.2]: low must be below high"),
        ({"kappa": {"low": 0.5, "high": 0.5}}, IBP, "low must be below high"),
        ({"kappa": {"low": 0.0, "high": 1.5}}, IBP, "high = 1.5 is not a valid kappa (it must be in [0, 1])"),
        ({"kappa": {"low": 0.0, "high": 1.0, "log": True}}, IBP, "a log-scale range needs low > 0"),
        ({"temperature": {"low": 0.1, "high": 1.0}}, IBP, "unknown parameter 'temperature'"),
        ({"shi_reg": {"low": 0, "high": 1}}, IBP, "only numeric parameters can be searched"),
        ({"kappa": {"low": 0.0}}, IBP, "missing high"),
        ({"kappa": {"low": 0.0, "high": 1.0, "scale": "log"}}, IBP, "unknown fields ['scale']"),
        ({"kappa": [0.0, 1.0]}, IBP, "must be a table like"),
        ({"kappa": {"low": "0", "high": 1.0}}, IBP, "low must be a finite number"),
        ({"kappa": {"low": 0.0, "high": 1.0, "log": "yes"}}, IBP, "log must be true or false"),
        ({"max_passes": {"low": 1.5, "high": 4}}, ADAPTIVE, "must be a whole number"),
        ({"lr": {"low": 0.0, "high": 1e-3}}, IBP, "low = 0 is not a valid lr (it must be > 0)"),
        ({"ramp_epochs": {"low": -1, "high": 2}}, IBP, "low = -1 is not a valid ramp_epochs"),
    ],
)
def test_a_bad_range_or_an_unknown_parameter_is_refused_with_a_clear_message(table, params, message):
    with pytest.raises(InvalidConfig) as exc:
        parse_search(table, params, "my.toml")
    assert message in str(exc.value) and "my.toml" in str(exc.value)


def test_unknown_parameter_message_lists_what_can_be_searched():
    with pytest.raises(InvalidConfig, match=r"numeric hyper-parameters \(kappa\) and the track settings lr, ramp"):
        parse_search({"lamda": {"low": 0.1, "high": 1.0}}, IBP, "x.toml")


def test_a_spec_with_a_bad_search_table_fails_when_loaded(tmp_path):
    text = (ROOT / "baselines" / "ibp.toml").read_text().replace("kappa = { low = 0.0, high = 1.0 }",
                                                                  "kappa = { low = 0.0, high = 2.0 }")
    spec = tmp_path / "ibp-wide.toml"
    spec.write_text(text)
    with pytest.raises(InvalidConfig, match=r"ibp-wide.toml: \[search\] kappa: bad range \[0, 2\]"):
        load_method(str(spec), "fashion-mnist")


def test_registered_certified_training_methods_declare_a_space_and_the_others_none():
    spaces = {m: load_method(m, "fashion-mnist").search for m in
              ("adaptive", "ibp", "crown_ibp", "sabr", "mtl_ibp", "pgd", "standard")}  # fmt: skip
    assert set(spaces["adaptive"]) == set(spaces["ibp"]) == set(spaces["crown_ibp"]) == {"kappa"}
    assert set(spaces["sabr"]) == {"lam"} and spaces["sabr"]["lam"].log
    assert set(spaces["mtl_ibp"]) == {"alpha"} and spaces["mtl_ibp"]["alpha"].log
    assert spaces["pgd"] == {} and spaces["standard"] == {}


def test_track_settings_are_checked():
    assert check_track_settings({"lr": 2e-3, "ramp_epochs": 2}) == {"lr": 2e-3, "ramp_epochs": 2}
    with pytest.raises(InvalidConfig, match="'batch_size' cannot be changed per run"):
        check_track_settings({"batch_size": 64})
    with pytest.raises(InvalidConfig, match="'lr' = -0.1 must be > 0"):
        check_track_settings({"lr": -0.1})


def test_a_run_with_track_settings_trains_with_them_and_gets_its_own_id_and_command():
    plain = RunRequest(method="ibp", track="fashion-mnist", preset="quick")
    tuned = RunRequest(method="ibp", track="fashion-mnist", preset="quick",
                       track_settings={"lr": 3e-3, "ramp_epochs": 2})  # fmt: skip
    track, method = resolve_run(tuned)
    base_track, _ = resolve_run(plain)
    assert (track.lr, track.ramp_epochs) == (3e-3, 2) and (base_track.lr, base_track.ramp_epochs) == (1e-3, 1)
    assert default_run_id(method, track, tuned) != default_run_id(method, base_track, plain)
    command = reproduce_command(tuned, track)
    assert "--track-set lr=0.003 --track-set ramp_epochs=2" in command
    import shlex

    assert _overrides_from_argv(shlex.split(command), "--track-set") == {"lr": 3e-3, "ramp_epochs": 2}
    with pytest.raises(InvalidConfig, match="cannot be changed per run"):
        resolve_run(RunRequest(method="ibp", track="fashion-mnist", track_settings={"eps": 0.2}))
