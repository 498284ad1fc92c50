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
    ("adaptive", "cifar10", "kappa", 0.25), ("adaptive", "mnist", "kappa", 0.0), ("ibp", "cifar10", "kappa", 0.0),
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


def test_model_selection_rule_per_family() -> None:
    assert load_method("standard", "fashion-mnist", {}).selection == "val-accuracy"
    assert load_method("pgd", "fashion-mnist", {}).selection == "val-pgd-accuracy"
    for name in ("ibp", "crown_ibp", "sabr", "mtl_ibp", "adaptive"):
        assert load_method(name, "fashion-mnist", {}).selection is None  # the track's val-acceps


@pytest.mark.parametrize("name", ["ibp", "crown_ibp", "sabr", "mtl_ibp", "adaptive"])
@pytest.mark.parametrize("track", ["mnist", "cifar10", "tinyimagenet"])
def test_published_recipes_exist_for_the_paper_tracks(name: str, track: str) -> None:
    shared = load_method(name, track, {})
    published = load_method(name, track, {}, recipe="published")
    assert shared.recipe == "shared" and not shared.recipe_track
    assert published.recipe == "published" and published.recipe_source
    assert published.recipe_record()["name"] == "published"
    if name != "adaptive":  # ACERT's published recipe is the tracks' shared one
        assert published.recipe_track["lr"] == 5e-4 and published.recipe_track["lr_schedule"] == "multistep"


def test_published_recipe_values_from_the_papers() -> None:
    ibp = load_method("ibp", "cifar10", {}, recipe="published")
    assert ibp.recipe_track["budget"] == "epochs=160" and ibp.params["kappa"] == 0.0
    sabr = load_method("sabr", "cifar10", {}, recipe="published")
    assert sabr.params["lam"] == 0.7 and sabr.recipe_track["grad_clip"] == 0.0
    mtl = load_method("mtl_ibp", "mnist", {}, recipe="published")
    assert mtl.params["alpha"] == 0.08 and mtl.recipe_track["warmup_epochs"] == 0
    # --set still wins over the recipe
    assert load_method("sabr", "cifar10", {"lam": 0.5}, recipe="published").params["lam"] == 0.5


@pytest.mark.parametrize("name,track,recipe,match", [
    ("standard", "cifar10", "published", "no recipe 'published'"),
    ("ibp", "fashion-mnist", "published", "no published recipe for track 'fashion-mnist'"),
    ("ibp", "cifar10", "paper", "no recipe 'paper'"),
])  # fmt: skip
def test_unknown_recipes_are_clear_errors(name: str, track: str, recipe: str, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        load_method(name, track, {}, recipe=recipe)


def test_recipe_cannot_change_what_the_track_fixes(tmp_path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(GOOD + '[recipes.published.cifar10]\nsource = "x"\ntrack = { eps = 0.5 }\n')
    with pytest.raises(InvalidConfig, match="cannot set \\['eps'\\]"):
        load_method(str(path), "cifar10", {}, recipe="published")
    path.write_text(GOOD.replace("ibp_init = true", 'ibp_init = true\nselection = "val-best"'))
    with pytest.raises(InvalidConfig, match="selection 'val-best'"):
        load_method(str(path), "cifar10", {})
