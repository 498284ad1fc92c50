"""Recipes and model-selection rules reach the track as run, the run id and the reproduce command."""

from __future__ import annotations

import pytest

from actbench.errors import InvalidConfig
from actbench.runner import RunRequest, default_run_id, reproduce_command, resolve_run


def test_published_recipe_changes_the_track_as_run_and_the_run_id() -> None:
    shared = RunRequest(method="ibp", track="cifar10", seed=0)
    published = RunRequest(method="ibp", track="cifar10", seed=0, recipe="published")
    track_s, method_s = resolve_run(shared)
    track_p, method_p = resolve_run(published)
    assert track_s.lr == 2e-3 and track_s.lr_schedule == "onecycle" and track_s.budget.value == 200
    assert track_p.lr == 5e-4 and track_p.lr_schedule == "multistep" and track_p.budget.value == 160
    assert track_p.eps == track_s.eps and track_p.model == track_s.model  # what the track fixes stays
    id_s, id_p = default_run_id(method_s, track_s, shared), default_run_id(method_p, track_p, published)
    assert "published" in id_p and "published" not in id_s and id_s != id_p
    assert "--recipe published" in reproduce_command(published, track_p)
    # a preset still shrinks a published recipe
    quick = RunRequest(method="ibp", track="cifar10", seed=0, recipe="published", preset="quick")
    track_q, _ = resolve_run(quick)
    assert track_q.budget.value == 2 and track_q.lr == 5e-4


def test_selection_rule_of_the_method_family_is_the_track_as_run() -> None:
    assert resolve_run(RunRequest(method="standard", track="fashion-mnist"))[0].selection == "val-accuracy"
    assert resolve_run(RunRequest(method="pgd", track="fashion-mnist"))[0].selection == "val-pgd-accuracy"
    assert resolve_run(RunRequest(method="sabr", track="fashion-mnist"))[0].selection == "val-acceps"


def test_no_published_recipe_on_the_cpu_track() -> None:
    with pytest.raises(InvalidConfig, match="no published recipe for track 'fashion-mnist'"):
        resolve_run(RunRequest(method="sabr", track="fashion-mnist", recipe="published"))
