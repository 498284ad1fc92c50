"""Public entry points of the bound engine: margin bounds over an eps-box or an arbitrary box.

All checks on user input happen here, before any computation, so the domains can assume well-formed
tensors. The box is ``[max(x - eps, lo), min(x + eps, hi)]`` in raw pixel space; models normalise
inside their first layer, and ``input_box`` reports the box after that layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from actbench.bounds import batchnorm, cache, ibp, layout
from actbench.bounds.network import Layer, Network, NormalizeLayer, build_network, infer_shapes, materialize
from actbench.device import no_tf32
from actbench.errors import InvalidInput, UnknownName

METHODS = ("ibp", "crown-ibp", "crown")
DEFAULT_CROWN_MAX_MEMORY = 4 * 2**30
SIZES_PER_OCTAVE = 8  # bucket_size: batch sizes per power-of-two octave above 16

Interval = tuple[torch.Tensor, torch.Tensor]
SubsetBound = Callable[[torch.Tensor, torch.Tensor], "BoundResult"]


@dataclass
class BoundResult:
    """Lower bounds of the margins ``z_y - z_t`` (``t != y``, increasing ``t``), shape ``[B, K-1]``.

    ``relu_bounds``: pre-activation ``(l, u)`` of every ReLU in forward order (IBP's for ``ibp`` and
    ``crown-ibp``, formed when first read: ``ibp.Intervals``; CROWN's, intersected with IBP's, for
    ``crown``). ``input_box``: the box after the
    leading Normalize layer (the raw box when the model has none). ``ibp_lower``: the IBP margin bound,
    also filled by the CROWN methods (it costs nothing extra there).
    """

    lower: torch.Tensor
    relu_bounds: Sequence[Interval]
    input_box: Interval
    method: str
    ibp_lower: torch.Tensor | None = field(default=None)

    @property
    def certified(self) -> torch.Tensor:
        """Per-sample bool: every margin lower bound is strictly positive."""
        return (self.lower > 0).all(dim=1)


@dataclass
class _Prepared:
    layers: list[Layer]
    xl: torch.Tensor
    xu: torch.Tensor
    normalize_first: bool
    num_classes: int
    shapes: list[tuple[int, ...]]
    bn_stats: object = None  # kept alive by cached entries (their key holds its id)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise UnknownName("bound method", method, METHODS)


def _check_batch(t: object, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise InvalidInput(f"{what} must be a floating-point torch.Tensor, got {type(t).__name__}")
    if t.dim() < 2 or t.shape[0] < 1:
        raise InvalidInput(f"{what} must have shape [B, ...] with B >= 1, got {tuple(t.shape)}")
    return t


def _check_labels(y: object, batch: int, num_classes: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InvalidInput(f"y must be an integer label tensor of shape [{batch}], got {type(y).__name__}"
                           + (f" of dtype {y.dtype}" if isinstance(y, torch.Tensor) else ""))
    if tuple(y.shape) != (batch,):
        raise InvalidInput(f"y must have shape [{batch}] (one label per sample), got {tuple(y.shape)}")
    if batch and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise InvalidInput(f"labels must lie in [0, {num_classes - 1}], got range "
                           f"[{int(y.min())}, {int(y.max())}]")
    return y


def _check_eps(eps: object, x: torch.Tensor) -> torch.Tensor:
    batch = x.shape[0]
    if isinstance(eps, torch.Tensor):
        if eps.dim() == 0:
            eps = eps.reshape(1).expand(batch)
        if eps.dim() != 1 or eps.shape[0] != batch:
            raise InvalidInput(f"eps must be a float or a tensor of shape [{batch}], got shape {tuple(eps.shape)}")
        e = eps.detach().to(device=x.device, dtype=x.dtype)
    elif isinstance(eps, int | float) and not isinstance(eps, bool):
        e = torch.full((batch,), float(eps), device=x.device, dtype=x.dtype)
    else:
        raise InvalidInput(f"eps must be a float or a tensor of shape [{batch}], got {type(eps).__name__}")
    if not bool(torch.isfinite(e).all()) or bool((e < 0).any()):
        raise InvalidInput(f"eps must be finite and >= 0, got min {float(e.min()):g}")
    return e.view(batch, *([1] * (x.dim() - 1)))


def _model_dtype(modules: list[nn.Module], x: torch.Tensor) -> torch.dtype:
    for m in modules:
        for t in (*m._parameters.values(), *m._buffers.values()):
            if t is not None and t.is_floating_point():
                return torch.promote_types(t.dtype, x.dtype)
    return x.dtype


def _needs_batch_stats(modules: list[nn.Module]) -> bool:
    return any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and (m.training or m.running_mean is None)
               for m in modules)


def _prepare(model: nn.Module, xl: torch.Tensor, xu: torch.Tensor, clean: torch.Tensor,
             bn_stats: batchnorm.BNStats | None) -> _Prepared:
    """Concrete layers for ``model`` in the box's dtype; reused only inside ``cache.prepared(model)``."""
    scope = cache.scope_of(model)
    modules = scope.modules if scope is not None else list(model.modules())
    dtype = _model_dtype(modules, xl)
    xl, xu = xl.to(dtype), xu.to(dtype)
    batch_stats_needed = _needs_batch_stats(modules)
    key = None
    params = (p for m in modules for p in m._parameters.values() if p is not None)
    if scope is not None and not (batch_stats_needed and bn_stats is None) and not cache.records_grad(params, bn_stats):
        key = (dtype, xl.device, tuple(xl.shape[1:]), scope.check(), id(bn_stats) if batch_stats_needed else None)
        entry = scope.entries.get(key)
        if entry is not None:
            return dataclasses.replace(entry, xl=xl, xu=xu)
    net: Network = build_network(model)
    shapes = infer_shapes(net, tuple(xl.shape[1:]))
    if len(shapes[-1]) != 1 or shapes[-1][0] < 2:
        raise InvalidInput(f"the model must output [B, K] logits with K >= 2, got per-sample shape {shapes[-1]}")
    normalize_first = bool(net.layers) and isinstance(net.layers[0], NormalizeLayer)
    if bn_stats is None and batch_stats_needed:
        bn_stats = batchnorm.batch_stats(net, clean.to(dtype))
    layers = materialize(net, shapes, batchnorm.affine_provider(bn_stats), dtype, xl.device, xl.shape[0])
    layers = layout.fast_layers(layers)
    layer_shapes = infer_shapes(Network(layers), tuple(xl.shape[1:]))  # also records conv input shapes
    prep = _Prepared(layers, xl, xu, normalize_first, shapes[-1][0], layer_shapes)
    if key is not None:  # the entry keeps bn_stats alive, so its id stays unique while cached
        scope.entries[key] = dataclasses.replace(prep, xl=None, xu=None, bn_stats=bn_stats)
    return prep


_EYES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def spec_matrix(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows ``e_y - e_t`` for ``t != y`` in increasing order: shape ``[B, K-1, K]``."""
    key = (num_classes, dtype, y.device)
    if key not in _EYES:  # a few small constants per class count, dtype and device
        _EYES[key] = (torch.eye(num_classes, dtype=dtype, device=y.device),
                      torch.arange(num_classes - 1, device=y.device))
    eye, steps = _EYES[key]
    others = steps.unsqueeze(0) + (steps.unsqueeze(0) >= y.unsqueeze(1)).long()
    return eye[y].unsqueeze(1) - eye[others]


def bucket_size(n: int) -> int:
    """The batch size a bound pass runs at: ``n`` up to 16, else ``n`` rounded up to an eighth of its
    power-of-two octave (18, 20, ..., 32, 36, ..., 64, 72, ..., 120, 128, 144, ...).

    Subsets of every size (a radius search's shrinking active set, ACERT's samples with radius > 0)
    would otherwise make oneDNN create new convolution primitives for each size, about 1 ms apiece
    on the CPU track's model, more than a small pass itself costs. Eight sizes per octave keep the
    padding below 12.5 % (4 % on average) and the primitive cache small (64 sizes up to 1024); four
    per octave padded ACERT's early-ramp search rounds by 10 % and cost 1 % of its step.
    """
    if n <= 2 * SIZES_PER_OCTAVE:
        return n
    step = (1 << ((n - 1).bit_length() - 1)) // SIZES_PER_OCTAVE  # width of the octave (2^(k-1), 2^k] / sizes
    return -(-n // step) * step


def _pad(t: torch.Tensor, size: int) -> torch.Tensor:
    """``t`` with its last sample repeated up to ``size`` samples."""
    extra = size - t.shape[0]
    return t if extra <= 0 else torch.cat([t, t[-1:].expand(extra, *t.shape[1:])])


def _head(result: BoundResult, n: int) -> BoundResult:
    """The first ``n`` samples of a bound result (undoes ``_pad``)."""
    if result.lower.shape[0] == n:
        return result
    relu_bounds = (result.relu_bounds.head(n) if isinstance(result.relu_bounds, ibp.Intervals)
                   else [(lower[:n], upper[:n]) for lower, upper in result.relu_bounds])  # fmt: skip
    return BoundResult(result.lower[:n], relu_bounds, tuple(t[:n] for t in result.input_box), result.method,
                       None if result.ibp_lower is None else result.ibp_lower[:n])  # fmt: skip


def _bounds(prep: _Prepared, y: torch.Tensor, method: str, crown_max_memory: float) -> BoundResult:
    n = y.shape[0]
    size = bucket_size(n)
    if size != n:
        padded = dataclasses.replace(prep, xl=_pad(prep.xl, size), xu=_pad(prep.xu, size))
        return _head(_bounds_of(padded, _pad(y, size), method, crown_max_memory), n)
    return _bounds_of(prep, y, method, crown_max_memory)


def _bounds_of(prep: _Prepared, y: torch.Tensor, method: str, crown_max_memory: float) -> BoundResult:
    spec = spec_matrix(y, prep.num_classes, prep.xl.dtype)
    state = ibp.ibp_to_tail(prep.layers, prep.xl, prep.xu, prep.normalize_first)
    ibp_lower = ibp.elided_lower(prep.layers, state, spec)
    if method == "ibp":
        return BoundResult(ibp_lower, state.relu_bounds, state.input_box, method)
    from actbench.bounds import crown

    if method == "crown-ibp":
        lower = crown.backward_lower(prep.layers, spec, state.relu_bounds, prep.xl, prep.xu)
        return BoundResult(lower, state.relu_bounds, state.input_box, method, ibp_lower)
    lower, relu_bounds = crown.crown_lower(prep.layers, spec, state.relu_bounds, prep.xl, prep.xu,
                                           prep.shapes, crown_max_memory)
    return BoundResult(lower, relu_bounds, state.input_box, method, ibp_lower)


@no_tf32  # TF32 convolutions would change the bounds (actbench.device)
def margin_bounds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor,
                  method: str = "ibp", lo: float = 0.0, hi: float = 1.0,
                  bn_stats: batchnorm.BNStats | None = None, *,
                  crown_max_memory: float = DEFAULT_CROWN_MAX_MEMORY) -> BoundResult:
    """Lower bounds of ``z_y - z_t`` over the box ``[max(x - eps, lo), min(x + eps, hi)]``.

    ``eps`` is a float or a per-sample tensor ``[B]``. BatchNorm layers in train mode use ``bn_stats``
    (from :func:`clean_forward`) or, when it is None, the statistics of the clean batch ``x``.
    ``crown_max_memory`` (bytes) bounds the A matrices of full CROWN (``ResourceLimit`` beyond it).
    """
    _check_method(method)
    x = _check_batch(x, "x")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InvalidInput(f"need finite lo < hi, got lo={lo}, hi={hi}")
    e = _check_eps(eps, x)
    xl, xu = (x - e).clamp(min=lo), (x + e).clamp(max=hi)
    if bool((xl > xu).any()):
        raise InvalidInput(f"x lies outside [lo, hi] = [{lo}, {hi}] by more than eps; the box is empty")
    prep = _prepare(model, xl, xu, x.detach(), bn_stats)
    _check_labels(y, x.shape[0], prep.num_classes)
    return _bounds(prep, y, method, crown_max_memory)


def subset_bounds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str = "ibp", lo: float = 0.0,
                  hi: float = 1.0, bn_stats: batchnorm.BNStats | None = None, *,
                  crown_max_memory: float = DEFAULT_CROWN_MAX_MEMORY) -> SubsetBound:
    """``bound(idx, eps)``: :func:`margin_bounds` of the samples ``x[idx]`` at radii ``eps`` (``[len(idx)]``).

    For a search that evaluates subsets of one batch many times (``certify.radius``): the batch, the
    labels and ``[lo, hi]`` are checked and the model prepared (with the whole batch's statistics in
    train mode) once, so a call costs only its bound pass. The model must not change while ``bound``
    is used. ``eps`` must be finite and >= 0 (not checked per call). When some ``x`` lies outside
    ``[lo, hi]`` every call goes through :func:`margin_bounds`, which refuses the empty boxes.
    """
    _check_method(method)
    x = _check_batch(x, "x")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InvalidInput(f"need finite lo < hi, got lo={lo}, hi={hi}")
    smallest, largest = torch.aminmax(x.detach())  # one pass over the batch (two comparisons cost 9x more)
    if float(smallest) < lo or float(largest) > hi:
        def checked(idx: torch.Tensor, eps: torch.Tensor) -> BoundResult:
            return margin_bounds(model, x[idx], y[idx], eps, method, lo, hi, bn_stats,
                                 crown_max_memory=crown_max_memory)  # fmt: skip

        return checked
    x = x.detach()
    prep = _prepare(model, x, x, x, bn_stats)
    _check_labels(y, x.shape[0], prep.num_classes)
    shape = (-1, *([1] * (x.dim() - 1)))

    @no_tf32
    def bound(idx: torch.Tensor, eps: torch.Tensor) -> BoundResult:
        n = idx.shape[0]
        e = eps.to(device=x.device, dtype=prep.xl.dtype)
        size = bucket_size(n)
        if size != n:  # pad by repeating the last sample (cheaper than padding the boxes)
            idx, e = _pad(idx, size), _pad(e, size)
        xs, e = x[idx], e.view(shape)
        box = dataclasses.replace(prep, xl=(xs - e).clamp_(min=lo), xu=(xs + e).clamp_(max=hi))
        return _head(_bounds_of(box, y[idx], method, crown_max_memory), n)

    return bound


@no_tf32  # TF32 convolutions would change the bounds (actbench.device)
def box_margin_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor,
                      method: str = "ibp", bn_stats: batchnorm.BNStats | None = None, *,
                      crown_max_memory: float = DEFAULT_CROWN_MAX_MEMORY) -> BoundResult:
    """Lower bounds of ``z_y - z_t`` over an arbitrary input box ``[lower, upper]`` (raw pixel space).

    In train mode without ``bn_stats`` the BatchNorm statistics come from the box centres.
    """
    _check_method(method)
    lower, upper = _check_batch(lower, "lower"), _check_batch(upper, "upper")
    if lower.shape != upper.shape:
        raise InvalidInput(f"lower and upper must have the same shape, got {tuple(lower.shape)} "
                           f"and {tuple(upper.shape)}")
    if not bool(torch.isfinite(lower).all() and torch.isfinite(upper).all()) or bool((lower > upper).any()):
        raise InvalidInput("the box must be finite with lower <= upper everywhere")
    prep = _prepare(model, lower, upper, (lower + upper) * 0.5, bn_stats)
    _check_labels(y, lower.shape[0], prep.num_classes)
    return _bounds(prep, y, method, crown_max_memory)


@no_tf32  # TF32 convolutions would change the bounds (actbench.device)
def logit_bounds(model: nn.Module, x: torch.Tensor, eps: float | torch.Tensor, lo: float = 0.0, hi: float = 1.0,
                 bn_stats: batchnorm.BNStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """IBP lower and upper bounds of the logits over the eps-box, each ``[B, K]``."""
    x = _check_batch(x, "x")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InvalidInput(f"need finite lo < hi, got lo={lo}, hi={hi}")
    e = _check_eps(eps, x)
    xl, xu = (x - e).clamp(min=lo), (x + e).clamp(max=hi)
    if bool((xl > xu).any()):
        raise InvalidInput(f"x lies outside [lo, hi] = [{lo}, {hi}] by more than eps; the box is empty")
    prep = _prepare(model, xl, xu, x.detach(), bn_stats)
    state = ibp.ibp_to_tail(prep.layers, prep.xl, prep.xu, prep.normalize_first)
    return ibp.ibp_output(prep.layers, state)
