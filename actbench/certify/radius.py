"""Batched, safeguarded root search for certified radii (sound: the answer is always certified).

For one sample, ``f(eps)`` is the verifier's lower bound of the smallest margin ``min_t (z_y - z_t)``
over the clipped box of radius ``eps``. The certified radius is the largest ``eps`` in ``[0, eps_max]``
with ``f(eps) > 0``. :func:`root_search` keeps, per sample, a bracket ``[lo, hi]`` where ``f(lo) > 0``
and ``f(hi) <= 0`` were *observed*, and returns ``lo``. So every radius it reports is an eps at which
the verifier actually certified, whether or not ``f`` is monotone (IBP is; CROWN-family bounds need
not be). Nothing is ever extrapolated past the certified side.

Probe choice (vectorised over the batch, one bound pass per active sample per round):

* round 1 evaluates ``eps_max`` (certified there: done after one pass), or the warm start ``init``;
* after a warm start, round 2 solves the sample's curvature model (``curvature``, measured by its
  previous search) through ``(0, f0)`` and ``(init, f(init))`` where it is given; a warm start that
  certified is extrapolated twice before ``eps_max`` is tried;
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

import numpy as np
import torch

from actbench.errors import InvalidInput

BoundFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(active_idx [n] int64, eps [n]) -> min margin lower bound [n]`` for those samples."""

MIN_STEP = 0.9  # probes stay this fraction of the tolerance inside the bracket
STALL_ROUNDS = 3  # bisect when the bracket did not halve in this many rounds
USE_IQI = True
PREDICT_AIM = 0.5  # predict mode: probes aim this fraction of the tolerance below the estimated root
EXTRAPOLATIONS = 2  # probes past a certified warm start before the cap is tried


@dataclass
class SearchResult:
    """Outcome of :func:`root_search`, one entry per sample."""

    radius: torch.Tensor  # [B] float64, lower bracket end (certified), 0 when nothing was certified
    passes: torch.Tensor  # [B] int64, bound passes spent on the sample
    certified_at_max: torch.Tensor  # [B] bool, certified at eps_max
    converged: torch.Tensor  # [B] bool, bracket closed (False: max_passes or deadline hit)
    curvature: torch.Tensor  # [B] float64, normalised curvature of f (see root_search), NaN if none


@dataclass
class RadiusResult:
    """Certified radii of a batch (see :func:`certified_radii`)."""

    radius: torch.Tensor  # [B] in the input dtype; exact eps values at which the verifier certified
    passes: torch.Tensor  # [B] int64
    certified_at_max: torch.Tensor  # [B] bool
    converged: torch.Tensor  # [B] bool
    curvature: torch.Tensor  # [B] float64, as in SearchResult (a warm start for the next search)


def _batch_size(*tensors: torch.Tensor | float | None, n: int | None) -> int:
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.dim() == 1:
            return int(t.shape[0])
    if n is None:
        raise InvalidInput("root_search: give n, or f0 / eps_max / init as a [B] tensor")
    return n


_NUMPY_FLOATS = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


def _as_vector(value: torch.Tensor | float | None, n: int, fill: float) -> np.ndarray:
    """``value`` as a float64 host array of shape ``[n]`` (a scalar is broadcast, None is ``fill``)."""
    if value is None:
        return np.full(n, fill, dtype=np.float64)
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return np.full(n, float(value), dtype=np.float64)
        if value.shape != (n,):
            raise InvalidInput(f"root_search: expected shape [{n}], got {list(value.shape)}")
        host = value.detach().cpu()
        if host.dtype in _NUMPY_FLOATS:  # a copy in float64 straight from NumPy
            return host.numpy().astype(np.float64)
        return host.to(torch.float64).numpy()
    return np.full(n, float(value), dtype=np.float64)


def _cast(t: np.ndarray, dtype: torch.dtype, up: bool) -> np.ndarray:
    """Float64 values rounded to ``dtype`` upwards or downwards (not to nearest), back in float64.

    The cap and snap points are rounded up, so "certified at the rounded point" still implies
    "certified at the requested eps" (a smaller box); a radius at the cap may then exceed ``eps_max``
    by one unit in the last place of ``dtype`` (callers may clamp it, a smaller claim).
    """
    if dtype in _NUMPY_FLOATS:  # in NumPy, without tensors (a doubly rounded c is still a neighbour of t)
        c = t.astype(_NUMPY_FLOATS[dtype])
        wrong = c < t if up else c > t
        with np.errstate(over="ignore"):  # the neighbour of the largest finite value, where it is not used
            step = np.nextafter(c, c.dtype.type(np.inf if up else -np.inf))
        return np.where(wrong, step, c).astype(np.float64)
    exact = torch.from_numpy(t)
    c = exact.to(dtype)
    toward = torch.full_like(c, float("inf") if up else float("-inf"))
    wrong = c.double() < exact if up else c.double() > exact
    return torch.where(wrong, torch.nextafter(c, toward), c).double().numpy()


def _round(p: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """``p`` rounded to the nearest ``dtype`` value, in float64 (the eps the verifier will see)."""
    if dtype == torch.float64:
        return p
    if dtype == torch.float32:  # NumPy rounds float64 to float32 correctly (to float16 it may round twice)
        return p.astype(np.float32).astype(np.float64)
    return torch.from_numpy(p).to(dtype).double().numpy()


def _secant(a: np.ndarray, fa: np.ndarray, b: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Root of the line through (a, fa) and (b, fb); NaN where undefined."""
    x = b - fb * (b - a) / (fb - fa)
    return np.where(np.isfinite(x) & (fa != fb), x, np.nan)


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
    curvature: torch.Tensor | None = None,
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

    ``curvature`` (with ``init``; NaN where unknown) is each sample's normalised curvature ``beta``
    from a previous search, as :func:`root_search` returns it: the parabola
    ``f0 * (1 - (1 + beta) t + beta t^2)``, ``t = eps / radius``, through ``(0, f0)``, the warm start
    and the radius found (after a warm start; otherwise through the two latest probes). The probe after
    a warm start then solves that model through ``(0, f0)`` and ``(init, f(init))`` instead of drawing
    a line through them: IBP's bounds are concave in eps, so the line overshoots the root, and when
    the curvature changes little between searches the model lands within the tolerance. It only moves
    a probe: every answer is still an eps at which ``fn`` certified.

    The per-sample bookkeeping runs on float64 host arrays (NumPy): a round's few dozen operations on
    ``[B]`` vectors cost microseconds there and a few hundred as tensor operations. ``fn`` gets its
    sample indices and probes as tensors on ``device``.
    """
    if not (rtol > 0 and atol >= 0 and max_passes >= 1):
        raise InvalidInput(f"root_search: need rtol > 0, atol >= 0, max_passes >= 1 (got {rtol}, {atol}, {max_passes})")
    device = torch.device(device)
    n = _batch_size(f0, eps_max, init, n=n)
    if isinstance(eps_max, torch.Tensor) and eps_max.dim() > 0:
        cap = _cast(_as_vector(eps_max, n, 0.0), dtype, up=True)
    else:  # one cap for every sample: round it once
        cap = np.full(n, _cast(_as_vector(eps_max, 1, 0.0), dtype, up=True)[0])
    if bool((cap < 0).any()) or not bool(np.isfinite(cap).all()):
        raise InvalidInput("root_search: eps_max must be finite and >= 0")
    passes = np.zeros(n, dtype=np.int64)

    def evaluate(idx: np.ndarray, p: np.ndarray) -> np.ndarray:
        out = fn(torch.from_numpy(idx).to(device), torch.from_numpy(p).to(device=device, dtype=dtype))
        return _as_vector(out, idx.shape[0], np.nan)

    all_idx = np.arange(n)
    if f0 is None:
        f0 = evaluate(all_idx, np.zeros(n))
        passes += 1
    else:
        f0 = _as_vector(f0, n, 0.0)
    snap_t = None
    if snap is not None:
        grid = torch.as_tensor(snap, dtype=torch.float64).flatten().cpu().numpy()
        snap_t = _cast(grid, dtype, up=True)
        snap_t = np.unique(snap_t[snap_t > 0]) if snap_t.size else None
        if snap_t is not None and snap_t.size == 0:
            snap_t = None

    st = _State.start(f0, cap)
    first_f = np.full(n, np.nan)  # f at each sample's first probe, which is its guess
    done = ~(f0 > 0) | (cap <= 0)
    converged = done.copy()
    active = ~done
    at_max = np.zeros(n, dtype=bool)
    if init is not None:
        guess = _round(_as_vector(init, n, np.nan), dtype)
        guess = np.where(np.isfinite(guess) & (guess > 0) & (guess < cap), guess, cap)
    else:
        guess = cap.copy()
    beta = _as_vector(curvature, n, np.nan)
    beta = np.where(guess < cap, beta, np.nan)  # the model is used after a warm start only

    first_round = True
    with np.errstate(all="ignore"):  # NaN and inf mark undefined estimates; they are handled
        while active.any():
            if deadline is not None and time.monotonic() > deadline:
                break
            idx = all_idx[active]
            p = _round(_next_probe(st, idx, guess, cap, rtol, atol, snap_t, predict, beta), dtype)
            lo_i, hi_i, open_i = st.lo[idx], st.hi[idx], ~st.hi_known[idx]
            inside = (p > lo_i) & ((p < hi_i) | open_i)
            if not inside.all():  # a probe outside the bracket (rounding): the midpoint instead
                p = np.where(inside, p, _round(0.5 * (lo_i + hi_i), dtype))
                inside = (p > lo_i) & ((p < hi_i) | open_i)
            if not inside.all():  # bracket at the resolution of dtype: nothing left to refine
                stuck = idx[~inside]
                converged[stuck] = True
                active[stuck] = False
                idx, p = idx[inside], p[inside]
                if idx.size == 0:
                    continue
            f = evaluate(idx, p)
            passes[idx] += 1
            if first_round:  # every searched sample starts in the first round
                first_f[idx] = f
                first_round = False
            st.update(idx, p, f)

            top = (f > 0) & (p >= cap[idx])
            at_max[idx[top]] = True
            width = st.hi[idx] - st.lo[idx]
            tight = st.hi_known[idx] & ((width <= rtol * st.hi[idx]) | (width <= atol))
            if snap_t is not None:
                tight &= ~np.isfinite(_snap_inside(snap_t, st.lo[idx], st.hi[idx]))
            fin = top | tight
            if predict:  # certified at p and the local secant puts the root within rtol above p
                est = _secant(st.pts[idx, 1], st.fpts[idx, 1], p, f)
                fin |= (f > 0) & (est >= p) & (est <= p + np.maximum(rtol * p, atol))
            converged[idx[fin]] = True
            active[idx[fin]] = False
            active[idx[passes[idx] >= max_passes]] = False

    def back(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device)

    with np.errstate(all="ignore"):
        # After a warm start: through the warm start and the radius, the spacing the next search's
        # warm start will have; otherwise through the two latest points.
        latest = _curvature(st.pts[:, 1:], st.fpts[:, 1:], f0, st.lo)
        wide = _curvature(np.stack([guess, st.lo], axis=1), np.stack([first_f, st.flo], axis=1), f0, st.lo)
        found = np.where((guess < cap) & (guess < st.lo) & np.isfinite(wide), wide, latest)
    found = np.where(at_max | (st.lo <= 0) | ~(f0 > 0), np.nan, found)
    return SearchResult(back(st.lo), back(passes), back(at_max), back(converged), back(found))


@dataclass
class _State:
    """Per-sample search state (all [B] float64 host arrays unless noted)."""

    lo: np.ndarray  # largest eps observed certified so far (0 at start)
    flo: np.ndarray
    hi: np.ndarray  # smallest eps observed not certified (eps_max until evaluated)
    fhi: np.ndarray
    hi_known: np.ndarray  # bool: hi was evaluated
    pts: np.ndarray  # [B, 3] the three latest points, newest last (NaN: none yet)
    fpts: np.ndarray  # [B, 3] their values
    flo_w: np.ndarray  # Anderson-Bjorck weighted end values for regula falsi
    fhi_w: np.ndarray
    last_side: np.ndarray  # int8: +1 lo moved last, -1 hi moved last, 0 none
    w_ref: np.ndarray  # bracket width at the last halving
    stall: np.ndarray  # int64: rounds since the bracket last halved
    rounds: np.ndarray  # int64: probes made

    @classmethod
    def start(cls, f0: np.ndarray, cap: np.ndarray) -> _State:
        n = f0.shape[0]
        nan = np.full(n, np.nan)
        pts = np.stack([nan, nan, np.zeros(n)], axis=1)
        fpts = np.stack([nan, nan, f0], axis=1)
        zeros = np.zeros(n, dtype=np.int64)
        return cls(
            np.zeros(n), f0.copy(), cap.copy(), nan.copy(), np.zeros(n, dtype=bool), pts, fpts, f0.copy(),
            nan.copy(), np.zeros(n, dtype=np.int8), cap.copy(), zeros.copy(), zeros.copy(),
        )

    def update(self, idx: np.ndarray, p: np.ndarray, f: np.ndarray) -> None:
        """Record ``f(p)`` for samples ``idx``: move one bracket end, shift the point history."""
        cert = f > 0  # NaN counts as not certified
        fail = ~cert
        up, dn = idx[cert], idx[fail]
        f_up, f_dn = f[cert], f[fail]
        # Anderson-Bjorck: shrink the stagnant end's weight when the same end moves twice in a row.
        again = up[self.last_side[up] == 1]
        if again.size:
            self.fhi_w[again] *= _ab_factor(f_up[self.last_side[up] == 1], self.flo[again])
        again = dn[self.last_side[dn] == -1]
        if again.size:
            self.flo_w[again] *= _ab_factor(f_dn[self.last_side[dn] == -1], self.fhi[again])
        self.lo[up], self.flo[up], self.flo_w[up] = p[cert], f_up, f_up
        self.hi[dn], self.fhi[dn], self.fhi_w[dn] = p[fail], f_dn, f_dn
        self.hi_known[dn] = True
        self.last_side[up], self.last_side[dn] = 1, -1
        pts, fpts = self.pts[idx], self.fpts[idx]
        pts[:, :2], pts[:, 2] = pts[:, 1:], p
        fpts[:, :2], fpts[:, 2] = fpts[:, 1:], f
        self.pts[idx], self.fpts[idx] = pts, fpts
        # Bisection safeguard: count rounds in which the bracket failed to halve.
        width = self.hi[idx] - self.lo[idx]
        rounds = self.rounds[idx]
        reset = (width <= 0.5 * self.w_ref[idx]) | ~self.hi_known[idx] | (rounds == 0)
        self.w_ref[idx[reset]] = width[reset]
        stall = self.stall[idx] + 1
        stall[reset] = 0
        self.stall[idx] = stall
        self.rounds[idx] = rounds + 1


def _ab_factor(f_new: np.ndarray, f_old: np.ndarray) -> np.ndarray:
    """Anderson-Bjorck weight ``1 - f_new / f_old``, or 1/2 when that is not in (0, 1)."""
    m = 1.0 - f_new / f_old
    return np.where(np.isfinite(m) & (m > 0) & (m < 1), m, 0.5)


def _snap_inside(snap: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Smallest snap point strictly inside (lo, hi) per sample, +inf where none."""
    mask = (snap[None, :] > lo[:, None]) & (snap[None, :] < hi[:, None])
    return np.where(mask, snap[None, :], np.inf).min(axis=1)


def _iqi(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Inverse quadratic interpolation through three points per row (x as a quadratic in f) at f = 0."""
    x0, x1, x2 = x.T
    f0, f1, f2 = f.T
    est = (
        x0 * f1 * f2 / ((f0 - f1) * (f0 - f2))
        + x1 * f0 * f2 / ((f1 - f0) * (f1 - f2))
        + x2 * f0 * f1 / ((f2 - f0) * (f2 - f1))
    )
    return np.where(np.isfinite(est), est, np.nan)


def _curvature(p: np.ndarray, fp: np.ndarray, f0: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Normalised curvature ``c * root^2 / f0`` of the parabola ``f0 + b eps + c eps^2`` through
    ``(0, f0)`` and the two points ``p[:, 0], p[:, 1]`` (values ``fp``); NaN where undefined."""
    q = (fp - f0[:, None]) / p
    c = (q[:, 1] - q[:, 0]) / (p[:, 1] - p[:, 0])
    beta = c * root * root / f0
    return np.where(np.isfinite(beta), beta, np.nan)


def _model_root(p: np.ndarray, fp: np.ndarray, f0: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Root of ``f0 * (1 - (1 + beta) t + beta t^2)``, ``t = eps / root``, through ``(p, fp)``; NaN if none.

    With ``r = fp / f0`` the point gives ``beta s^2 - (1 + beta) s + 1 - r = 0`` for ``s = p / root``;
    the smaller positive root ``s = 2 (1 - r) / ((1 + beta) + sqrt((1 + beta)^2 - 4 beta (1 - r)))``
    is the one on the decreasing branch (the form has no cancellation at ``beta = 0``).
    """
    a = 1.0 + beta
    s = 2.0 * (1.0 - fp / f0) / (a + np.sqrt(a * a - 4.0 * beta * (1.0 - fp / f0)))
    root = p / s
    return np.where(np.isfinite(root) & (s > 0), root, np.nan)


def _next_probe(
    st: _State, idx: np.ndarray, guess: np.ndarray, cap: np.ndarray, rtol: float, atol: float,
    snap: np.ndarray | None, predict: bool, beta: np.ndarray,
) -> np.ndarray:
    """The next eps to evaluate for the active samples ``idx`` (float64): the first guess in round 0,
    then a bracketed step where the upper end was evaluated, else an extrapolation."""
    rounds = st.rounds[idx]
    probe = guess[idx]
    later = rounds > 0
    if not later.any():
        return probe
    known = st.hi_known[idx]
    for rows, step in ((later & known, _bracketed_probe), (later & ~known, _extrapolated_probe)):
        if rows.any():
            probe[rows] = step(st, idx[rows], cap, rtol, atol, snap, predict, beta)
    return probe


def _line_estimate(st: _State, idx: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Root of the secant through the two latest points; in round 1 after a warm start, of the
    curvature model through ``(0, f0)`` and the warm start instead (where it is defined)."""
    pts, fpts = st.pts[idx], st.fpts[idx]
    sec = _secant(pts[:, 1], fpts[:, 1], pts[:, 2], fpts[:, 2])
    model = _model_root(pts[:, 2], fpts[:, 2], fpts[:, 1], beta[idx])
    return np.where((st.rounds[idx] == 1) & np.isfinite(model), model, sec)


def _bracketed_probe(
    st: _State, idx: np.ndarray, cap: np.ndarray, rtol: float, atol: float, snap: np.ndarray | None,
    predict: bool, beta: np.ndarray,
) -> np.ndarray:
    """Inverse quadratic, else secant, else regula falsi, else bisection inside ``[lo, hi]`` (an
    estimate at an end of the bracket is kept: the clamp moves it a min step inside)."""
    lo, hi = st.lo[idx], st.hi[idx]
    sec = _line_estimate(st, idx, beta)
    d_lo = MIN_STEP * np.maximum(rtol * lo, atol)
    d_hi = MIN_STEP * np.maximum(rtol * hi, atol)

    def ok(v: np.ndarray) -> np.ndarray:
        return np.isfinite(v) & (v >= lo) & (v <= hi)

    mid = np.where((lo > 0) & (hi > 4 * lo), np.sqrt(lo * hi), 0.5 * (lo + hi))  # geometric when far apart
    flo_w = st.flo_w[idx]
    rf = lo + flo_w * (hi - lo) / (flo_w - st.fhi_w[idx])
    est = np.where(ok(rf), rf, mid)
    est = np.where(ok(sec), sec, est)
    if USE_IQI:
        iqi = _iqi(st.pts[idx], st.fpts[idx])
        est = np.where(ok(iqi), iqi, est)
    if predict:  # aim just below the estimated root, so that the probe certifies and can stop the sample
        est = est - PREDICT_AIM * np.maximum(rtol * est, atol)
    est = np.where(st.stall[idx] >= STALL_ROUNDS, mid, est)
    roomy = lo + d_lo < hi - d_hi
    probe = np.where(roomy, np.minimum(np.maximum(est, lo + d_lo), hi - d_hi), mid)
    if snap is not None:  # tight bracket with a grid point inside: probe that point
        s = _snap_inside(snap, lo, hi)
        width = hi - lo
        tight = (width <= rtol * hi) | (width <= atol)
        probe = np.where(tight & np.isfinite(s), s, probe)
    return probe


def _extrapolated_probe(
    st: _State, idx: np.ndarray, cap: np.ndarray, rtol: float, atol: float, snap: np.ndarray | None,
    predict: bool, beta: np.ndarray,
) -> np.ndarray:
    """Upper end not evaluated yet (a certified warm start): extrapolate, then try the cap.

    A root estimate within a min step above lo gets that step (it closes the bracket unless it
    certifies); no estimate, or one below lo (f not decreasing), doubles lo.
    """
    lo = st.lo[idx]
    sec = _line_estimate(st, idx, beta)
    if predict:
        sec = sec - PREDICT_AIM * np.maximum(rtol * sec, atol)
    d_lo = MIN_STEP * np.maximum(rtol * lo, atol)
    up = np.where(np.isfinite(sec) & (sec >= lo), np.maximum(sec, lo + d_lo), 2.0 * lo)
    cap_i = cap[idx]
    return np.where(st.rounds[idx] > EXTRAPOLATIONS, cap_i, np.minimum(up, cap_i))


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
    curvature: torch.Tensor | None = None,
) -> RadiusResult:
    """Per-sample certified radius of ``model`` at ``(x, y)`` with verifier ``method``, capped at ``eps_max``.

    Misclassified samples (clean margin <= 0; pass ``logits`` to skip the clean forward) get radius 0
    and 0 passes. Works in eval mode and in train mode with the clean batch's ``bn_stats`` (then pass
    ``logits`` too, or the clean forward runs here via ``clean_forward``). Runs without gradients.
    Radii come back in ``x.dtype`` and are exact eps values at which the verifier certified.
    ``predict`` and ``curvature`` as in :func:`root_search` (training radii).
    """
    from actbench.bounds import build_network, clean_forward, prepared, subset_bounds
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
            return bound(idx, eps).lower.min(dim=1).values

        with prepared(model):  # the model is fixed during the search: prepare its layers once
            if method != "alpha-crown":
                bound = subset_bounds(model, x, y, method, lo, hi, bn_stats)
            res = root_search(
                fn, eps_max if isinstance(eps_max, torch.Tensor) else float(eps_max), rtol=rtol, atol=atol,
                max_passes=max_passes, init=init, f0=f0, snap=snap, dtype=x.dtype, device=x.device,
                deadline=deadline, predict=predict, curvature=curvature,
            )
    return RadiusResult(res.radius.to(x.dtype), res.passes, res.certified_at_max, res.converged, res.curvature)


def clean_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{t != y} z_t`` per sample (> 0 iff correctly classified without ties)."""
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return z_y - others.max(dim=1).values
