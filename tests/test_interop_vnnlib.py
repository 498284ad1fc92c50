"""VNN-LIB properties and counterexamples: the 90 published mnist_fc properties, round trips, rejections."""

from __future__ import annotations

import functools
import re
from fractions import Fraction

import numpy as np
import pytest
from interop_helpers import MNIST_FC, VNNCOMP, instances, needs_vnncomp

from actbench.errors import ActbenchError, InvalidFile
from actbench.interop.files import read_text
from actbench.interop.vnnlib import (
    NotRobustnessProperty,
    parse_counterexample,
    parse_property,
    property_text,
    read_counterexample,
    read_property,
    write_counterexample,
    write_property,
)


@functools.lru_cache(maxsize=64)
def _published(vnnlib: str):
    """An independent reading of a published file: regexes for the bounds and the label comment."""
    text = read_text(MNIST_FC / vnnlib)
    bounds = {op: {int(i): float(v) for i, v in re.findall(rf"\(assert \({op} X_(\d+) ([-+0-9.eE]+)\)\)", text)}
              for op in ("<=", ">=")}  # fmt: skip
    n = len(bounds["<="])
    upper = np.array([bounds["<="][i] for i in range(n)])
    lower = np.array([bounds[">="][i] for i in range(n)])
    label = int(re.search(r"label: (\d+)", text).group(1))
    return lower, upper, label


@needs_vnncomp
def test_all_90_mnist_fc_properties_parse_to_the_published_boxes_and_labels():
    rows = instances()
    assert len(rows) == 90
    for _, vnnlib, _ in rows:
        prop = read_property(MNIST_FC / vnnlib)  # named without .gz in instances.csv; read gzipped
        lower, upper, label = _published(vnnlib)
        assert prop.num_inputs == 784 and prop.num_outputs == 10
        np.testing.assert_array_equal(prop.lower, lower)
        np.testing.assert_array_equal(prop.upper, upper)
        assert prop.label == label and prop.targets == tuple(j for j in range(10) if j != label)
        # the box is an MNIST image (pixels k/255) plus or minus eps, clipped to [0, 1] (float32 arithmetic)
        eps = float(vnnlib.rsplit("_", 1)[1].removesuffix(".vnnlib"))
        assert np.all(upper - lower <= 2 * eps + 1e-6) and np.all(lower >= 0) and np.all(upper <= 1)
        image = np.where(lower > 0, lower + eps, upper - eps)
        inside = (lower > 0) | (upper < 1)
        assert np.abs(image * 255 - np.round(image * 255))[inside].max() < 1e-4, vnnlib
        assert np.all(prop.lower_outer <= prop.lower) and np.all(prop.upper_outer >= prop.upper)
        assert np.all(prop.lower_inner >= prop.lower) and np.all(prop.upper_inner <= prop.upper)


def test_written_property_reads_back_exactly():
    rng = np.random.default_rng(0)
    lower = np.concatenate([[0.0, 0.1, 1 / 3, 1e-5, 0.029999999329447746], rng.random(20) * 0.5])
    upper = lower + np.concatenate([[0.0, 0.2, 1e-9, 2e-5, 0.03], rng.random(20) * 0.5])
    text = property_text(lower, upper, label=2, num_outputs=4, comment="two\nlines")
    assert not re.search(r"\d[eE][-+]?\d", text)  # positional decimals only, as SMT-LIB writes numbers
    prop = parse_property(text)
    np.testing.assert_array_equal(prop.lower, lower)
    np.testing.assert_array_equal(prop.upper, upper)
    assert prop.label == 2 and prop.targets == (0, 1, 3) and prop.num_outputs == 4


def test_outer_and_inner_boxes_round_the_decimals_outward_and_inward():
    text = _prop("(assert (>= X_0 0.1)) (assert (<= X_0 0.7)) (assert (>= X_1 0.5)) (assert (<= X_1 0.75))")
    prop = parse_property(text)
    for i, (lo_text, hi_text) in enumerate((("0.1", "0.7"), ("0.5", "0.75"))):
        lo, hi = Fraction(lo_text), Fraction(hi_text)
        assert Fraction(prop.lower_outer[i]) <= lo <= Fraction(prop.lower_inner[i])
        assert Fraction(prop.upper_inner[i]) <= hi <= Fraction(prop.upper_outer[i])
        assert prop.upper_outer[i] - prop.upper_inner[i] <= np.spacing(prop.upper[i])
    assert prop.lower_outer[1] == prop.lower_inner[1] == 0.5  # exact doubles are not widened


def _prop(bounds: str, outputs: str = "(assert (or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_0))))", n_in: int = 2,
          n_out: int = 3) -> str:
    decls = " ".join(f"(declare-const X_{i} Real)" for i in range(n_in))
    decls += " " + " ".join(f"(declare-const Y_{j} Real)" for j in range(n_out))
    return f"; test\n{decls}\n{bounds}\n{outputs}\n"


BOX = "(assert (>= X_0 0)) (assert (<= X_0 1)) (assert (>= X_1 0)) (assert (<= X_1 1))"


@pytest.mark.parametrize(("text", "label", "targets"), [
    (_prop(BOX), 0, (1, 2)),
    (_prop(BOX, "(assert (>= Y_2 Y_1))"), 1, (2,)),
    (_prop(BOX, "(assert (<= Y_1 Y_2))"), 1, (2,)),
    (_prop("(assert (and (<= 0 X_0) (>= 1 X_0) (>= X_1 0) (<= X_1 1)))", "(assert (or (>= Y_0 Y_2)))"), 2, (0,)),
])  # fmt: skip
def test_robustness_forms(text, label, targets):
    prop = parse_property(text)
    assert (prop.label, prop.targets) == (label, targets)
    np.testing.assert_array_equal(prop.lower, [0.0, 0.0])
    np.testing.assert_array_equal(prop.upper, [1.0, 1.0])


@pytest.mark.parametrize("text", [
    _prop(BOX, "(assert (<= Y_0 0.5))"),                                          # output against a constant
    _prop(BOX, "(assert (>= Y_1 Y_0)) (assert (>= Y_2 Y_0))"),                    # conjunction of violations
    _prop(BOX, "(assert (or (and (>= Y_1 Y_0) (>= Y_2 Y_0))))"),                  # a disjunct of two conditions
    _prop(BOX, "(assert (or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_1))))"),            # two different labels
    _prop(BOX, ""),                                                               # no output condition
    _prop("(assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 2) (<= X_0 3))))"),  # several input boxes
    _prop(BOX + " (assert (<= (+ X_0 X_1) 1))"),                                  # a linear input constraint
    _prop("(assert (>= X_0 0)) (assert (<= X_0 1)) (assert (>= X_1 0))"),         # X_1 has no upper bound
    _prop(BOX, "(assert (or (and (>= Y_0 Y_0))))"),                               # compares Y_0 with itself
])  # fmt: skip
def test_non_robustness_properties_are_rejected(text):
    with pytest.raises(NotRobustnessProperty) as info:
        parse_property(text)
    assert "robustness" in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    (_prop(BOX)[:-3], "unbalanced"),
    (_prop(BOX) + ")", "unbalanced"),
    (_prop(BOX.replace("(<= X_0 1)", "(<= X_0 one)")), "neither a variable"),
    (_prop(BOX + " (assert (<= X_5 1)) (assert (>= X_5 0))"), "not declared"),
    (_prop(BOX).replace("(declare-const X_0 Real)", ""), "X_0 is not declared"),
    (_prop(BOX).replace("(declare-const X_1 Real)", "(declare-const X_1 Int)"), "only Real"),
    ("(define-fun f () Real 0)", "unsupported command"),
    (_prop(BOX.replace("(<= X_0 1)", "(<= X_0 -1)")), "empty"),
    (_prop(BOX, "(assert (>= Y_7 Y_0))"), "Y_7 is used"),
])  # fmt: skip
def test_malformed_files_raise_invalid_file(text, message):
    with pytest.raises(InvalidFile) as info:
        parse_property(text, "bad.vnnlib")
    assert not isinstance(info.value, NotRobustnessProperty) or message == "empty"
    assert message in str(info.value) and "bad.vnnlib" in str(info.value)


def test_missing_file_is_an_actbench_error(tmp_path):
    with pytest.raises(ActbenchError, match="no VNN-LIB property"):
        read_property(tmp_path / "nope.vnnlib")


def test_write_property_is_atomic_and_checked(tmp_path):
    path = write_property(tmp_path / "p.vnnlib", np.zeros(3), np.ones(3), 1, 2)
    assert read_property(path).targets == (0,)
    with pytest.raises(InvalidFile):
        write_property(tmp_path / "q.vnnlib", np.ones(3), np.zeros(3), 1, 2)
    with pytest.raises(InvalidFile):
        write_property(tmp_path / "q.vnnlib", np.zeros(3), np.ones(3), 5, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.vnnlib"]


def test_counterexample_round_trip(tmp_path):
    x, y = np.array([0.0, 1 / 3, 0.029999999329447746]), np.array([-1e-12, 2.5])
    path = write_counterexample(tmp_path / "c.counterexample", x, y)
    assert path.read_text().startswith("((X_0 0.0)\n(X_1 0.3333333333333333)")
    rx, ry = read_counterexample(path)
    np.testing.assert_array_equal(rx, x)
    np.testing.assert_array_equal(ry, y)
    sx, _ = parse_counterexample("sat\n((X_0 1) (X_1 2) (Y_0 3))")
    np.testing.assert_array_equal(sx, [1.0, 2.0])
    for bad in ("", "((X_0 1) (X_0 2))", "((X_1 1))", "((Z_0 1))", "((X_0 1)) ((X_1 1))"):
        with pytest.raises(InvalidFile):
            parse_counterexample(bad)


@needs_vnncomp
def test_every_published_counterexample_format_reads():
    files = sorted(VNNCOMP.glob("results/*/mnist_fc/*.counterexample.gz"))
    read = empty = 0
    for path in files:
        try:
            x, y = read_counterexample(path)
        except InvalidFile:  # alpha_beta_crown published empty files
            assert path.stat().st_size < 100
            empty += 1
            continue
        assert x.shape == (784,) and y.shape in ((10,), (0,))
        read += 1
    assert read >= 90 and empty <= 25
