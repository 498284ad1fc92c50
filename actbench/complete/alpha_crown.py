"""α-CROWN (Xu et al., ICLR 2021): CROWN with optimised lower slopes of the unstable ReLUs.

The slopes are one tensor per (domain, row, neuron) of every ReLU, initialised from CROWN's choice and
raised by projected Adam on the bound (``optimise.maximise``); every iterate is sound, the best is kept,
and the result is never below CROWN's own bound (the max of two sound bounds). With
``intermediate=True`` the bounds of every intermediate pre-activation that CROWN computes are optimised
the same way first, layer by layer (each neuron's lower and upper bound is its own row with its own
slopes), which tightens deep networks at a memory cost. Sound for any slopes, so it doubles as an
incomplete verifier of the certification cascade (``alpha-crown``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from actbench.complete import linear
from actbench.complete.base import Task, Verdict, find_counterexample, now, register
from actbench.complete.linear import Interval
from actbench.complete.optimise import maximise
from actbench.complete.problem import LayerNet, Spec, compile_model, robustness_spec
from actbench.errors import InvalidConfig


@dataclass
class AlphaSettings:
    """Optimisation settings (α,β-CROWN's defaults are of this order: lr 0.1, 20-100 steps)."""

    iterations: int = 30  # output-bound steps
    lr: float = 0.25
    lr_decay: float = 0.98
    intermediate: bool = True  # optimise the intermediate bounds too (layer by layer)
    intermediate_iterations: int = 20
    intermediate_lr: float = 0.25
    fast: bool = True  # steps in float32; every bound returned is recomputed with the float64 layers

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> AlphaSettings:
        """Settings from a plain dict (unknown keys raise InvalidConfig naming the known ones)."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        bad = set(options) - known
        if bad:
            raise InvalidConfig(f"unknown alpha-crown settings {sorted(bad)}; known: {sorted(known)}")
        out = cls(**options)
        if out.iterations < 1 or out.intermediate_iterations < 1 or not out.lr > 0 or not out.intermediate_lr > 0:
            raise InvalidConfig("alpha-crown needs iterations >= 1 and a positive learning rate")
        return out


@dataclass
class AlphaResult:
    """``lower`` ``[B, S]``: α-CROWN bound of every row (>= ``crown_lower``); ``bounds``: the
    pre-activation bounds used; ``alphas``: the best slopes per row; ``x_min``: the box vertex that
    minimises each row's relaxation (a counterexample candidate)."""

    lower: torch.Tensor
    crown_lower: torch.Tensor
    bounds: list[Interval]
    alphas: list[torch.Tensor]
    x_min: torch.Tensor


def init_alphas(bounds: list[Interval], rows: int) -> list[torch.Tensor]:
    """CROWN's slopes expanded to ``[D, rows, *shape]`` per ReLU (the starting point of α-CROWN)."""
    return [linear.default_alpha(lo, hi).unsqueeze(1).expand(lo.shape[0], rows, *lo.shape[1:]).clone()
            for lo, hi in bounds]


def _steps(net: LayerNet, settings: AlphaSettings) -> tuple[LayerNet, torch.dtype]:
    """The network the optimisation steps run on: float32 with ``fast``, else ``net`` itself."""
    dtype = torch.float32 if settings.fast else net.dtype
    return net.cast(dtype), dtype


def optimise_layer(net: LayerNet, k: int, bounds: list[Interval], xl: torch.Tensor, xu: torch.Tensor,
                   settings: AlphaSettings, deadline: float | None = None) -> Interval:
    """α-optimised bounds of ReLU ``k``'s unstable neurons (one row per bound), intersected with ``bounds[k]``.

    The steps may run in float32; the bounds kept are recomputed with the float64 layers at the best slopes.
    """
    lower, upper = bounds[k]
    order, m = linear.unstable_rows(lower, upper)
    if m == 0:
        return bounds[k]
    shape = tuple(lower.shape[1:])
    flat_l, flat_u = lower.flatten(1).clone(), upper.flatten(1).clone()
    relaxed = linear.relax_all(bounds[:k])
    fast, t = _steps(net, settings)
    relaxed_t = [r.to(t) for r in relaxed]
    xl_t, xu_t = xl.to(t), xu.to(t)
    # α and two Adam moments per row and earlier neuron, plus autograd: about five copies of A's size
    step = max(1, linear.chunk_rows(net, k, lower.shape[0], lower.element_size()) // 5)
    for start in range(0, m, step):
        if deadline is not None and now() > deadline:
            break
        idx = order[:, start:start + step]
        A = linear.row_matrix(idx, shape, lower.dtype)
        A_t = A.to(t)
        alphas = [a.to(t) for a in init_alphas(bounds[:k], A.shape[1])]

        def fn(ps: list[torch.Tensor], A_t: torch.Tensor = A_t) -> torch.Tensor:
            return linear.backward(fast, A_t, None, xl_t, xu_t, stop=net.relus[k], alphas=ps, relaxed=relaxed_t).lower

        res = maximise(fn, alphas, [settings.intermediate_lr] * k, [(0.0, 1.0)] * k,
                       settings.intermediate_iterations, settings.lr_decay, deadline=deadline)
        best = [p.to(net.dtype).clamp(0.0, 1.0) for p in res.params]
        lb = linear.backward(net, A, None, xl, xu, stop=net.relus[k], alphas=best, relaxed=relaxed).lower
        c = idx.shape[1]
        flat_l.scatter_(1, idx, torch.maximum(flat_l.gather(1, idx), lb[:, :c]))
        flat_u.scatter_(1, idx, torch.minimum(flat_u.gather(1, idx), -lb[:, c:]))
    return flat_l.view_as(lower), flat_u.view_as(upper)


def tighten_bounds(net: LayerNet, bounds: list[Interval], xl: torch.Tensor, xu: torch.Tensor,
                   settings: AlphaSettings, deadline: float | None = None, start: int = 0) -> list[Interval]:
    """Optimise the intermediate bounds of ReLUs ``start..`` in forward order (each uses the tighter
    earlier ones); the result is intersected with ``bounds``."""
    out = list(bounds)
    for k in range(start, len(net.relus)):
        if k > 0:
            lo, hi = linear.ibp_from(net, k, out)
            out[k] = (torch.maximum(out[k][0], lo), torch.minimum(out[k][1], hi))
        if not linear.exact_by_ibp(net, k):
            out[k] = optimise_layer(net, k, out, xl, xu, settings, deadline)
    return out


def optimise_output(net: LayerNet, bounds: list[Interval], xl: torch.Tensor, xu: torch.Tensor, spec: Spec,
                    settings: AlphaSettings, deadline: float | None = None,
                    alphas: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Best α-CROWN bound of every spec row, the slopes that gave it and the minimising vertices.

    Stops early once every row is > 0. The returned bound is computed with the float64 layers.
    """
    relaxed = linear.relax_all(bounds)
    fast, t = _steps(net, settings)
    relaxed_t = [r.to(t) for r in relaxed]
    C_t, d_t, xl_t, xu_t = spec.C.to(t), spec.d.to(t), xl.to(t), xu.to(t)
    start = [a.to(t) for a in (init_alphas(bounds, spec.rows) if alphas is None else alphas)]

    def fn(ps: list[torch.Tensor]) -> torch.Tensor:
        return linear.backward(fast, C_t, None, xl_t, xu_t, alphas=ps, relaxed=relaxed_t).lower + d_t

    res = maximise(fn, start, [settings.lr] * len(start), [(0.0, 1.0)] * len(start), settings.iterations,
                   settings.lr_decay, target=torch.zeros_like(d_t), deadline=deadline)
    best = [p.to(net.dtype).clamp(0.0, 1.0) for p in res.params]
    with torch.no_grad():
        final = linear.backward(net, spec.C, None, xl, xu, alphas=best, want_x=True, relaxed=relaxed)
    lower = final.lower + spec.d
    if t == net.dtype:
        lower = torch.maximum(res.best, lower)
    return lower, best, final.x_min


@torch.no_grad()
def alpha_crown(net: LayerNet, xl: torch.Tensor, xu: torch.Tensor, spec: Spec,
                settings: AlphaSettings | None = None, deadline: float | None = None) -> AlphaResult:
    """α-CROWN bounds of every row of ``spec`` over the boxes ``[xl, xu]`` (``[B, *in]``).

    With ``intermediate``, the output slopes are optimised on CROWN's intermediate bounds first, and the
    intermediate bounds are tightened only when some row is still <= 0 (the costly part, often not needed).
    """
    settings = settings or AlphaSettings()
    bounds = linear.crown_bounds(net, xl, xu)
    crown_lower = linear.backward(net, spec.C, bounds, xl, xu).lower + spec.d
    lower, alphas, x_min = optimise_output(net, bounds, xl, xu, spec, settings, deadline)
    if settings.intermediate and not bool((lower > 0).all()):
        bounds = tighten_bounds(net, bounds, xl, xu, settings, deadline)
        lower2, alphas, x_min = optimise_output(net, bounds, xl, xu, spec, settings, deadline)
        lower = torch.maximum(lower, lower2)  # both are sound
    return AlphaResult(torch.maximum(lower, crown_lower), crown_lower, bounds, alphas, x_min)


def margin_lower(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, lo: float = 0.0,
                 hi: float = 1.0, settings: AlphaSettings | None = None) -> torch.Tensor:
    """α-CROWN lower bounds of the margins ``z_y - z_t`` over the clipped eps-boxes, ``[B, K-1]``
    (the bound function of the ``alpha-crown`` verifier in the certification cascade)."""
    net = compile_model(model, tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    e = eps if isinstance(eps, torch.Tensor) else torch.full((x.shape[0],), float(eps), dtype=x.dtype)
    e = e.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))
    xl, xu = (x - e).clamp(min=lo), (x + e).clamp(max=hi)
    spec = robustness_spec(y, net.num_outputs, x.dtype)
    return alpha_crown(net, xl, xu, spec, settings or CASCADE_SETTINGS).lower


# In the cascade every probe of the radius search is one α-CROWN run: fewer steps, output slopes only.
CASCADE_SETTINGS = AlphaSettings(iterations=20, intermediate=False)


@register("alpha-crown", "alpha-CROWN bound after the falsifying attack (incomplete: verified or unknown)")
def verify_alpha(task: Task) -> Verdict:
    """Attack, then α-CROWN with intermediate optimisation; ``unknown`` when a row stays <= 0."""
    from actbench.complete.attack import FalsifySettings, falsify

    opts = dict(task.options)
    attack = opts.pop("attack", True)
    attack_opts = opts.pop("falsify", None) or {}
    settings = AlphaSettings.from_dict(opts)
    net, xl, xu, spec = task.net, task.xl, task.xu, task.spec
    if attack:
        hit = falsify(net, xl, xu, spec, FalsifySettings(**attack_opts), deadline=task.deadline)
        if hit is not None:
            return Verdict("falsified", "alpha-crown", task.elapsed(), hit[0], value=hit[1], reason="attack")
    res = alpha_crown(net, xl, xu, spec, settings, deadline=task.deadline)
    lower = float(res.lower.min())
    hit = find_counterexample(net, res.x_min[0], xl, xu, spec)
    if hit is not None:
        return Verdict("falsified", "alpha-crown", task.elapsed(), hit[0], value=hit[1], reason="relaxation vertex")
    if lower > 0:
        return Verdict("verified", "alpha-crown", task.elapsed(), lower_bound=lower, reason="alpha-crown")
    return Verdict("unknown", "alpha-crown", task.elapsed(), lower_bound=lower,
                   reason="timeout" if task.timed_out() else "incomplete: a bound stays <= 0")
