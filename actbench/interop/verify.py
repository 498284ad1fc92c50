"""``actbench verify``: VNN-COMP answers for an ONNX network and a VNN-LIB robustness property.

Answers are VNN-COMP's: ``unsat`` (verified: no input of the box violates the property), ``sat`` (a
counterexample exists, and one is returned), ``unknown`` (no verifier decided) and ``timeout``.

Verifiers are a name -> function table (:data:`VERIFIERS`); :func:`verify_property` runs the chosen ones in
order until one decides. A verifier is ``fn(problem, deadline) -> Outcome``. Adding one (the complete
verifiers of ``actbench.complete``) is one entry: a function, or a ``"module:function"`` string imported
on first use. The dispatcher, not the verifier, owns soundness at the edges:

- a ``sat`` claim counts only with a counterexample that lies in the property's *inner* box and violates
  the property in a float64 forward pass (re-checked here); anything else becomes ``unknown``;
- verifiers get the *outer* box (it contains every real point of the property) and a float64 copy of the
  network, so an ``unsat`` covers the property as written;
- an answer that arrives after the time limit is ``timeout``, as VNN-COMP scores it.

Today's verifiers: ``ibp``, ``crown-ibp``, ``crown`` (sound, incomplete: ``unsat`` or ``unknown``) and
``pgd`` (margin PGD with restarts inside the box: ``sat`` or ``unknown``).
"""

from __future__ import annotations

import copy
import importlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from actbench.errors import ActbenchError, InvalidInput, ResourceLimit, UnknownName
from actbench.interop.onnx_import import OnnxNetwork
from actbench.interop.vnnlib import RobustnessProperty

ANSWERS = ("unsat", "sat", "unknown", "timeout")
DEFAULT_VERIFIERS = ("ibp", "crown-ibp", "crown", "pgd")  # cheapest first; CROWN also finds vertices


@dataclass
class Problem:
    """One instance as the verifiers see it: a float64 model and the property's boxes, ``[1, *shape]``."""

    model: nn.Module
    lower: torch.Tensor  # outer box: verifiers must cover it
    upper: torch.Tensor
    inner_lower: torch.Tensor  # inner box: counterexamples must lie in it
    inner_upper: torch.Tensor
    label: int
    targets: tuple[int, ...]
    num_outputs: int

    @property
    def margin_columns(self) -> list[int]:
        """Columns of the engine's margin vector (``t != label``, increasing ``t``) for the targets."""
        return [j if j < self.label else j - 1 for j in self.targets]

    def check(self, x: torch.Tensor) -> tuple[bool, torch.Tensor, torch.Tensor]:
        """``(violated, x, y)``: ``x`` clamped into the inner box, ``y`` its float64 outputs."""
        x = x.detach().to(torch.float64).reshape(self.lower.shape)
        x = torch.maximum(torch.minimum(x, self.inner_upper), self.inner_lower)
        inside = bool((x >= self.inner_lower).all() and (x <= self.inner_upper).all())
        with torch.no_grad():
            y = self.model(x).reshape(-1)
        violated = inside and bool(any(y[j] >= y[self.label] for j in self.targets))
        return violated, x, y


@dataclass
class Outcome:
    """What one verifier concluded; ``timed_out`` when it stopped at the deadline."""

    answer: str
    counterexample: torch.Tensor | None = None
    note: str = ""
    timed_out: bool = False


VerifierFn = Callable[[Problem, float | None], Outcome]


@dataclass
class Verdict:
    """The answer for one instance, the verifier that decided it and the checked counterexample."""

    answer: str
    verifier: str | None = None
    x: np.ndarray | None = None  # counterexample input (flattened), float64
    y: np.ndarray | None = None  # its float64 outputs
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _margins_lower(method: str, vertices: bool) -> VerifierFn:
    def run(problem: Problem, deadline: float | None) -> Outcome:
        from actbench.bounds import box_margin_bounds

        y = torch.tensor([problem.label])
        lower = problem.lower.clone().requires_grad_(vertices)
        upper = problem.upper.clone().requires_grad_(vertices)
        try:
            with torch.set_grad_enabled(vertices):
                bounds = box_margin_bounds(problem.model, lower, upper, y, method=method).lower
        except ResourceLimit as exc:
            return Outcome("unknown", note=str(exc))
        rows = bounds[0, problem.margin_columns]
        worst = float(rows.detach().min())
        note = f"smallest margin lower bound {worst:.6g}"
        if worst > 0:
            return Outcome("unsat", note=note)
        if vertices:
            x = relaxation_vertex(problem, rows, lower, upper)
            if x is not None:
                return Outcome("sat", counterexample=x, note=f"{note}; the relaxation's minimising vertex violates")
        return Outcome("unknown", note=note)

    run.__doc__ = (f"Sound {method} margin bounds over the box: unsat when every target margin is > 0"
                   + ("; else sat when the vertex minimising a bound's linear relaxation violates." if vertices
                      else "."))  # fmt: skip
    return run


def relaxation_vertex(problem: Problem, rows: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                      tries: int | None = None) -> torch.Tensor | None:
    """A box vertex that violates the property, read off the bounds' linear relaxation, or None.

    A CROWN-type bound is ``lb = A⁺·lower + A⁻·upper + c``, minimised over the box at the vertex taking
    ``lower`` where ``A > 0`` and ``upper`` where ``A < 0``. The sign of ``A`` is the sign of the bound's
    gradient with respect to the box centre (``∂lb/∂lower + ∂lb/∂upper``), so each non-positive bound
    suggests a vertex; branch-and-bound verifiers evaluate the same point. Only a candidate: the
    dispatcher re-checks it in float64. Each non-positive bound is tried (``tries``: only the most negative
    ones), at the cost of one backward pass through the bound computation each.
    """
    for k in torch.argsort(rows).tolist()[:tries]:
        if float(rows[k].detach()) > 0:
            break
        grads = torch.autograd.grad(rows[k], (lower, upper), retain_graph=True, allow_unused=True)
        slope = sum(g for g in grads if g is not None)
        if not isinstance(slope, torch.Tensor):
            return None
        vertex = torch.where(slope > 0, problem.inner_lower, problem.inner_upper).detach()
        if problem.check(vertex)[0]:
            return vertex
    return None


class _TargetLogits(nn.Module):
    """The model's outputs with every class outside ``{label} ∪ targets`` pushed to -inf (PGD sees only those)."""

    def __init__(self, model: nn.Module, label: int, targets: tuple[int, ...], num_outputs: int):
        super().__init__()
        self.model = model
        mask = torch.full((num_outputs,), -math.inf, dtype=torch.float64)
        mask[[label, *targets]] = 0.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.mask.to(x.dtype)


PGD_STEP_SIZES = (0.1, 0.5, 1.0, 2.0)


def pgd_verifier(problem: Problem, deadline: float | None, steps: int = 30, restarts: int = 12,
                 step_sizes: Sequence[float] = PGD_STEP_SIZES, seed: int = 0) -> Outcome:
    """Margin PGD in the inner box until a checked violation: first from the centre, then random starts.

    Restarts cycle through ``step_sizes`` (fractions of the box's half width): small steps refine a
    smooth landscape; steps of the box's size jump between vertices, where counterexamples of networks
    with flat regions (zero gradients at the centre) usually lie.
    """
    from actbench.certify.attack import pgd

    target = _TargetLogits(problem.model, problem.label, problem.targets, problem.num_outputs)
    lower, upper = problem.inner_lower, problem.inner_upper
    if bool((lower > upper).any()):
        return Outcome("unknown", note="the inner box is empty (a bound is not a float64 number)")
    centre = (lower + upper) * 0.5
    y = torch.tensor([problem.label])
    gen = torch.Generator().manual_seed(seed)
    for restart in range(restarts):
        if deadline is not None and time.monotonic() >= deadline:
            return Outcome("unknown", note=f"stopped at the time limit after {restart} restarts", timed_out=True)
        step_size = step_sizes[restart % len(step_sizes)]
        x = pgd(target, centre, y, (lower, upper), loss="margin", steps=steps, step_size=step_size, restarts=1,
                random_start=restart >= len(step_sizes), generator=gen, stop_on_success=True)  # fmt: skip
        violated, x, _ = problem.check(x)
        if violated:
            return Outcome("sat", counterexample=x, note=f"counterexample at restart {restart}")
    return Outcome("unknown", note=f"no violation found by {restarts} PGD runs of {steps} steps")


VERIFIERS: dict[str, VerifierFn | str] = {
    "ibp": _margins_lower("ibp", vertices=False),
    "crown-ibp": _margins_lower("crown-ibp", vertices=True),
    "crown": _margins_lower("crown", vertices=True),
    "pgd": pgd_verifier,
    # complete verifiers register here as "name": "actbench.complete.<module>:<function>"
    "alpha-crown": "actbench.complete.vnncomp:alpha_crown",
    "bab": "actbench.complete.vnncomp:bab",
    "milp": "actbench.complete.vnncomp:milp",
}


def resolve_verifier(name: str) -> VerifierFn:
    """The function behind a verifier name (importing a ``"module:function"`` entry on first use)."""
    if name not in VERIFIERS:
        raise UnknownName("verifier", name, list(VERIFIERS))
    entry = VERIFIERS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        try:
            entry = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ActbenchError(f"verifier {name!r} is not available in this installation ({exc})") from exc
        VERIFIERS[name] = entry
    return entry


def parse_verifiers(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"ibp,crown-ibp,pgd"`` -> names, each checked against :data:`VERIFIERS` (order kept)."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n) for n in text]
    names = [n for n in names if n]
    if not names:
        raise InvalidInput(f"no verifier given; choose from {', '.join(VERIFIERS)}")
    for name in names:
        if name not in VERIFIERS:
            raise UnknownName("verifier", name, list(VERIFIERS))
    return tuple(dict.fromkeys(names))


def check_shapes(net: OnnxNetwork, prop: RobustnessProperty, where: str = "") -> None:
    """InvalidInput when the property's X/Y variables do not match the network's input/output sizes."""
    if prop.num_inputs != net.num_inputs or prop.num_outputs != net.num_outputs:
        raise InvalidInput(
            f"{where or prop.source}: the property has {prop.num_inputs} inputs and {prop.num_outputs} outputs, "
            f"but network {net.source} takes {net.num_inputs} inputs (shape {list(net.input_shape)}) and has "
            f"{net.num_outputs} outputs")


def make_problem(net: OnnxNetwork, prop: RobustnessProperty) -> Problem:
    """The float64 problem of one instance (shapes checked)."""
    check_shapes(net, prop)
    model = copy.deepcopy(net.model).to(torch.float64).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    shape = (1, *net.input_shape)

    def box(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float64)).view(shape)

    (lo, hi), (ilo, ihi) = prop.outer(), prop.inner()
    return Problem(model, box(lo), box(hi), box(ilo), box(ihi), prop.label, prop.targets, prop.num_outputs)


def verify_property(net: OnnxNetwork, prop: RobustnessProperty, verifiers: Sequence[str] = DEFAULT_VERIFIERS,
                    timeout: float | None = None) -> Verdict:
    """Run ``verifiers`` in order until one decides; see the module docstring for the rules."""
    names = parse_verifiers(verifiers)
    if timeout is not None and not timeout > 0:
        raise InvalidInput(f"timeout must be positive, got {timeout}")
    start = time.monotonic()
    problem = make_problem(net, prop)
    deadline = None if timeout is None else start + timeout
    verdict = Verdict("unknown")
    cut = False
    for name in names:
        if deadline is not None and time.monotonic() >= deadline:
            cut = True
            verdict.notes.append(f"{name}: not run (time limit)")
            continue
        began = time.monotonic()
        outcome = resolve_verifier(name)(problem, deadline)
        took = time.monotonic() - began
        detail = f" ({outcome.note})" if outcome.note else ""
        verdict.notes.append(f"{name}: {outcome.answer} in {took:.3f} s{detail}")
        cut |= outcome.timed_out
        if outcome.answer == "sat":
            if outcome.counterexample is None:
                verdict.notes.append(f"{name}: claimed sat without a counterexample; ignored")
                continue
            violated, x, y = problem.check(outcome.counterexample)
            if not violated:
                verdict.notes.append(f"{name}: its counterexample does not violate the property in float64; ignored")
                continue
            verdict.answer, verdict.verifier = "sat", name
            verdict.x, verdict.y = x.reshape(-1).numpy(), y.numpy()
            break
        if outcome.answer == "unsat":
            verdict.answer, verdict.verifier = "unsat", name
            break
        if outcome.answer != "unknown":
            raise ActbenchError(f"verifier {name!r} returned {outcome.answer!r}; expected unsat, sat or unknown")
    verdict.seconds = time.monotonic() - start
    late = timeout is not None and verdict.seconds > timeout
    if (verdict.answer == "unknown" and cut) or (verdict.answer != "unknown" and late):
        if late and verdict.answer != "unknown":
            verdict.notes.append(f"{verdict.answer} found after the time limit of {timeout:g} s")
        verdict.answer = "timeout"
    return verdict


def check_counterexample(net: OnnxNetwork, prop: RobustnessProperty, x: np.ndarray,
                         clamp_tol: float = 1e-6) -> tuple[str, float]:
    """Judge a counterexample (e.g. one a tool published) by a float64 forward pass.

    Returns ``(status, worst margin min_j (Y_label - Y_j))``. Status ``"valid"``: inside the property's box
    and violating; ``"valid after clamping"``: within ``clamp_tol`` of the box (tools that print few
    digits) and violating once clamped into the inner box, so a real point of the box violates;
    ``"outside the box"``; ``"no violation"``. A valid one contradicts any ``unsat`` answer.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape[0] != prop.num_inputs:
        raise InvalidInput(f"the counterexample has {x.shape[0]} inputs, the property {prop.num_inputs}")
    lo, hi = prop.outer()
    ilo, ihi = prop.inner()
    model = copy.deepcopy(net.model).to(torch.float64).eval()

    def margin(point: np.ndarray) -> float:
        with torch.no_grad():
            y = model(torch.from_numpy(point.copy()).view(1, *net.input_shape)).reshape(-1).numpy()
        return float(min(y[prop.label] - y[j] for j in prop.targets))

    outside = float(np.maximum(lo - x, x - hi).max())
    if outside <= 0:
        m = margin(x)
        return ("valid" if m <= 0 else "no violation"), m
    if outside > clamp_tol:
        return "outside the box", margin(x)
    m = margin(np.minimum(np.maximum(x, ilo), ihi))
    return ("valid after clamping" if m <= 0 else "no violation"), m
