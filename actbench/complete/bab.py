"""Complete verification by branch and bound over ReLU splits, bounded with β-CROWN.

A domain is one spec row plus a split assignment of some of the neurons that are unstable at the root
(``+1``: ``z >= 0``, ReLU = identity; ``-1``: ``z <= 0``, ReLU = 0). Its pre-activation bounds are the
root's α-CROWN bounds with the split neurons clipped (and, with ``refine_intermediate``, later layers
re-bounded by CROWN under the splits). Its bound is α-CROWN plus β multipliers for its split
constraints (``linear.backward``), optimised together by projected Adam; every iterate is sound.

Loop: pop the batch of domains with the lowest bounds, choose a neuron for each (BaBSR-style intercept
score, refined by FSB: the best of a few candidates after one cheap bound of both children), bound all
children as one batch, drop children whose bound is > 0. The search ends:

- ``verified`` when no domain is left (every leaf proven > 0);
- ``falsified`` when a box point is a counterexample by the float64 model: the vertex minimising a
  domain's relaxation, a PGD point started from the worst domains' vertices, or the optimum of a
  domain with every neuron stable (then the domain is an LP, solved exactly by ``milp.lp_leaf``);
- ``unknown`` at the time limit, at ``max_domains`` open domains, or when a fully split domain's LP is
  undecided within the solver tolerance.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

import torch

from actbench.bounds.network import ConvLayer
from actbench.complete import linear
from actbench.complete.alpha_crown import AlphaResult, AlphaSettings, alpha_crown
from actbench.complete.attack import FalsifySettings, falsify
from actbench.complete.base import Task, Verdict, find_counterexample, now, register
from actbench.complete.linear import Interval
from actbench.complete.optimise import maximise
from actbench.complete.problem import LayerNet
from actbench.errors import InvalidConfig

BRANCHING = ("auto", "babsr", "fsb")


@dataclass
class BabSettings:
    batch: int = 256  # domains popped per step (twice as many children are bounded)
    iterations: int = 0  # β-CROWN steps per batch (0: auto, 10 with FSB, 5 with BaBSR; warm-started from the parent)
    lr_alpha: float = 0.1
    lr_beta: float = 0.05
    lr_decay: float = 0.98
    # auto: FSB (max of the children) for fully connected nets, as alpha-beta-CROWN on mnist_fc; BaBSR for
    # convolutional ones, where FSB's extra passes cost more than they save (measured on cnn3)
    branching: str = "auto"
    candidates: int = 4  # FSB candidates per domain
    reduce: str = "max"  # FSB score of a candidate: min or max of its two children's bounds
    max_domains: int = 1_000_000
    max_memory: float = 1.5 * 2**30  # bytes of open domains (about 5 bytes per root-unstable neuron each)
    refine_intermediate: bool = False
    attack: bool = True
    attack_every: int = 10  # PGD from the worst domains' vertices every n steps (0: never)
    lp_tolerance: float = 1e-5  # fully split domains: the LP proves a row above this times the logit scale
    refine_seconds: float = 0.0  # MILP refinement of the root's intermediate bounds (HiGHS), at most this long
    refine_per_neuron: float = 0.5  # seconds per bound of one neuron
    fast_steps: bool = True  # optimisation steps in float32; the bound that prunes is always recomputed in float64

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> BabSettings:
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        bad = set(options) - known
        if bad:
            raise InvalidConfig(f"unknown bab settings {sorted(bad)}; known: {sorted(known)}")
        out = cls(**options)
        if out.branching not in BRANCHING:
            raise InvalidConfig(f"bab branching {out.branching!r}: choose one of {', '.join(BRANCHING)}")
        if out.reduce not in ("min", "max"):
            raise InvalidConfig(f"bab reduce {out.reduce!r}: choose min or max")
        if out.batch < 1 or out.iterations < 0 or out.candidates < 1 or out.max_domains < 2 or not out.max_memory > 0:
            raise InvalidConfig("bab needs batch and candidates >= 1, iterations >= 0, max_domains >= 2 and "
                                "max_memory > 0")
        return out

    def resolved(self, net: LayerNet) -> BabSettings:
        """``auto`` choices made for ``net``: FSB for fully connected nets, else BaBSR; the step count."""
        branching = ("fsb" if fully_connected(net) else "babsr") if self.branching == "auto" else self.branching
        iterations = self.iterations or (10 if branching == "fsb" else 5)
        return dataclasses.replace(self, branching=branching, iterations=iterations)


def fully_connected(net: LayerNet) -> bool:
    return not any(isinstance(layer, ConvLayer) for layer in net.layers)


class Space:
    """The root-unstable neurons of every ReLU, numbered ``0..U-1`` layer after layer."""

    def __init__(self, bounds: list[Interval]):
        self.positions: list[torch.Tensor] = []  # flat index within the layer, per layer
        self.slices: list[slice] = []
        start = 0
        for lower, upper in bounds:
            pos = linear.unstable(lower[0], upper[0]).flatten().nonzero().squeeze(1)
            self.positions.append(pos)
            self.slices.append(slice(start, start + pos.numel()))
            start += pos.numel()
        self.size = start

    def dense(self, values: torch.Tensor, k: int, fill: torch.Tensor) -> torch.Tensor:
        """Layer ``k``'s ``[D, n_k]`` tensor: ``fill`` with ``values[:, slice_k]`` at the unstable positions."""
        out = fill.clone()
        out[:, self.positions[k]] = values[:, self.slices[k]].to(out.dtype)
        return out

    def gather(self, dense: torch.Tensor, k: int) -> torch.Tensor:
        return dense.flatten(1)[:, self.positions[k]]


@dataclass
class Pool:
    """Open domains as arrays (α and β kept in float16: they are only warm starts, any value is sound)."""

    row: torch.Tensor
    signs: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    lower: torch.Tensor
    cand: torch.Tensor

    def __len__(self) -> int:
        return self.row.shape[0]

    def take(self, idx: torch.Tensor) -> Pool:
        return Pool(self.row[idx], self.signs[idx], self.alpha[idx], self.beta[idx], self.lower[idx], self.cand[idx])


class Domains:
    """The open domains in preallocated arrays: popping the lowest bounds and adding children copy only
    those rows (free slots hold bound +inf, so they are never popped)."""

    def __init__(self, like: Pool, capacity: int = 1024):
        self.cap = 0
        self.count = 0
        self.data = Pool(*(t[:0] for t in (like.row, like.signs, like.alpha, like.beta, like.lower, like.cand)))
        self.alive = torch.zeros(0, dtype=torch.bool)
        self._grow(capacity)

    def __len__(self) -> int:
        return self.count

    def _grow(self, cap: int) -> None:
        extra = cap - self.cap
        d = self.data
        self.data = Pool(torch.cat([d.row, d.row.new_zeros(extra)]),
                         torch.cat([d.signs, d.signs.new_zeros(extra, *d.signs.shape[1:])]),
                         torch.cat([d.alpha, d.alpha.new_zeros(extra, *d.alpha.shape[1:])]),
                         torch.cat([d.beta, d.beta.new_zeros(extra, *d.beta.shape[1:])]),
                         torch.cat([d.lower, d.lower.new_full((extra,), math.inf)]),
                         torch.cat([d.cand, d.cand.new_full((extra, *d.cand.shape[1:]), -1)]))
        self.alive = torch.cat([self.alive, torch.zeros(extra, dtype=torch.bool)])
        self.cap = cap

    def add(self, pool: Pool) -> None:
        m = len(pool)
        if m == 0:
            return
        if self.cap - self.count < m:
            self._grow(max(2 * self.cap, self.count + m))
        slots = (~self.alive).nonzero().squeeze(1)[:m]
        d = self.data
        d.row[slots], d.signs[slots], d.alpha[slots] = pool.row, pool.signs, pool.alpha.to(d.alpha.dtype)
        d.beta[slots], d.lower[slots], d.cand[slots] = pool.beta.to(d.beta.dtype), pool.lower, pool.cand
        self.alive[slots] = True
        self.count += m

    def lowest(self, n: int) -> torch.Tensor:
        return torch.topk(self.data.lower, min(n, self.count), largest=False).indices

    def pop(self, n: int) -> Pool:
        """Remove and return the ``n`` domains with the lowest bounds."""
        idx = self.lowest(n)
        out = self.data.take(idx)
        self.alive[idx] = False
        self.data.lower[idx] = math.inf
        self.count -= idx.numel()
        return out

    def peek(self, n: int) -> Pool:
        return self.data.take(self.lowest(n))


@dataclass
class Bounded:
    """Result of bounding a batch of domains."""

    lower: torch.Tensor  # [D]
    x_min: torch.Tensor  # [D, *in]
    alpha: torch.Tensor  # [D, U]
    beta: torch.Tensor  # [D, U]
    cand: torch.Tensor  # [D, c] neuron numbers by score, -1 where none is left
    bounds: list[Interval]  # the domains' pre-activation bounds


class Search:
    """One branch-and-bound run (see the module docstring)."""

    def __init__(self, task: Task, settings: BabSettings, root_bounds: list[Interval]):
        self.task, self.s = task, settings
        self.net: LayerNet = task.net
        self.xl, self.xu, self.spec = task.xl, task.xu, task.spec
        self.root_bounds = root_bounds
        self.space = Space(root_bounds)
        self.visited = 0
        self.undecided = 0
        self.proven = math.inf
        self.scale = max(1.0, float(self.net.logits((self.xl + self.xu) * 0.5).abs().max()))
        self.steps_dtype = torch.float32 if settings.fast_steps else self.net.dtype
        self.net_steps = self.net.cast(self.steps_dtype)
        self.root_bounds_steps = [(lo.to(self.steps_dtype), hi.to(self.steps_dtype)) for lo, hi in root_bounds]
        self.box_steps = (self.xl.to(self.steps_dtype), self.xu.to(self.steps_dtype))

    # -- bounding -------------------------------------------------------------------------------------
    def domain_bounds(self, signs: torch.Tensor, fast: bool = False) -> tuple[list[Interval], list[torch.Tensor]]:
        """Per-domain pre-activation bounds and dense split signs for ``signs`` ``[D, U]``; ``fast``: in the
        steps' dtype and without refinement (for heuristics only, never for a bound that decides)."""
        d = signs.shape[0]
        dense_signs, bounds = [], []
        root = self.root_bounds_steps if fast else self.root_bounds
        for k, (lower, upper) in enumerate(root):
            zero = torch.zeros(d, lower[0].numel(), dtype=lower.dtype)
            s = self.space.dense(signs, k, zero).view(d, *lower.shape[1:])
            dense_signs.append(s)
            bounds.append((lower.expand_as(s), upper.expand_as(s)))
        bounds = linear.apply_splits(bounds, dense_signs)
        if self.s.refine_intermediate and not fast and bool((signs != 0).any()):
            first = min(k for k in range(len(bounds)) if bool((dense_signs[k] != 0).any()))
            for k in range(first + 1, len(bounds)):
                if self.task.timed_out():  # skipping a refinement only loosens the bounds
                    break
                lo, hi = linear.ibp_from(self.net, k, bounds)
                b = (torch.maximum(bounds[k][0], lo), torch.minimum(bounds[k][1], hi))
                bounds[k] = b
                bounds[k] = linear.crown_layer(self.net, k, bounds, self.xl, self.xu)
                bounds = linear.apply_splits(bounds, dense_signs)
        return bounds, dense_signs

    def _params(self, bounds: list[Interval], alpha: torch.Tensor, beta: torch.Tensor) -> list[torch.Tensor]:
        alphas, betas = [], []
        for k, (lower, upper) in enumerate(bounds):
            d = lower.shape[0]
            fill = linear.default_alpha(lower, upper).flatten(1)
            alphas.append(self.space.dense(alpha, k, fill).clamp(0, 1).view(d, 1, *lower.shape[1:]))
            zero = torch.zeros_like(fill)
            betas.append(self.space.dense(beta, k, zero).clamp(min=0).view(d, 1, *lower.shape[1:]))
        return alphas + betas

    def _objective(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.spec.C[0, rows].unsqueeze(1), self.spec.d[0, rows].unsqueeze(1)

    def bound(self, rows: torch.Tensor, signs: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> Bounded:
        """β-CROWN bounds of a batch of domains, their minimising vertices and branching candidates."""
        bounds, dense_signs = self.domain_bounds(signs)
        n = len(bounds)
        C, d = self._objective(rows)
        empty = torch.zeros(rows.shape[0], dtype=torch.bool)
        for lower, upper in bounds:  # bounds crossing by more than rounding: the domain is empty
            empty |= (lower > upper + 1e-9 * (1 + upper.abs())).flatten(1).any(1)
        relaxed = linear.relax_all(bounds)
        t = self.steps_dtype
        relaxed_t = [r.to(t) for r in relaxed]
        signs_t = [s.to(t) for s in dense_signs]
        C_t, d_t, xl_t, xu_t = C.to(t), d.to(t), self.xl.to(t), self.xu.to(t)

        D = rows.shape[0]
        # Optimised parameters live on the root-unstable neurons only ([D, 1, U_k] per layer): far fewer
        # than all neurons, so the Adam steps cost little; they are scattered into dense slopes per pass.
        index = [self.space.positions[k].view(1, 1, -1).expand(D, 1, -1) for k in range(n)]

        def dense(ps: list[torch.Tensor], rel: list[linear.Relax]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            alphas, betas = [], []
            for k in range(n):
                shape = rel[k].alpha.shape[2:]
                base = rel[k].alpha.expand(D, 1, *shape).reshape(D, 1, -1)
                alphas.append(base.scatter(2, index[k], ps[k]).view(D, 1, *shape))
                betas.append(torch.zeros_like(base).scatter(2, index[k], ps[n + k]).view(D, 1, *shape))
            return alphas, betas

        def fn(ps: list[torch.Tensor]) -> torch.Tensor:
            alphas, betas = dense(ps, relaxed_t)
            return linear.backward(self.net_steps, C_t, None, xl_t, xu_t, alphas=alphas, betas=betas,
                                   signs=signs_t, relaxed=relaxed_t).lower + d_t

        sl = self.space.slices
        start = [alpha[:, sl[k]].unsqueeze(1).to(t).clamp(0.0, 1.0) for k in range(n)] + \
                [beta[:, sl[k]].unsqueeze(1).to(t).clamp(min=0.0) for k in range(n)]
        res = maximise(fn, start, [self.s.lr_alpha] * n + [self.s.lr_beta] * n,
                       [(0.0, 1.0)] * n + [(0.0, None)] * n, self.s.iterations, self.s.lr_decay,
                       target=torch.zeros_like(d_t), deadline=self.task.deadline)
        # the bound that decides: float64 layers, the best parameters projected again in float64
        params = [p.to(self.net.dtype).clamp(0.0, 1.0) for p in res.params[:n]] + \
                 [p.to(self.net.dtype).clamp(min=0.0) for p in res.params[n:]]
        alphas, betas = dense(params, relaxed)
        with torch.no_grad():
            final = linear.backward(self.net, C, None, self.xl, self.xu, alphas=alphas, betas=betas,
                                    signs=dense_signs, want_x=True, want_relu_A=True, relaxed=relaxed)
        lower = (final.lower + d)[:, 0]
        if t == self.net.dtype:
            lower = torch.maximum(res.best[:, 0], lower)
        lower = torch.where(empty, torch.full_like(lower, math.inf), lower)
        new_alpha = torch.cat([p[:, 0] for p in params[:n]], dim=1)
        new_beta = torch.cat([p[:, 0] for p in params[n:]], dim=1)
        cand = self.candidates(bounds, final.relu_A)
        return Bounded(lower, final.x_min[:, 0], new_alpha, new_beta, cand, bounds)

    def candidates(self, bounds: list[Interval], relu_A: list[torch.Tensor | None] | None) -> torch.Tensor:
        """Neurons by BaBSR-style score: the upper line's intercept times the negative part of its
        coefficient (what a split removes from the bound), plus a small share of ``|coefficient| ×
        intercept`` so that neurons with a positive coefficient are ranked too; -1 where none is left."""
        assert relu_A is not None
        scores = []
        for k, (lower, upper) in enumerate(bounds):
            lam = relu_A[k][:, 0].flatten(1) if relu_A[k] is not None else torch.zeros_like(lower.flatten(1))
            lo, hi = lower.flatten(1), upper.flatten(1)
            unst = linear.unstable(lo, hi)
            icpt = torch.where(unst, -lo * hi / torch.where(unst, hi - lo, torch.ones_like(hi)), torch.zeros_like(hi))
            score = lam.clamp(max=0).neg() * icpt + 1e-3 * lam.abs() * icpt
            score = torch.where(unst, score, torch.full_like(score, -math.inf))
            scores.append(self.space.gather(score, k))
        score = torch.cat(scores, dim=1) if scores else torch.zeros(bounds[0][0].shape[0], 0)
        c = min(self.s.candidates if self.s.branching == "fsb" else 1, score.shape[1])
        if c == 0:
            return torch.full((score.shape[0], 1), -1, dtype=torch.long)
        top = torch.topk(score, c, dim=1)
        return torch.where(torch.isfinite(top.values), top.indices, torch.full_like(top.indices, -1))

    # -- branching ------------------------------------------------------------------------------------
    def choose(self, batch: Pool) -> torch.Tensor:
        """The neuron to split in each domain of ``batch`` (FSB: the candidate whose children bound best)."""
        first = batch.cand[:, 0]
        if self.s.branching == "babsr" or batch.cand.shape[1] == 1:
            return first
        d, c = batch.cand.shape
        valid = batch.cand >= 0
        cand = torch.where(valid, batch.cand, first.unsqueeze(1).expand(d, c))
        parent = torch.arange(d).repeat_interleave(2 * c)
        which = cand.repeat_interleave(2, dim=1).flatten()
        side = torch.tensor([1, -1], dtype=torch.int8).repeat(d * c)
        signs = batch.signs[parent].clone()
        signs[torch.arange(signs.shape[0]), which] = side
        bounds, dense_signs = self.domain_bounds(signs, fast=True)  # a heuristic: float32 is enough
        n = len(bounds)
        t = self.steps_dtype
        params = self._params(bounds, batch.alpha[parent].to(t), batch.beta[parent].to(t))
        C, off = self._objective(batch.row[parent])
        with torch.no_grad():
            lb = linear.backward(self.net_steps, C.to(t), bounds, *self.box_steps, alphas=params[:n],
                                 betas=params[n:], signs=dense_signs).lower[:, 0] + off[:, 0].to(t)
        pair = lb.view(d, c, 2)
        score = pair.min(dim=2).values if self.s.reduce == "min" else pair.max(dim=2).values
        score = torch.where(valid, score, torch.full_like(score, -math.inf))
        return cand[torch.arange(d), score.argmax(dim=1)]

    # -- the loop -------------------------------------------------------------------------------------
    def split(self, batch: Pool, neuron: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        d = len(batch)
        rows = batch.row.repeat_interleave(2)
        signs = batch.signs.repeat_interleave(2, dim=0)
        signs[torch.arange(2 * d), neuron.repeat_interleave(2)] = torch.tensor([1, -1], dtype=torch.int8).repeat(d)
        return rows, signs, batch.alpha.repeat_interleave(2, dim=0), batch.beta.repeat_interleave(2, dim=0)

    def settle(self, rows: torch.Tensor, signs: torch.Tensor, res: Bounded) -> tuple[Pool | None, Verdict | None]:
        """Check counterexamples, prune proven domains, resolve fully split ones; the survivors."""
        from actbench.complete.milp import lp_leaf

        self.visited += rows.shape[0]
        hit = find_counterexample(self.net, res.x_min, self.xl, self.xu, self.spec)
        if hit is not None:
            return None, self.verdict("falsified", "relaxation vertex", hit)
        proven = res.lower > 0
        if bool(proven.any()):
            self.proven = min(self.proven, float(res.lower[proven].min()))
        open_ = ~proven
        leaf = open_ & (res.cand[:, 0] < 0)
        for i in leaf.nonzero().flatten().tolist():
            bounds = [(lo[i:i + 1], hi[i:i + 1]) for lo, hi in res.bounds]
            out = lp_leaf(self.net, bounds, self.xl, self.xu, self.spec, int(rows[i]),
                          self.s.lp_tolerance * self.scale, self.task.deadline)
            if out.status == "falsified":
                return None, self.verdict("falsified", "exact LP of a fully split domain",
                                          (out.counterexample, out.value))
            if out.status == "verified":
                self.proven = min(self.proven, float(out.bound))
            else:
                self.undecided += 1
        keep = (open_ & ~leaf).nonzero().flatten()
        pool = Pool(rows[keep], signs[keep], res.alpha[keep].half(), res.beta[keep].half(), res.lower[keep],
                    res.cand[keep])
        return pool, None

    def verdict(self, status: str, reason: str, hit: tuple[torch.Tensor, float] | None = None,
                **stats: Any) -> Verdict:
        return Verdict(status, "bab", self.task.elapsed(), counterexample=None if hit is None else hit[0],
                       value=None if hit is None else hit[1],
                       lower_bound=self.proven if status == "verified" and math.isfinite(self.proven) else None,
                       reason=reason, domains=self.visited, stats=stats)

    def run(self, rows: torch.Tensor, alpha: torch.Tensor) -> Verdict:
        beta = torch.zeros_like(alpha)
        signs = torch.zeros(rows.shape[0], self.space.size, dtype=torch.int8)
        first, done = self.settle(rows, signs, self.bound(rows, signs, alpha, beta))
        if done is not None or first is None:
            return done
        pool = Domains(first)
        pool.add(first)
        limit = self.max_open()
        step = 0
        while len(pool):
            if self.task.timed_out():
                return self.verdict("unknown", "timeout", open=len(pool))
            if len(pool) > limit:
                return self.verdict("unknown", f"more than {limit} open domains (memory limit)", open=len(pool))
            batch = pool.pop(self.s.batch)
            neuron = self.choose(batch)
            rows, signs, alpha, beta = self.split(batch, neuron)
            res = self.bound(rows, signs, alpha.double(), beta.double())
            children, done = self.settle(rows, signs, res)
            if done is not None or children is None:
                return done
            pool.add(children)
            step += 1
            if self.s.attack and self.s.attack_every and step % self.s.attack_every == 0 and len(pool):
                worst = pool.peek(16)
                starts = self.bound_vertices(worst)
                hit = falsify(self.net, self.xl, self.xu, self.spec, FalsifySettings(restarts=16, steps=20),
                              starts=starts, deadline=self.task.deadline)
                if hit is not None:
                    return self.verdict("falsified", "attack from the worst domains", hit)
        if self.undecided:
            return self.verdict("unknown", f"{self.undecided} fully split domains undecided within the LP tolerance")
        return self.verdict("verified", "every domain proven")

    def max_open(self) -> int:
        """Open domains allowed: ``max_domains``, and no more than ``max_memory`` bytes of them."""
        per_domain = self.space.size * 5 + 8 * (self.s.candidates + 3)
        return max(2, min(self.s.max_domains, int(self.s.max_memory // per_domain)))

    def bound_vertices(self, batch: Pool) -> torch.Tensor:
        """The relaxation-minimising vertices of ``batch`` (one cheap pass with the stored parameters)."""
        bounds, dense_signs = self.domain_bounds(batch.signs)
        n = len(bounds)
        params = self._params(bounds, batch.alpha.double(), batch.beta.double())
        C, _ = self._objective(batch.row)
        with torch.no_grad():
            out = linear.backward(self.net, C, bounds, self.xl, self.xu, alphas=params[:n], betas=params[n:],
                                  signs=dense_signs, want_x=True)
        return out.x_min[:, 0]


def refine_root(task: Task, root: AlphaResult, settings: BabSettings, alpha: AlphaSettings) -> AlphaResult:
    """The root's intermediate bounds tightened layer by layer by MILP (``milp.refine_layer``), each
    refined layer's successors re-tightened by α-CROWN, then the output bound again (the "refine" step
    of alpha-beta-CROWN's mnist_fc configuration). At most ``refine_seconds``."""
    from actbench.complete.alpha_crown import optimise_output, tighten_bounds
    from actbench.complete.milp import refine_layer

    net, xl, xu = task.net, task.xl, task.xu
    stop = now() + settings.refine_seconds
    if task.deadline is not None:
        stop = min(stop, task.deadline)
    bounds = list(root.bounds)
    for k in range(1, len(net.relus)):
        if now() > stop:
            break
        if linear.exact_by_ibp(net, k):
            continue
        bounds[k] = refine_layer(net, bounds, k, xl, xu, settings.refine_per_neuron, stop)
        if k + 1 < len(net.relus):
            bounds = tighten_bounds(net, bounds, xl, xu, alpha, stop, start=k + 1)
    lower, alphas, x_min = optimise_output(net, bounds, xl, xu, task.spec, alpha, task.deadline)
    return AlphaResult(torch.maximum(lower, root.lower), root.crown_lower, bounds, alphas, x_min)


@register("bab", "beta-CROWN branch and bound (complete; unknown only at its time or memory limit)")
def verify_bab(task: Task) -> Verdict:
    """Attack, α-CROWN at the root, then branch and bound on the rows it left <= 0."""
    opts = dict(task.options)
    attack_opts = opts.pop("falsify", None) or {}
    alpha_opts = opts.pop("alpha", None) or {}
    net, xl, xu, spec = task.net, task.xl, task.xu, task.spec
    settings = BabSettings.from_dict(opts).resolved(net)

    def done(status: str, reason: str, hit: tuple[torch.Tensor, float] | None = None, **kw: Any) -> Verdict:
        return Verdict(status, "bab", task.elapsed(), None if hit is None else hit[0],
                       value=None if hit is None else hit[1], reason=reason, **kw)

    if settings.attack:
        hit = falsify(net, xl, xu, spec, FalsifySettings(**attack_opts), deadline=task.deadline)
        if hit is not None:
            return done("falsified", "attack", hit)
    # the root's intermediate bounds are alpha-optimised for fully connected nets (as alpha-beta-CROWN does on
    # mnist_fc) and stay CROWN's for convolutional ones, where the optimisation costs more than it saves
    root_alpha = AlphaSettings.from_dict({"iterations": 50, "intermediate": fully_connected(net), **alpha_opts})
    root = alpha_crown(net, xl, xu, spec, root_alpha, deadline=task.deadline)
    hit = find_counterexample(net, root.x_min[0], xl, xu, spec)
    if hit is not None:
        return done("falsified", "relaxation vertex", hit)
    lower = root.lower[0]
    if bool((lower > 0).all()):
        return done("verified", "alpha-crown", lower_bound=float(lower.min()))
    if settings.refine_seconds > 0 and not task.timed_out():
        root = refine_root(task, root, settings, root_alpha)
        lower = root.lower[0]
        if bool((lower > 0).all()):
            return done("verified", "alpha-crown after MILP refinement", lower_bound=float(lower.min()))
    if task.timed_out():
        return done("unknown", "timeout", lower_bound=float(lower.min()))
    rows = torch.argsort(lower)
    rows = rows[lower[rows] <= 0]
    search = Search(task, settings, root.bounds)
    alpha = torch.cat([search.space.gather(a[0], k) for k, a in enumerate(root.alphas)], dim=1)[rows]
    verdict = search.run(rows, alpha)
    if verdict.status == "verified":  # the smallest bound over the rows proven at the root and the leaves
        verdict.lower_bound = min([search.proven, *[float(v) for v in lower if v > 0]])
    elif verdict.status == "unknown":
        verdict.lower_bound = float(lower.min())
    return verdict
