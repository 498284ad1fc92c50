"""Method specs: registry, per-track values, overrides, user TOMLs and clear errors on bad input."""

from __future__ import annotations

import pytest
from test_train_fixtures import small_track

from actbench.errors import InvalidConfig, UnknownName
from actbench.objectives import create_objective, list_methods, load_method
from actbench.objectives.adaptive import Adaptive

GOOD = """
name = "mine"
title = "My method"
objective = "adaptive"
ibp_init = true
[citation]
authors = "A. Author"
title = "A paper"
venue = "Somewhere"
year = 2025
link = "https://example.org"
[params]
kappa = 0.5
[tracks.cifar10]
kappa = 0.1
"""


def test_registry_lists_all_methods_with_titles() -> None:
    methods = list_methods()
    assert set(methods) == {"adaptive", "standard", "pgd", "ibp", "crown_ibp", "sabr", "mtl_ibp"}
    assert "ACERT" in methods["adaptive"]


@pytest.mark.parametrize("name,track,key,value", [
    ("adaptive", "cifar10", "kappa", 0.25), ("adaptive", "mnist", "kappa", 0.0), ("ibp", "cifar10", "kappa", 0.25),
    ("sabr", "cifar10", "lam", 0.7), ("sabr", "mnist", "lam", 0.6), ("sabr", "tinyimagenet", "lam", 0.4),
    ("mtl_ibp", "cifar10", "alpha", 0.5), ("mtl_ibp", "mnist", "alpha", 0.08), ("crown_ibp", "mnist", "kappa", 0.0),
])  # fmt: skip
def test_per_track_key_params(name: str, track: str, key: str, value: float) -> None:
    spec = load_method(name, track, {})
    assert spec.key_param == key and spec.params[key] == value
    assert spec.citation["year"] > 2000 and spec.citation["link"].startswith("https://")


def test_ibp_init_flags_and_key_params() -> None:
    assert load_method("adaptive", "mnist", {}).params["ibp_init"] is True
    assert load_method("pgd", "mnist", {}).params["ibp_init"] is False
    assert load_method("standard", "mnist", {}).key_param is None
    spec = load_method("adaptive", "fashion-mnist", {"kappa": 0.5, "ibp_init": False, "max_passes": 5})
    objective = create_objective(spec, small_track())
    assert isinstance(objective, Adaptive) and objective.params["kappa"] == 0.5 and not objective.ibp_init
    assert objective.num_classes == 10


def test_user_toml(tmp_path) -> None:
    path = tmp_path / "my.toml"
    path.write_text(GOOD)
    spec = load_method(str(path), "cifar10", {})
    assert spec.name == "mine" and spec.params["kappa"] == 0.1 and spec.path == path and spec.key_param == "kappa"
    assert load_method(path, "mnist", {"kappa": 1}).params["kappa"] == 1.0  # int accepted for a float


def test_unknown_method_lists_registered() -> None:
    with pytest.raises(UnknownName) as info:
        load_method("acert2", "mnist", {})
    assert "adaptive" in str(info.value) and "sabr" in str(info.value)


@pytest.mark.parametrize("edit,match", [
    (lambda t: t.replace('title = "My method"\n', ""), "missing field 'title'"),
    (lambda t: t.replace("ibp_init = true", 'ibp_init = "yes"'), "ibp_init.*boolean"),
    (lambda t: t.replace("year = 2025", 'year = "2025"'), "citation.year"),
    (lambda t: t.replace('objective = "adaptive"', 'objective = "acert"'), "unknown objective"),
    (lambda t: t.replace("kappa = 0.5", "kappa = 1.5"), "kappa.*in \\[0, 1\\]"),
    (lambda t: t.replace("kappa = 0.5", "kapa = 0.5"), "unknown parameter 'kapa'"),
    (lambda t: t.replace("kappa = 0.5", 'kappa = "high"'), "kappa.*float"),
    (lambda t: t.replace("[tracks.cifar10]", "[tracks.cifar-10]"), "unknown track"),
    (lambda t: "extra = 1\n" + t, "unknown fields"),
    (lambda t: t.replace('name = "mine"', "name = ["), "not valid TOML"),
])  # fmt: skip
def test_bad_toml(tmp_path, edit, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(edit(GOOD))
    with pytest.raises((InvalidConfig, UnknownName), match=match):
        load_method(str(path), "cifar10", {})


@pytest.mark.parametrize("name,overrides,match", [
    ("adaptive", {"kappa": -0.1}, "in \\[0, 1\\]"),
    ("ibp", {"kappa": 2}, "in \\[0, 1\\]"),
    ("sabr", {"lam": 0.0}, "in \\(0, 1\\]"),
    ("sabr", {"lam": 1.5}, "in \\(0, 1\\]"),
    ("mtl_ibp", {"alpha": 1.01}, "in \\[0, 1\\]"),
    ("adaptive", {"max_passes": 0}, "> 0"),
    ("adaptive", {"warm_start": 1}, "bool"),
    ("pgd", {"kappa": 0.5}, "unknown parameter 'kappa'"),
])  # fmt: skip
def test_bad_overrides(name: str, overrides: dict, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        load_method(name, "fashion-mnist", overrides)


def test_missing_user_file(tmp_path) -> None:
    with pytest.raises(InvalidConfig, match="does not exist"):
        load_method(str(tmp_path / "nope.toml"), "mnist", {})
