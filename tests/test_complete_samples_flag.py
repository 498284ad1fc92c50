"""``--complete-samples N``: complete verification of only the first N certified samples (0: none)."""

from __future__ import annotations

import shlex

import pytest

from actbench.errors import InvalidConfig
from actbench.runner import RunRequest, _int_from_argv, default_run_id, reproduce_command, resolve_run, resolve_track


def _request(**changes) -> RunRequest:
    return RunRequest(method="ibp", track="fashion-mnist", preset="quick", **changes)


def test_the_flag_limits_or_removes_the_complete_phase() -> None:
    assert resolve_track(_request()).certify_complete["samples"] == 50  # the quick preset's protocol
    assert resolve_track(_request(complete_samples=7)).certify_complete["samples"] == 7
    assert resolve_track(_request(complete_samples=0)).certify_complete == {}
    track, method = resolve_run(_request(complete_samples=0))
    plain_track, plain_method = resolve_run(_request())
    assert default_run_id(method, track, _request(complete_samples=0)) != default_run_id(
        plain_method, plain_track, _request())  # another protocol, another run


def test_bad_values_and_tracks_without_complete_verification() -> None:
    with pytest.raises(InvalidConfig, match="whole number"):
        resolve_track(_request(complete_samples=-1))
    with pytest.raises(InvalidConfig, match="no complete verification"):
        resolve_track(RunRequest(method="ibp", track="cifar10", complete_samples=5))
    assert resolve_track(RunRequest(method="ibp", track="cifar10", complete_samples=0)).certify_complete == {}


def test_the_reproduce_command_carries_the_flag() -> None:
    request = _request(complete_samples=3)
    track, _ = resolve_run(request)
    argv = shlex.split(reproduce_command(request, track))
    assert argv[argv.index("--complete-samples") + 1] == "3"
    assert _int_from_argv(argv, "--complete-samples") == 3
    assert _int_from_argv(["actbench", "run", "--complete-samples=4"], "--complete-samples") == 4
    assert _int_from_argv(["actbench", "run"], "--complete-samples") is None
