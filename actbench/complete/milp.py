"""Exact verification by mixed-integer linear programming (Tjeng et al., ICLR 2019) with HiGHS.

Variables: the input (in the box), every ReLU's pre-activation ``z`` (in its bounds ``[l, u]``) and
activation ``a``. Affine blocks between ReLUs are equality rows ``z_k = W a_{k-1} + b`` (the blocks'
matrices are read off the layers by pushing the unit basis through them, so convolutions, BatchNorm and
Normalize need no rules of their own). A stable neuron is ``a = z`` or ``a = 0``; an unstable one gets a
binary ``d``: ``a >= z``, ``a >= 0``, ``a <= u d``, ``a <= z - l (1 - d)``. Each spec row not already
proven by α-CROWN (whose bounds also make the big-M constants tight) is minimised on its own.

Solver arithmetic is not exact, so a row is proven only when HiGHS's dual bound exceeds ``tolerance``
times the logits' scale, and ``falsified`` only with a solution that the float64 model confirms
(``base.find_counterexample``). Anything in between is ``unknown``. With every neuron stable the same
encoding is an LP: branch and bound uses it for domains whose neurons are all split.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from actbench.complete.base import Task, Verdict, find_counterexample, now, register
from actbench.complete.linear import Interval
from actbench.complete.problem import LayerNet, Spec
from actbench.errors import InvalidConfig

_BANNER_SHOWN = False


@dataclass
class MilpSettings:
    tolerance: float = 1e-5  # a row is proven when the dual bound exceeds this times max(1, |logits|)
    threads: int = 1
    alpha: bool = True  # α-CROWN intermediate bounds first (tighter big-M, fewer binaries)
    attack: bool = True

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> MilpSettings:
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        bad = set(options) - known
        if bad:
            raise InvalidConfig(f"unknown milp settings {sorted(bad)}; known: {sorted(known)}")
        out = cls(**options)
        if not out.tolerance >= 0:
            raise InvalidConfig("milp tolerance must be >= 0")
        return out


def _highs():
    """A silent ``highspy.Highs`` (its banner, printed once per process to stdout, is swallowed)."""
    global _BANNER_SHOWN
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from actbench.errors import ActbenchError

        raise ActbenchError("the milp verifier needs HiGHS: pip install highspy") from exc
    if _BANNER_SHOWN:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_SHOWN = True
    h.setOptionValue("output_flag", False)
    return h, highspy


def block_matrix(net: LayerNet, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` with ``layers[start:stop](h) = W h + b`` (flattened), for affine layers only."""
    shape = net.shapes[start]
    n = math.prod(shape)
    with torch.no_grad():
        h = torch.cat([torch.zeros(1, n, dtype=net.dtype), torch.eye(n, dtype=net.dtype)]).view(n + 1, *shape)
        for layer in net.layers[start:stop]:
            h = layer.forward(h)
        h = h.flatten(1)
    b = h[0]
    return (h[1:] - b).T.contiguous().numpy(), b.numpy()


@dataclass
class Encoding:
    """A HiGHS model of the network on a box; ``x_cols`` are the input's columns and the objective of a
    spec row is ``cost · cols + offset``, built by :meth:`set_row`."""

    h: Any
    highspy: Any
    x_cols: np.ndarray
    last_cols: np.ndarray  # columns of the last activation (or the input when there is no ReLU)
    W_last: np.ndarray
    b_last: np.ndarray
    binaries: int
    target: np.ndarray | None = None  # with encode(upto=k): the columns of ReLU k's pre-activation

    def set_row(self, c: np.ndarray, d: float) -> None:
        cost = c @ self.W_last
        n = self.h.getNumCol()
        full = np.zeros(n)
        full[self.last_cols] = cost
        self.h.changeColsCost(n, np.arange(n, dtype=np.int32), full)
        self.h.changeObjectiveOffset(float(c @ self.b_last + d))


class _Rows:
    """Accumulates sparse rows ``lower <= Σ v x <= upper`` for one ``addRows`` call."""

    def __init__(self) -> None:
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.starts: list[int] = []
        self.index: list[np.ndarray] = []
        self.value: list[np.ndarray] = []
        self.nnz = 0

    def add(self, cols: np.ndarray, vals: np.ndarray, lower: float, upper: float) -> None:
        self.starts.append(self.nnz)
        self.index.append(np.asarray(cols, dtype=np.int32))
        self.value.append(np.asarray(vals, dtype=np.float64))
        self.nnz += len(cols)
        self.lower.append(lower)
        self.upper.append(upper)

    def flush(self, h: Any) -> None:
        if not self.lower:
            return
        h.addRows(len(self.lower), np.array(self.lower), np.array(self.upper), self.nnz,
                  np.array(self.starts, dtype=np.int32), np.concatenate(self.index), np.concatenate(self.value))


def encode(net: LayerNet, bounds: list[Interval], xl: torch.Tensor, xu: torch.Tensor, threads: int = 1,
           upto: int | None = None) -> Encoding:
    """The MILP of ``net`` on the box ``[xl, xu]`` (``[1, *in]``) with pre-activation ``bounds`` (``[1, *shape]``).

    With ``upto = k`` only the ReLUs before ``k`` are encoded, plus ReLU ``k``'s pre-activation ``z``
    (``Encoding.target``): the smaller model whose optimum bounds that layer (intermediate-bound refinement).
    """
    h, highspy = _highs()
    inf = highspy.kHighsInf
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    h.setOptionValue("dual_feasibility_tolerance", 1e-9)
    lo_x, hi_x = xl.flatten().double().numpy(), xu.flatten().double().numpy()
    h.addVars(len(lo_x), lo_x, hi_x)
    x_cols = np.arange(len(lo_x))
    prev, start = x_cols, 0
    rows = _Rows()
    binaries: list[int] = []
    target = None
    for k, pos in enumerate(net.relus):
        W, b = block_matrix(net, start, pos)
        lo = bounds[k][0].flatten().double().numpy()
        hi = bounds[k][1].flatten().double().numpy()
        n = len(lo)
        base = h.getNumCol()
        z = np.arange(base, base + n)
        h.addVars(n, lo, np.maximum(hi, lo))
        for i in range(n):  # z_i - W_i · prev = b_i
            nz = np.nonzero(W[i])[0]
            rows.add(np.concatenate([[z[i]], prev[nz]]), np.concatenate([[1.0], -W[i, nz]]), b[i], b[i])
        if upto is not None and k == upto:
            target = z
            break
        a = np.arange(base + n, base + 2 * n)
        h.addVars(n, np.maximum(lo, 0.0), np.maximum(hi, 0.0))
        unst = np.nonzero((lo < 0) & (hi > 0))[0]
        d = np.arange(h.getNumCol(), h.getNumCol() + len(unst))
        if len(unst):
            h.addVars(len(unst), np.zeros(len(unst)), np.ones(len(unst)))
            binaries.extend(d.tolist())
        for i in np.nonzero(lo >= 0)[0]:  # active: a = z
            rows.add(np.array([a[i], z[i]]), np.array([1.0, -1.0]), 0.0, 0.0)
        for j, i in enumerate(unst):
            rows.add(np.array([a[i], z[i]]), np.array([1.0, -1.0]), 0.0, inf)  # a >= z
            rows.add(np.array([a[i], d[j]]), np.array([1.0, -hi[i]]), -inf, 0.0)  # a <= u d
            rows.add(np.array([a[i], z[i], d[j]]), np.array([1.0, -1.0, -lo[i]]), -inf, -lo[i])  # a <= z - l (1 - d)
        # inactive neurons (u <= 0) have a in [0, 0] from their column bounds
        prev, start = a, pos + 1
    rows.flush(h)
    if binaries:
        idx = np.array(binaries, dtype=np.int32)
        h.changeColsIntegrality(len(idx), idx, np.array([highspy.HighsVarType.kInteger] * len(idx)))
    if target is not None:
        return Encoding(h, highspy, x_cols, prev, np.zeros((0, 0)), np.zeros(0), len(binaries), target)
    W_last, b_last = block_matrix(net, start, len(net.layers))
    return Encoding(h, highspy, x_cols, prev, W_last, b_last, len(binaries))


@dataclass
class RowResult:
    status: str  # "verified" | "falsified" | "unknown"
    bound: float | None = None
    counterexample: torch.Tensor | None = None
    value: float | None = None
    reason: str = ""


def solve_row(enc: Encoding, net: LayerNet, xl: torch.Tensor, xu: torch.Tensor, spec: Spec, row: int,
              tolerance: float, deadline: float | None) -> RowResult:
    """Minimise spec row ``row``; proven when the dual bound > ``tolerance``, falsified by a checked point."""
    h = enc.h
    c = spec.C[0, row].double().numpy()
    enc.set_row(c, float(spec.d[0, row]))
    if deadline is not None:
        left = deadline - now()
        if left <= 0:
            return RowResult("unknown", reason="timeout")
        h.setOptionValue("time_limit", float(left))
    found: list[tuple[torch.Tensor, float]] = []
    in_shape = xl.shape[1:]

    # Callbacks always write the interrupt flag: HiGHS keeps it across runs of the same model.
    def on_solution(event: Any) -> None:
        sol = np.asarray(event.data_out.mip_solution)
        if sol.size and not found:
            x = torch.from_numpy(sol[enc.x_cols].copy()).view(1, *in_shape)
            hit = find_counterexample(net, x, xl, xu, spec)
            if hit is not None:
                found.append(hit)
        event.data_in.user_interrupt = bool(found)

    seen = [-math.inf]  # the best dual bound reported to the callback (HiGHS may not report it after an interrupt)

    def on_interrupt(event: Any) -> None:
        dual = event.data_out.mip_dual_bound
        if math.isfinite(dual):
            seen[0] = max(seen[0], dual)
        event.data_in.user_interrupt = bool(dual > tolerance or found)

    if enc.binaries:
        h.cbMipImprovingSolution.subscribe(on_solution)
        h.cbMipInterrupt.subscribe(on_interrupt)
    try:
        h.run()
    finally:
        if enc.binaries:
            h.cbMipImprovingSolution.unsubscribe(on_solution)
            h.cbMipInterrupt.unsubscribe(on_interrupt)
    if found:
        return RowResult("falsified", counterexample=found[0][0], value=found[0][1], reason="milp solution")
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    # a MIP's dual bound is proven whenever it is finite; an LP's objective only at optimality
    bound = max(info.mip_dual_bound, seen[0]) if enc.binaries else (
        info.objective_function_value if status == "Optimal" else None)
    if status == "Infeasible":  # impossible with sound bounds on a non-empty box: numerical trouble
        return RowResult("unknown", reason="the encoding is infeasible (numerical trouble)")
    if bound is not None and math.isfinite(bound) and bound > tolerance:
        return RowResult("verified", bound=float(bound), reason=f"dual bound {bound:.3g} > {tolerance:.3g}")
    sol = np.asarray(h.getSolution().col_value)
    if sol.size:
        x = torch.from_numpy(sol[enc.x_cols].copy()).view(1, *in_shape)
        hit = find_counterexample(net, x, xl, xu, spec)
        if hit is not None:
            return RowResult("falsified", counterexample=hit[0], value=hit[1], reason="milp optimum")
    if status == "Time limit reached" or (deadline is not None and now() > deadline):
        return RowResult("unknown", bound=None, reason="timeout")
    return RowResult("unknown", bound=float(bound) if bound is not None and math.isfinite(bound) else None,
                     reason=f"solver status {status}, bound within the tolerance")


def logit_scale(net: LayerNet, xl: torch.Tensor, xu: torch.Tensor) -> float:
    """``max(1, max |logit|)`` at the box centre: the scale of the certification tolerance."""
    return max(1.0, float(net.logits((xl + xu) * 0.5).abs().max()))


@register("milp", "exact MILP (HiGHS), intermediate bounds from alpha-CROWN; the oracle for testing")
def verify_milp(task: Task) -> Verdict:
    """Verify every spec row by MILP after α-CROWN and the falsifying attack."""
    from actbench.complete.alpha_crown import AlphaSettings, alpha_crown
    from actbench.complete.attack import FalsifySettings, falsify

    opts = dict(task.options)
    attack_opts = opts.pop("falsify", None) or {}
    alpha_opts = opts.pop("alpha", None) or {}
    settings = MilpSettings.from_dict(opts)
    net, xl, xu, spec = task.net, task.xl, task.xu, task.spec

    def done(status: str, reason: str, **kw: Any) -> Verdict:
        return Verdict(status, "milp", task.elapsed(), reason=reason, **kw)

    if settings.attack:
        hit = falsify(net, xl, xu, spec, FalsifySettings(**attack_opts), deadline=task.deadline)
        if hit is not None:
            return done("falsified", "attack", counterexample=hit[0], value=hit[1])
    alpha = AlphaSettings.from_dict({"intermediate": settings.alpha, **alpha_opts})
    root = alpha_crown(net, xl, xu, spec, alpha, deadline=task.deadline)
    hit = find_counterexample(net, root.x_min[0], xl, xu, spec)
    if hit is not None:
        return done("falsified", "relaxation vertex", counterexample=hit[0], value=hit[1])
    lower = root.lower[0]
    todo = [int(i) for i in torch.argsort(lower) if float(lower[i]) <= 0]
    if not todo:
        return done("verified", "alpha-crown", lower_bound=float(lower.min()))
    tol = settings.tolerance * logit_scale(net, xl, xu)
    enc = encode(net, root.bounds, xl, xu, settings.threads)
    proven: list[float] = [float(lower[i]) for i in range(len(lower)) if i not in todo]
    unknown = ""
    for row in todo:
        if task.timed_out():
            return done("unknown", "timeout", stats={"binaries": enc.binaries})
        res = solve_row(enc, net, xl, xu, spec, row, tol, task.deadline)
        if res.status == "falsified":
            return done("falsified", res.reason, counterexample=res.counterexample, value=res.value)
        if res.status == "unknown":
            unknown = unknown or res.reason
            if res.reason == "timeout":
                break
            continue
        proven.append(float(res.bound))
    if unknown:
        return done("unknown", unknown, stats={"binaries": enc.binaries})
    return done("verified", "milp", lower_bound=min(proven), stats={"binaries": enc.binaries})


def lp_leaf(net: LayerNet, bounds: list[Interval], xl: torch.Tensor, xu: torch.Tensor, spec: Spec, row: int,
            tolerance: float, deadline: float | None) -> RowResult:
    """Exact minimum of a row on a domain where every ReLU is stable (an LP), judged as in the MILP."""
    enc = encode(net, [(lo[:1], hi[:1]) for lo, hi in bounds], xl, xu)
    if enc.binaries:
        raise AssertionError("lp_leaf needs a domain without unstable neurons")
    return solve_row(enc, net, xl, xu, spec, row, tolerance, deadline)


def row_minima(net: LayerNet, xl: torch.Tensor, xu: torch.Tensor, spec: Spec, seconds: float = 60.0) -> torch.Tensor:
    """The exact minimum of every spec row over the box (solved to optimality, no early stop), ``[S]``.

    The oracle of the tests: bounds must lie below it, attacks above it. Raises ``ResourceLimit`` when
    HiGHS does not reach optimality within ``seconds`` per row.
    """
    from actbench.complete.alpha_crown import AlphaSettings, alpha_crown
    from actbench.errors import ResourceLimit

    root = alpha_crown(net, xl, xu, spec, AlphaSettings(iterations=5))
    enc = encode(net, root.bounds, xl, xu)
    enc.h.setOptionValue("mip_rel_gap", 0.0)
    enc.h.setOptionValue("mip_abs_gap", 1e-9)
    out = []
    for row in range(spec.rows):
        enc.set_row(spec.C[0, row].double().numpy(), float(spec.d[0, row]))
        enc.h.setOptionValue("time_limit", float(seconds))
        enc.h.run()
        status = enc.h.modelStatusToString(enc.h.getModelStatus())
        if status != "Optimal":
            raise ResourceLimit(f"MILP row {row}: {status} after {seconds} s")
        out.append(enc.h.getInfo().objective_function_value)
    return torch.tensor(out, dtype=torch.float64)


def refine_layer(net: LayerNet, bounds: list[Interval], k: int, xl: torch.Tensor, xu: torch.Tensor,
                 per_neuron: float, deadline: float | None, margin: float = 1e-6) -> Interval:
    """Tighter bounds of ReLU ``k``'s unstable neurons by MILP on the network truncated at ``k``.

    Each bound is HiGHS's dual bound after at most ``per_neuron`` seconds (a proven bound at any time),
    loosened by ``margin × (1 + |bound|)`` for solver tolerances, and intersected with the old one. A
    minimisation stops as soon as its dual bound shows the neuron stable. Stops at ``deadline``.
    """
    enc = encode(net, bounds, xl, xu, upto=k)
    h = enc.h
    n = h.getNumCol()
    lower, upper = bounds[k]
    lo, hi = lower.flatten().clone(), upper.flatten().clone()
    assert enc.target is not None
    seen = [-math.inf]

    def on_interrupt(event: Any) -> None:
        dual = event.data_out.mip_dual_bound
        if math.isfinite(dual):
            seen[0] = max(seen[0], dual)
        event.data_in.user_interrupt = bool(dual > 0)  # stable: the exact value no longer matters

    h.cbMipInterrupt.subscribe(on_interrupt)
    try:
        for i in linear_unstable(lo, hi):
            for sign in (1.0, -1.0):
                if deadline is not None and now() > deadline:
                    return lo.view_as(lower), hi.view_as(upper)
                h.setOptionValue("time_limit", float(per_neuron if deadline is None else
                                                     max(1e-3, min(per_neuron, deadline - now()))))
                cost = np.zeros(n)
                cost[enc.target[i]] = sign
                h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
                seen[0] = -math.inf
                h.run()
                info = h.getInfo()
                status = h.modelStatusToString(h.getModelStatus())
                bound = max(info.mip_dual_bound, seen[0]) if enc.binaries else (
                    info.objective_function_value if status == "Optimal" else -math.inf)
                if not math.isfinite(bound):
                    continue
                bound -= margin * (1 + abs(bound))
                if sign > 0:
                    lo[i] = torch.maximum(lo[i], torch.tensor(bound, dtype=lo.dtype))
                else:
                    hi[i] = torch.minimum(hi[i], torch.tensor(-bound, dtype=hi.dtype))
                if lo[i] >= 0 or hi[i] <= 0:
                    break
    finally:
        h.cbMipInterrupt.unsubscribe(on_interrupt)
    return lo.view_as(lower), hi.view_as(upper)


def linear_unstable(lo: torch.Tensor, hi: torch.Tensor) -> list[int]:
    return ((lo < 0) & (hi > 0)).nonzero().flatten().tolist()
