"""VNN-LIB local-robustness properties and VNN-COMP counterexamples: read and write.

A local-robustness property, as VNN-COMP states it, is an input box and the condition that *violates*
robustness::

    l_i <= X_i <= u_i           for every input X_i (the network input flattened in C order)
    Y_j >= Y_y  for some j in targets          (one ``(assert (or (and (>= Y_j Y_y)) ...))``)

``unsat`` (no input of the box violates it) means verified; ``sat`` means a counterexample exists.

Parser. A small S-expression reader for the part of VNN-LIB 1.0 these properties use: ``declare-const``
of ``X_i``/``Y_j`` Reals, bounds ``(<= X_i c)``/``(>= X_i c)`` (either operand order, also inside a
top-level ``and``), and one output assertion that is a comparison of two outputs or an ``or`` of them.
Everything else (output bounds against constants, conjunctions of output conditions, disjunctions over
input boxes, linear constraints) is rejected with :class:`NotRobustnessProperty`, never approximated.
The PyPI ``vnnlib`` package is not used: its 1.x releases parse only VNN-LIB 2.0 and reject every
VNN-COMP 2022 file at its first ``declare-const``; the pure-Python 0.0.1 release it replaced is an
unmaintained alpha.

Numbers. Bounds are read as the nearest float64, what every VNN-COMP tool does (``lower``/``upper``).
A decimal such as ``0.03`` is not a double, so :meth:`RobustnessProperty.outer` widens each inexact bound
by one ulp (a box containing every real point of the property: what verifiers must cover) and
:meth:`RobustnessProperty.inner` narrows it (points that certainly satisfy the property: where
counterexamples are taken). Written bounds use the shortest decimal that reads back as the same double,
so a written property parses back to exactly the box it was written from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from actbench.errors import InvalidFile
from actbench.interop.files import read_text
from actbench.store import atomic_write_text

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_VAR = re.compile(r"([XY])_(\d+)\Z")
Sexp = str | list


class NotRobustnessProperty(InvalidFile):
    """A well-formed VNN-LIB file whose property is not a local-robustness property."""


@dataclass(frozen=True)
class RobustnessProperty:
    """An input box and the violation condition ``Y_j >= Y_label`` for some ``j`` in ``targets``.

    ``lower``/``upper`` (float64, one entry per input in C order) are the nearest doubles of the written
    bounds; ``lower_outer``/``upper_outer`` and ``lower_inner``/``upper_inner`` round them outward and
    inward (equal to ``lower``/``upper`` wherever the decimal is exactly a double).
    """

    lower: np.ndarray
    upper: np.ndarray
    label: int
    targets: tuple[int, ...]
    num_outputs: int
    lower_outer: np.ndarray
    upper_outer: np.ndarray
    lower_inner: np.ndarray
    upper_inner: np.ndarray
    source: str = ""

    @property
    def num_inputs(self) -> int:
        return int(self.lower.shape[0])

    def outer(self) -> tuple[np.ndarray, np.ndarray]:
        """A float64 box that contains every real point of the property's box (for verifiers)."""
        return self.lower_outer, self.upper_outer

    def inner(self) -> tuple[np.ndarray, np.ndarray]:
        """A float64 box whose points all lie in the property's box (for counterexamples)."""
        return self.lower_inner, self.upper_inner

    def violated(self, outputs: Sequence[float] | np.ndarray) -> bool:
        """True when some ``Y_j >= Y_label`` (j in targets) holds for these output values."""
        y = np.asarray(outputs, dtype=np.float64).reshape(-1)
        return bool(any(y[j] >= y[self.label] for j in self.targets))


# --- reading -------------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    lines = (line.split(";", 1)[0] for line in text.splitlines())
    return _TOKEN.findall("\n".join(lines))


def parse_sexps(text: str, where: str) -> list[Sexp]:
    """Top-level S-expressions of ``text`` (comments removed) as nested lists of atoms."""
    stack: list[list] = [[]]
    for tok in _tokens(text):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise InvalidFile(f"{where}: unbalanced ')'")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise InvalidFile(f"{where}: unbalanced '(' ({len(stack) - 1} left open at the end of the file)")
    return stack[0]


def _var(atom: Sexp) -> tuple[str, int] | None:
    if isinstance(atom, str):
        m = _VAR.match(atom)
        if m:
            return m.group(1), int(m.group(2))
    return None


def _number(atom: Sexp, where: str) -> Fraction | None:
    if not isinstance(atom, str) or _var(atom) is not None:
        return None
    try:
        value = Fraction(atom)
    except (ValueError, ZeroDivisionError):
        raise InvalidFile(f"{where}: {atom!r} is neither a variable X_i/Y_j nor a finite number") from None
    return value


def _show(expr: Sexp) -> str:
    text = expr if isinstance(expr, str) else "(" + " ".join(_show(e) for e in expr) + ")"
    return text if len(text) <= 80 else text[:77] + "..."


class _Reader:
    """Collects the declarations, input bounds and output assertions of one file."""

    def __init__(self, where: str):
        self.where = where
        self.declared: dict[str, set[int]] = {"X": set(), "Y": set()}
        self.lower: dict[int, Fraction] = {}
        self.upper: dict[int, Fraction] = {}
        self.outputs: list[list[tuple[int, int]]] = []  # each: disjuncts (j, y) meaning Y_j >= Y_y

    def fail(self, message: str) -> NotRobustnessProperty:
        return NotRobustnessProperty(f"{self.where}: {message}; actbench reads local-robustness properties "
                                     "only (an input box and `Y_j >= Y_y` for some j)")

    def form(self, form: Sexp) -> None:
        if not isinstance(form, list) or not form:
            raise InvalidFile(f"{self.where}: unexpected top-level {_show(form)!r}")
        head = form[0]
        if head == "declare-const":
            if len(form) != 3 or _var(form[1]) is None:
                raise InvalidFile(f"{self.where}: bad declaration {_show(form)}; expected (declare-const X_i Real)")
            if form[2] != "Real":
                raise InvalidFile(f"{self.where}: {form[1]} has type {_show(form[2])}; only Real is supported")
            kind, index = _var(form[1])
            self.declared[kind].add(index)
        elif head == "assert":
            if len(form) != 2:
                raise InvalidFile(f"{self.where}: (assert ...) takes one expression, got {_show(form)}")
            self.assertion(form[1])
        else:
            raise InvalidFile(f"{self.where}: unsupported command {_show(head)!r} (expected declare-const or assert)")

    def comparison(self, expr: Sexp) -> tuple[Sexp, Sexp] | None:
        """``(a, b)`` meaning ``a >= b`` for a ``>=``/``<=`` comparison, else None."""
        if isinstance(expr, list) and len(expr) == 3 and expr[0] in (">=", "<="):
            return (expr[1], expr[2]) if expr[0] == ">=" else (expr[2], expr[1])
        return None

    def assertion(self, expr: Sexp) -> None:
        if isinstance(expr, list) and expr and expr[0] == "and":
            parts = expr[1:]
            if all(self._is_input_bound(p) for p in parts):
                for part in parts:
                    self.assertion(part)
                return
            raise self.fail(f"a conjunction involving outputs, {_show(expr)}")
        if isinstance(expr, list) and expr and expr[0] == "or":
            self.outputs.append([self._output_disjunct(clause) for clause in expr[1:]])
            return
        pair = self.comparison(expr)
        if pair is None:
            raise self.fail(f"unsupported assertion {_show(expr)}")
        big, small = pair
        vb, vs = _var(big), _var(small)
        if vb and vs and vb[0] == vs[0] == "Y":
            self.outputs.append([(vb[1], vs[1])])
        elif self._is_input_bound(expr):
            self._input_bound(big, small)
        else:
            raise self.fail(f"unsupported comparison {_show(expr)}")

    def _is_input_bound(self, expr: Sexp) -> bool:
        pair = self.comparison(expr)
        if pair is None:
            return False
        kinds = [_var(p) for p in pair]
        return sum(k is not None and k[0] == "X" for k in kinds) == 1 and sum(k is None for k in kinds) == 1

    def _input_bound(self, big: Sexp, small: Sexp) -> None:
        if _var(big) is not None:  # X_i >= c
            index, value = _var(big)[1], _number(small, self.where)
            self.lower[index] = max(value, self.lower.get(index, value))
        else:  # c >= X_i
            index, value = _var(small)[1], _number(big, self.where)
            self.upper[index] = min(value, self.upper.get(index, value))

    def _output_disjunct(self, clause: Sexp) -> tuple[int, int]:
        inner = clause
        if isinstance(clause, list) and clause and clause[0] == "and":
            if len(clause) != 2:
                raise self.fail(f"a disjunct with several conditions, {_show(clause)}")
            inner = clause[1]
        pair = self.comparison(inner)
        vars_ = [_var(p) for p in pair] if pair else []
        if not pair or any(v is None or v[0] != "Y" for v in vars_):
            raise self.fail(f"a disjunct that is not a comparison of two outputs, {_show(clause)}")
        return vars_[0][1], vars_[1][1]

    def result(self, text_name: str) -> RobustnessProperty:
        n_in, n_out = self._contiguous("X"), self._contiguous("Y")
        if not self.outputs:
            raise self.fail("no output condition")
        if len(self.outputs) > 1:
            raise self.fail(f"{len(self.outputs)} output assertions (a conjunction of output conditions)")
        disjuncts = self.outputs[0]
        if not disjuncts:
            raise self.fail("an empty disjunction")
        labels = {y for _, y in disjuncts}
        if len(labels) != 1:
            raise self.fail(f"output conditions compare against several outputs {sorted(labels)}")
        label = labels.pop()
        targets = sorted({j for j, _ in disjuncts})
        if label in targets:
            raise self.fail(f"a condition compares Y_{label} with itself")
        for idx in (label, *targets):
            if idx >= n_out:
                raise InvalidFile(f"{self.where}: Y_{idx} is used but only Y_0..Y_{n_out - 1} are declared")
        missing = [i for i in range(n_in) if i not in self.lower or i not in self.upper]
        if missing:
            side = "lower" if missing[0] not in self.lower else "upper"
            raise self.fail(f"X_{missing[0]} has no {side} bound ({len(missing)} inputs are unbounded)")
        extra = sorted((set(self.lower) | set(self.upper)) - set(range(n_in)))
        if extra:
            raise InvalidFile(f"{self.where}: X_{extra[0]} is bounded but not declared")
        box = [_round(self.lower[i]) + _round(self.upper[i]) for i in range(n_in)]
        arr = np.array(box, dtype=np.float64).reshape(n_in, 6)
        lower, lower_down, lower_up, upper, upper_down, upper_up = arr.T
        empty = np.nonzero(lower > upper)[0]
        if empty.size:
            i = int(empty[0])
            raise InvalidFile(f"{self.where}: the box is empty at X_{i} (lower {lower[i]!r} > upper {upper[i]!r})")
        return RobustnessProperty(
            lower=lower, upper=upper, label=label, targets=tuple(targets), num_outputs=n_out,
            lower_outer=lower_down, upper_outer=upper_up, lower_inner=lower_up, upper_inner=upper_down,
            source=text_name,
        )  # fmt: skip

    def _contiguous(self, kind: str) -> int:
        got = self.declared[kind]
        if not got:
            raise InvalidFile(f"{self.where}: no {kind}_i variables are declared")
        n = max(got) + 1
        if len(got) != n:
            first = min(set(range(n)) - got)
            raise InvalidFile(f"{self.where}: {kind}_{first} is not declared but {kind}_{n - 1} is")
        return n


def _round(value: Fraction) -> tuple[float, float, float]:
    """``(nearest, nearest double <= value, nearest double >= value)`` of an exact rational."""
    nearest = float(value)
    if not math.isfinite(nearest):
        raise InvalidFile(f"bound {value} does not fit in a float64")
    exact = Fraction(nearest)
    if exact == value:
        return nearest, nearest, nearest
    if exact > value:
        return nearest, math.nextafter(nearest, -math.inf), nearest
    return nearest, nearest, math.nextafter(nearest, math.inf)


def parse_property(text: str, where: str = "<string>") -> RobustnessProperty:
    """Parse the text of a VNN-LIB local-robustness property (see the module docstring)."""
    reader = _Reader(where)
    for form in parse_sexps(text, where):
        reader.form(form)
    return reader.result(where)


def read_property(path: str | Path) -> RobustnessProperty:
    """Read a ``.vnnlib`` file (or ``.vnnlib.gz``, also when named without ``.gz``)."""
    return parse_property(read_text(path, "VNN-LIB property"), str(path))


# --- writing -------------------------------------------------------------------------------------------


def format_number(value: float) -> str:
    """The shortest positional decimal that reads back as exactly ``value`` (no exponent: SMT-LIB style)."""
    value = float(value)
    if not math.isfinite(value):
        raise InvalidFile(f"cannot write the non-finite bound {value} to VNN-LIB")
    return np.format_float_positional(value, unique=True, trim="0")


def property_text(lower: np.ndarray, upper: np.ndarray, label: int, num_outputs: int,
                  targets: Sequence[int] | None = None, comment: str = "") -> str:
    """VNN-LIB text of the property "some ``Y_j >= Y_label``" over the box ``[lower, upper]`` (flattened)."""
    lower = np.asarray(lower, dtype=np.float64).reshape(-1)
    upper = np.asarray(upper, dtype=np.float64).reshape(-1)
    if lower.shape != upper.shape or bool((lower > upper).any()):
        raise InvalidFile("property box: lower and upper must have the same size with lower <= upper")
    if not 0 <= label < num_outputs:
        raise InvalidFile(f"property label {label} is not an output index below {num_outputs}")
    targets = [j for j in range(num_outputs) if j != label] if targets is None else list(targets)
    lines = [f"; {line}" for line in comment.splitlines()] if comment else []
    lines.append(f"; local robustness: violated if some Y_j >= Y_{label}")
    lines += [f"(declare-const X_{i} Real)" for i in range(lower.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(num_outputs)]
    for i, (lo, hi) in enumerate(zip(lower.tolist(), upper.tolist(), strict=True)):
        lines.append(f"(assert (<= X_{i} {format_number(hi)}))")
        lines.append(f"(assert (>= X_{i} {format_number(lo)}))")
    lines.append("(assert (or")
    lines += [f"    (and (>= Y_{j} Y_{label}))" for j in targets]
    lines.append("))")
    return "\n".join(lines) + "\n"


def write_property(path: str | Path, lower: np.ndarray, upper: np.ndarray, label: int, num_outputs: int,
                   targets: Sequence[int] | None = None, comment: str = "") -> Path:
    """Atomically write a local-robustness property (see :func:`property_text`)."""
    path = Path(path)
    atomic_write_text(path, property_text(lower, upper, label, num_outputs, targets, comment))
    return path


# --- counterexamples -----------------------------------------------------------------------------------


def counterexample_text(x: np.ndarray, y: np.ndarray) -> str:
    """VNN-COMP's counterexample format: ``((X_0 v)`` ... ``(Y_0 v)`` ... ``)``, values round-tripping."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    pairs = [f"(X_{i} {format_number(v)})" for i, v in enumerate(x.tolist())]
    pairs += [f"(Y_{j} {format_number(v)})" for j, v in enumerate(y.tolist())]
    return "(" + "\n".join(pairs) + ")\n"


def write_counterexample(path: str | Path, x: np.ndarray, y: np.ndarray) -> Path:
    path = Path(path)
    atomic_write_text(path, counterexample_text(x, y))
    return path


def parse_counterexample(text: str, where: str = "<string>") -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` float64 arrays from a counterexample (a leading ``sat`` line, as some tools write, is skipped).

    Raises :class:`InvalidFile` for an empty or malformed file, or missing/duplicate variables.
    """
    forms = parse_sexps(text, where)
    if forms and forms[0] == "sat":
        forms = forms[1:]
    if len(forms) != 1 or not isinstance(forms[0], list) or not forms[0]:
        raise InvalidFile(f"{where}: not a counterexample (expected one list of (X_i v) and (Y_j v) pairs)")
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for pair in forms[0]:
        var = _var(pair[0]) if isinstance(pair, list) and len(pair) == 2 else None
        if var is None:
            raise InvalidFile(f"{where}: {_show(pair)} is not an (X_i v) or (Y_j v) pair")
        number = _number(pair[1], where)
        if number is None or var[1] in values[var[0]]:
            raise InvalidFile(f"{where}: bad or repeated value for {pair[0]}")
        values[var[0]][var[1]] = float(number)
    out = []
    for kind in ("X", "Y"):
        got = values[kind]
        if kind == "X" and not got:
            raise InvalidFile(f"{where}: the counterexample assigns no inputs X_i")
        if got and set(got) != set(range(len(got))):
            raise InvalidFile(f"{where}: the {kind}_i values are not numbered 0..{len(got) - 1}")
        out.append(np.array([got[i] for i in range(len(got))], dtype=np.float64))
    return out[0], out[1]


def read_counterexample(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    return parse_counterexample(read_text(path, "counterexample"), str(path))
