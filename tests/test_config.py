"""eps parsing, budgets, overrides and track loading."""

import pytest

from actbench.config import Budget, format_eps, list_tracks, load_track, parse_eps, parse_eps_grid, parse_override
from actbench.errors import InvalidConfig, UnknownName


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.1", 0.1), ("8/255", 8 / 255), ("8.8/255", 8.8 / 255), (" 2 / 255 ", 2 / 255), (0.3, 0.3), (0, 0.0),
     ("1e-3", 1e-3), ("1", 1.0)],
)  # fmt: skip
def test_parse_eps_accepts_numbers_and_fractions(text, expected):
    assert parse_eps(text) == pytest.approx(expected, rel=0, abs=1e-15)


@pytest.mark.parametrize("bad", ["", "abc", "8/", "/255", "8/0", "-0.1", "1.5", "nan", "inf", "0.1.2", True, "8//255"])
def test_parse_eps_rejects_bad_strings(bad):
    with pytest.raises(InvalidConfig):
        parse_eps(bad)


def test_eps_grid_forms():
    assert parse_eps_grid("0:0.2:21")[:3] == [0.0, 0.01, 0.02]
    assert len(parse_eps_grid("0:0.2:21")) == 21
    assert parse_eps_grid("0:0.2:21")[-1] == 0.2
    assert parse_eps_grid("0.1,8/255") == sorted([0.1, 8 / 255])
    assert parse_eps_grid(["2/255", 0.0]) == [0.0, 2 / 255]
    for bad in ["0:2:5", "0:0.1", "0.2:0.1:3", "0:0.1:x", "", "0:0.1:0"]:
        with pytest.raises(InvalidConfig):
            parse_eps_grid(bad)


def test_format_eps_round_trips_common_values():
    assert format_eps(8 / 255) == "8/255"
    assert format_eps(8.8 / 255) == "8.8/255"
    assert format_eps(0.1) == "0.1"
    assert parse_eps(format_eps(2 / 255)) == pytest.approx(2 / 255)


def test_budget_parsing_and_validation():
    assert Budget.parse("epochs=20") == Budget("epochs", 20)
    assert Budget.parse("seconds=90.5").value == 90.5
    assert Budget.parse("propagations=5e6").value == 5e6
    for text in ("epochs=6", "propagations=1440000", "propagations=1234567", "seconds=90.5", "seconds=1e-3"):
        budget = Budget.parse(text)
        assert Budget.parse(str(budget)) == budget  # the recorded command reproduces the exact limit
    assert str(Budget.parse("propagations=1440000")) == "propagations=1.44e+06"
    for bad in ["epochs=0", "epochs=-1", "seconds=0", "weeks=3", "epochs", "epochs=x", "epochs=2.5"]:
        with pytest.raises(InvalidConfig):
            Budget.parse(bad)


def test_overrides_parse_toml_scalars():
    assert parse_override("kappa=0.25") == ("kappa", 0.25)
    assert parse_override("flag=true") == ("flag", True)
    assert parse_override("steps=10") == ("steps", 10)
    assert parse_override("name=pgd") == ("name", "pgd")
    with pytest.raises(InvalidConfig):
        parse_override("novalue")


def test_all_registered_tracks_load_and_quick_shrinks_them():
    names = list_tracks()
    assert {"fashion-mnist", "mnist", "cifar10", "tinyimagenet"} <= set(names)
    for name in names:
        track = load_track(name)
        assert 0 < track.eps <= 1
        assert max(track.eps_grid) <= track.eps + 1e-12
        for eps in track.eps_test:
            assert eps <= track.eps + 1e-12
        quick = track.with_quick()
        assert quick.budget.value <= track.budget.value
        assert quick.eps == track.eps and quick.model == track.model
        assert quick.train_subset is not None
        assert track.train_subset is None or quick.train_subset <= track.train_subset
        if quick.certify_samples is not None:
            assert track.certify_samples is None or quick.certify_samples <= track.certify_samples


def test_paper_tracks_match_the_acert_settings():
    cifar = load_track("cifar10")
    assert cifar.model == "cnn7" and cifar.eps == pytest.approx(8.8 / 255)
    for eps in (2 / 255, 8 / 255):
        assert any(abs(e - eps) < 1e-12 for e in cifar.eps_grid)
    mnist = load_track("mnist")
    assert mnist.eps == 0.4 and {0.1, 0.3, 0.4} <= set(mnist.eps_grid)
    tin = load_track("tinyimagenet")
    assert tin.model == "cnn7-tin" and tin.eps == pytest.approx(1 / 255) and tin.l1 == 1e-4


def test_unknown_track_lists_choices():
    with pytest.raises(UnknownName, match="fashion-mnist"):
        load_track("imagenet")
