"""Batched, safeguarded root search for certified radii (sound: the answer is always certified).

For one sample, ``f(eps)`` is the verifier's lower bound of the smallest margin ``min_t (z_y - z_t)``
over the clipped box of radius ``eps``. The certified radius is the largest ``eps`` in ``[0, eps_max]``
with ``f(eps) > 0``. :func:`root_search` keeps, per sample, a bracket ``[lo, hi]`` where ``f(lo) > 0``
and ``f(hi) <= 0`` were *observed*, and returns ``lo``. So every radius it reports is an eps at which
the verifier actually certified, whether or not ``f`` is monotone (IBP is; CROWN-family bounds need
not be). Nothing is ever extrapolated past the certified side.

Probe choice (vectorised over the batch, one bound pass per active sample per round):

* round 1 evaluates ``eps_max`` (certified there: done after one pass), or the warm start ``init``;
* then inverse quadratic interpolation through the three latest points, else a secant through the
  two latest, else Anderson-Bjorck regula falsi on the bracket, clamped at least ``0.9 * tol`` inside
  the bracket so that one accurate estimate closes it with the next probe;
* bisection (geometric when the bracket spans a factor > 4) when the bracket did not halve in three
  rounds: the safeguard of Brent's method, so the worst case stays logarithmic.

IBP margin bounds are piecewise linear in eps, so once the points fall on the root's linear piece the
interpolation is exact and the bracket closes on the next probe: about 5-6 passes per sample whose
radius lies inside ``(0, eps_max)`` at rtol 1e-4, where bisection needs about 16
(``benchmarks/certify.py``). Samples leave the active batch when their bracket is tight:
``(hi - lo) <= rtol * hi`` or ``(hi - lo) <= atol``.

``snap`` points (an eps grid) are never left strictly inside a final bracket: such a point is probed,
so "radius >= eps" agrees exactly with direct certification at every grid eps (monotone verifiers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from actbench.errors import InvalidInput

BoundFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(active_idx [n] int64, eps [n]) -> min margin lower bound [n]`` for those samples."""

MIN_STEP = 0.9  # probes stay this fraction of the tolerance inside the bracket
STALL_ROUNDS = 3  # bisect when the bracket did not halve in this many rounds
USE_IQI = True
PREDICT_AIM = 0.5  # predict mode: probes aim this fraction of the tolerance below the estimated root


@dataclass
class SearchResult:
    """Outcome of :func:`root_search`, one entry per sample."""

    radius: torch.Tensor  # [B] float64, lower bracket end (certified), 0 when nothing was certified
    passes: torch.Tensor  # [B] int64, bound passes spent on the sample
    certified_at_max: torch.Tensor  # [B] bool, certified at eps_max
    converged: torch.Tensor  # [B] bool, bracket closed (False: max_passes or deadline hit)


@dataclass
class RadiusResult:
    """Certified radii of a batch (see :func:`certified_radii`)."""

    radius: torch.Tensor  # [B] in the input dtype; exact eps values at which the verifier certified
    passes: torch.Tensor  # [B] int64
    certified_at_max: torch.Tensor  # [B] bool
    converged: torch.Tensor  # [B] bool


def _batch_size(*tensors: torch.Tensor | float | None, n: int | None) -> int:
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.dim() == 1:
            return int(t.shape[0])
    if n is None:
        raise InvalidInput("root_search: give n, or f0 / eps_max / init as a [B] tensor")
    return n


def _as_vector(value: torch.Tensor | float | None, n: int, fill: float, device: torch.device) -> torch.Tensor:
    if value is None:
        return torch.full((n,), fill, dtype=torch.float64, device=device)
    if isinstance(value, torch.Tensor):
        value = value.detach().to(device=device, dtype=torch.float64)
        if value.dim() == 0:
            return value.expand(n).clone()
        if value.shape != (n,):
            raise InvalidInput(f"root_search: expected shape [{n}], got {list(value.shape)}")
        return value.clone()
    return torch.full((n,), float(value), dtype=torch.float64, device=device)


def _cast(t: torch.Tensor, dtype: torch.dtype, up: bool) -> torch.Tensor:
    """Float64 values rounded to ``dtype`` upwards or downwards (not to nearest), back in float64.

    The cap and snap points are rounded up, so "certified at the rounded point" still implies
    "certified at the requested eps" (a smaller box); a radius at the cap may then exceed ``eps_max``
    by one unit in the last place of ``dtype`` (callers may clamp it, a smaller claim).
    """
    c = t.to(dtype)
    toward = torch.full_like(c, float("inf") if up else float("-inf"))
    wrong = c.double() < t if up else c.double() > t
    return torch.where(wrong, torch.nextafter(c, toward), c).double()


def _secant(a: torch.Tensor, fa: torch.Tensor, b: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Root of the line through (a, fa) and (b, fb); NaN where undefined."""
    x = b - fb * (b - a) / (fb - fa)
    return torch.where(torch.isfinite(x) & (fa != fb), x, torch.full_like(x, float("nan")))


def root_search(
    fn: BoundFn,
    eps_max: torch.Tensor | float,
    rtol: float = 1e-4,
    atol: float = 1e-9,
    max_passes: int = 60,
    init: torch.Tensor | None = None,
    f0: torch.Tensor | None = None,
    n: int | None = None,
    snap: torch.Tensor | list[float] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    deadline: float | None = None,
    predict: bool = False,
) -> SearchResult:
    """Per-sample largest eps in ``[0, eps_max]`` with ``fn(eps) > 0``, from below (sound).

    ``f0`` is ``f(0)`` (the clean margin; evaluated with one pass when None); samples with
    ``f0 <= 0`` get radius 0 and no further passes. ``init`` is a warm-start guess evaluated first.
    Probes are cast to ``dtype`` before calling ``fn`` and the cast value is what is stored, so the
    returned radius is exactly the eps the verifier saw. ``deadline`` is a ``time.monotonic()`` time
    after which the search stops (unfinished samples keep ``converged=False``).

    ``predict`` (training radii): probes aim just below the interpolated root, and a sample also stops
    when it was just certified at ``p`` and the secant through its two latest points puts the root
    within ``rtol`` above ``p``. The radius is still an eps that certified; only its distance to the
    root is estimated instead of bracketed, which saves about one pass and one round per sample.
    """
    if not (rtol > 0 and atol >= 0 and max_passes >= 1):
        raise InvalidInput(f"root_search: need rtol > 0, atol >= 0, max_passes >= 1 (got {rtol}, {atol}, {max_passes})")
    device = torch.device(device)
    n = _batch_size(f0, eps_max, init, n=n)
    cap = _cast(_as_vector(eps_max, n, 0.0, device), dtype, up=True)
    if bool((cap < 0).any()) or not bool(torch.isfinite(cap).all()):
        raise InvalidInput("root_search: eps_max must be finite and >= 0")
    passes = torch.zeros(n, dtype=torch.int64, device=device)
    all_idx = torch.arange(n, device=device)
    if f0 is None:
        f0 = _as_vector(fn(all_idx, torch.zeros(n, dtype=dtype, device=device)), n, 0.0, device)
        passes += 1
    else:
        f0 = _as_vector(f0, n, 0.0, device)
    snap_t = None
    if snap is not None:
        snap_t = _cast(torch.as_tensor(snap, dtype=torch.float64, device=device).flatten(), dtype, up=True)
        snap_t = snap_t[snap_t > 0].unique() if snap_t.numel() else None
        if snap_t is not None and snap_t.numel() == 0:
            snap_t = None

    st = _State.start(f0, cap)
    done = ~(f0 > 0) | (cap <= 0)
    converged = done.clone()
    active = ~done
    at_max = torch.zeros(n, dtype=torch.bool, device=device)
    if init is not None:
        guess = _as_vector(init, n, float("nan"), device).to(dtype).double()
        guess = torch.where(torch.isfinite(guess) & (guess > 0) & (guess < cap), guess, cap)
    else:
        guess = cap.clone()

    while bool(active.any()):
        if deadline is not None and time.monotonic() > deadline:
            break
        idx = all_idx[active]
        p = _next_probe(st, idx, guess, cap, rtol, atol, snap_t, predict).to(dtype).double()
        inside = (p > st.lo[idx]) & ((p < st.hi[idx]) | ~st.hi_known[idx])
        mid = (0.5 * (st.lo[idx] + st.hi[idx])).to(dtype).double()
        p = torch.where(inside, p, mid)
        inside = (p > st.lo[idx]) & ((p < st.hi[idx]) | ~st.hi_known[idx])
        if not bool(inside.all()):  # bracket at the resolution of dtype: nothing left to refine
            stuck = idx[~inside]
            converged[stuck] = True
            active[stuck] = False
            idx, p = idx[inside], p[inside]
            if idx.numel() == 0:
                continue
        f = _as_vector(fn(idx, p.to(dtype)), idx.numel(), float("nan"), device)
        passes[idx] += 1
        st.update(idx, p, f)

        top = (f > 0) & (p >= cap[idx])
        at_max[idx[top]] = True
        width = st.hi[idx] - st.lo[idx]
        tight = st.hi_known[idx] & ((width <= rtol * st.hi[idx]) | (width <= atol))
        if snap_t is not None:
            tight &= ~_snap_inside(snap_t, st.lo[idx], st.hi[idx]).isfinite()
        fin = top | tight
        if predict:  # certified at p and the local secant puts the root within rtol above p
            est = _secant(st.pts[idx, 1], st.fpts[idx, 1], p, f)
            fin |= (f > 0) & (est >= p) & (est <= p + torch.clamp(rtol * p, min=atol))
        converged[idx[fin]] = True
        active[idx[fin]] = False
        active[idx[passes[idx] >= max_passes]] = False

    return SearchResult(st.lo, passes, at_max, converged)


@dataclass
class _State:
    """Per-sample search state (all [B] float64 unless noted)."""

    lo: torch.Tensor  # largest eps observed certified so far (0 at start)
    flo: torch.Tensor
    hi: torch.Tensor  # smallest eps observed not certified (eps_max until evaluated)
    fhi: torch.Tensor
    hi_known: torch.Tensor  # bool: hi was evaluated
    pts: torch.Tensor  # [B, 3] the three latest points, newest last (NaN: none yet)
    fpts: torch.Tensor  # [B, 3] their values
    flo_w: torch.Tensor  # Anderson-Bjorck weighted end values for regula falsi
    fhi_w: torch.Tensor
    last_side: torch.Tensor  # int8: +1 lo moved last, -1 hi moved last, 0 none
    w_ref: torch.Tensor  # bracket width at the last halving
    stall: torch.Tensor  # int64: rounds since the bracket last halved
    rounds: torch.Tensor  # int64: probes made

    @classmethod
    def start(cls, f0: torch.Tensor, cap: torch.Tensor) -> _State:
        nan = torch.full_like(f0, float("nan"))
        pts = torch.stack([nan, nan, torch.zeros_like(f0)], dim=1)
        fpts = torch.stack([nan, nan, f0], dim=1)
        zeros = torch.zeros(f0.shape[0], dtype=torch.int64, device=f0.device)
        return cls(
            torch.zeros_like(f0), f0.clone(), cap.clone(), nan.clone(), torch.zeros_like(f0, dtype=torch.bool),
            pts, fpts, f0.clone(), nan.clone(), torch.zeros_like(zeros, dtype=torch.int8), cap.clone(),
            zeros.clone(), zeros.clone(),
        )

    def update(self, idx: torch.Tensor, p: torch.Tensor, f: torch.Tensor) -> None:
        """Record ``f(p)`` for samples ``idx``: move one bracket end, shift the point history."""
        cert = f > 0  # NaN counts as not certified
        up, dn = idx[cert], idx[~cert]
        # Anderson-Bjorck: shrink the stagnant end's weight when the same end moves twice in a row.
        m_up = _ab_factor(f[cert], self.flo[up])
        m_dn = _ab_factor(f[~cert], self.fhi[dn])
        self.fhi_w[up] = torch.where(self.last_side[up] == 1, self.fhi_w[up] * m_up, self.fhi_w[up])
        self.flo_w[dn] = torch.where(self.last_side[dn] == -1, self.flo_w[dn] * m_dn, self.flo_w[dn])
        self.lo[up], self.flo[up], self.flo_w[up] = p[cert], f[cert], f[cert]
        self.hi[dn], self.fhi[dn], self.fhi_w[dn] = p[~cert], f[~cert], f[~cert]
        self.hi_known[dn] = True
        self.last_side[up], self.last_side[dn] = 1, -1
        self.pts[idx] = torch.cat([self.pts[idx, 1:], p[:, None]], dim=1)
        self.fpts[idx] = torch.cat([self.fpts[idx, 1:], f[:, None]], dim=1)
        # Bisection safeguard: count rounds in which the bracket failed to halve.
        width = self.hi[idx] - self.lo[idx]
        reset = (width <= 0.5 * self.w_ref[idx]) | ~self.hi_known[idx] | (self.rounds[idx] == 0)
        self.w_ref[idx] = torch.where(reset, width, self.w_ref[idx])
        self.stall[idx] = torch.where(reset, torch.zeros_like(self.stall[idx]), self.stall[idx] + 1)
        self.rounds[idx] += 1


def _ab_factor(f_new: torch.Tensor, f_old: torch.Tensor) -> torch.Tensor:
    """Anderson-Bjorck weight ``1 - f_new / f_old``, or 1/2 when that is not in (0, 1)."""
    m = 1.0 - f_new / f_old
    return torch.where(torch.isfinite(m) & (m > 0) & (m < 1), m, torch.full_like(m, 0.5))


def _snap_inside(snap: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Smallest snap point strictly inside (lo, hi) per sample, +inf where none."""
    mask = (snap[None, :] > lo[:, None]) & (snap[None, :] < hi[:, None])
    vals = torch.where(mask, snap[None, :], torch.full_like(mask, float("inf"), dtype=snap.dtype))
    return vals.min(dim=1).values


def _iqi(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Inverse quadratic interpolation through three points per row (x as a quadratic in f) at f = 0."""
    x0, x1, x2 = x.unbind(1)
    f0, f1, f2 = f.unbind(1)
    est = (
        x0 * f1 * f2 / ((f0 - f1) * (f0 - f2))
        + x1 * f0 * f2 / ((f1 - f0) * (f1 - f2))
        + x2 * f0 * f1 / ((f2 - f0) * (f2 - f1))
    )
    return torch.where(torch.isfinite(est), est, torch.full_like(est, float("nan")))


def _next_probe(
    st: _State, idx: torch.Tensor, guess: torch.Tensor, cap: torch.Tensor, rtol: float, atol: float,
    snap: torch.Tensor | None, predict: bool = False,
) -> torch.Tensor:
    """The next eps to evaluate for the active samples ``idx`` (float64)."""
    lo, hi, known = st.lo[idx], st.hi[idx], st.hi_known[idx]
    pts, fpts = st.pts[idx], st.fpts[idx]
    sec = _secant(pts[:, 1], fpts[:, 1], pts[:, 2], fpts[:, 2])
    d_lo = MIN_STEP * torch.clamp(rtol * lo, min=atol)
    d_hi = MIN_STEP * torch.clamp(rtol * hi, min=atol)

    # Bracketed step: inverse quadratic, else secant, else regula falsi, else bisection (an estimate at
    # an end of the bracket is kept: the clamp below moves it a min step inside).
    def ok(v: torch.Tensor) -> torch.Tensor:
        return torch.isfinite(v) & (v >= lo) & (v <= hi)

    mid = torch.where((lo > 0) & (hi > 4 * lo), torch.sqrt(lo * hi), 0.5 * (lo + hi))  # geometric when far apart
    rf = lo + st.flo_w[idx] * (hi - lo) / (st.flo_w[idx] - st.fhi_w[idx])
    est = torch.where(ok(rf), rf, mid)
    est = torch.where(ok(sec), sec, est)
    if USE_IQI:
        iqi = _iqi(pts, fpts)
        est = torch.where(ok(iqi), iqi, est)
    if predict:  # aim just below the estimated root, so that the probe certifies and can stop the sample
        est = est - PREDICT_AIM * torch.clamp(rtol * est, min=atol)
    est = torch.where(st.stall[idx] >= STALL_ROUNDS, mid, est)
    roomy = lo + d_lo < hi - d_hi
    bracketed = torch.where(roomy, torch.minimum(torch.maximum(est, lo + d_lo), hi - d_hi), mid)
    if snap is not None:  # tight bracket with a grid point inside: probe that point
        s = _snap_inside(snap, lo, hi)
        width = hi - lo
        tight = (width <= rtol * hi) | (width <= atol)
        bracketed = torch.where(tight & torch.isfinite(s), s, bracketed)

    # Upper end not evaluated yet (a certified warm start): extrapolate once, then try the cap.
    if predict:
        sec = sec - PREDICT_AIM * torch.clamp(rtol * sec, min=atol)
    up = torch.where(torch.isfinite(sec) & (sec > lo + d_lo), sec, 2.0 * lo)
    up = torch.where(st.rounds[idx] >= 2, cap[idx], torch.minimum(up, cap[idx]))
    return torch.where(st.rounds[idx] == 0, guess[idx], torch.where(known, bracketed, up))


def certified_radii(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_max: float | torch.Tensor,
    method: str = "ibp",
    rtol: float = 1e-4,
    max_passes: int = 60,
    logits: torch.Tensor | None = None,
    bn_stats: object | None = None,
    init: torch.Tensor | None = None,
    lo: float = 0.0,
    hi: float = 1.0,
    atol: float = 1e-9,
    snap: torch.Tensor | list[float] | None = None,
    deadline: float | None = None,
    predict: bool = False,
) -> RadiusResult:
    """Per-sample certified radius of ``model`` at ``(x, y)`` with verifier ``method``, capped at ``eps_max``.

    Misclassified samples (clean margin <= 0; pass ``logits`` to skip the clean forward) get radius 0
    and 0 passes. Works in eval mode and in train mode with the clean batch's ``bn_stats`` (then pass
    ``logits`` too, or the clean forward runs here via ``clean_forward``). Runs without gradients.
    Radii come back in ``x.dtype`` and are exact eps values at which the verifier certified.
    ``predict`` as in :func:`root_search` (training radii).
    """
    from actbench.bounds import build_network, clean_forward, margin_bounds, prepared
    from actbench.bounds.batchnorm import batch_stats, needs_batch_stats

    if x.shape[0] != y.shape[0]:
        raise InvalidInput(f"certified_radii: {x.shape[0]} inputs but {y.shape[0]} labels")
    if method == "alpha-crown" and model.training:
        raise InvalidInput("alpha-crown certifies models in eval mode (running BatchNorm statistics) only")
    with torch.no_grad():
        if logits is None:
            logits, stats = clean_forward(model, x)
            if bn_stats is None:
                bn_stats = stats
        elif bn_stats is None and model.training:
            # The search evaluates subsets of the batch: fix the whole clean batch's statistics once.
            net = build_network(model)
            if needs_batch_stats(net):
                bn_stats = batch_stats(net, x)
        f0 = clean_margin(logits.to(torch.float64), y)

        def fn(idx: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
            if method == "alpha-crown":  # the complete package's alpha-CROWN (eval-mode models only)
                from actbench.complete.alpha_crown import margin_lower

                return margin_lower(model, x[idx], y[idx], eps, lo=lo, hi=hi).min(dim=1).values
            res = margin_bounds(model, x[idx], y[idx], eps, method=method, lo=lo, hi=hi, bn_stats=bn_stats)
            return res.lower.min(dim=1).values

        with prepared(model):  # the model is fixed during the search: prepare its layers once
            res = root_search(
                fn, eps_max if isinstance(eps_max, torch.Tensor) else float(eps_max), rtol=rtol, atol=atol,
                max_passes=max_passes, init=init, f0=f0, snap=snap, dtype=x.dtype, device=x.device,
                deadline=deadline, predict=predict,
            )
    return RadiusResult(res.radius.to(x.dtype), res.passes, res.certified_at_max, res.converged)


def clean_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{t != y} z_t`` per sample (> 0 iff correctly classified without ties)."""
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return z_y - others.max(dim=1).values
