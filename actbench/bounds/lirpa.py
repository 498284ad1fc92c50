"""Optional auto_LiRPA backend with the same call signature as :func:`actbench.bounds.margin_bounds`.

Used only when the user has installed auto_LiRPA themselves (it is imported lazily, here and nowhere
else). It serves as an independent cross-check of the native engine. The box and the specification
matrix are built exactly as in the native engine; BatchNorm follows auto_LiRPA's own rules (running
statistics in eval mode), so explicit ``bn_stats`` are refused.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from actbench.bounds.api import METHODS, BoundResult, _check_eps, _check_labels, _check_method, spec_matrix
from actbench.bounds.batchnorm import BNStats
from actbench.errors import InvalidConfig, InvalidInput

_LIRPA_METHOD = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN"}
assert set(_LIRPA_METHOD) == set(METHODS)


def available() -> bool:
    """True when auto_LiRPA can be imported."""
    return importlib.util.find_spec("auto_LiRPA") is not None


def margin_bounds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor,
                  method: str = "ibp", lo: float = 0.0, hi: float = 1.0,
                  bn_stats: BNStats | None = None) -> BoundResult:
    """Margin lower bounds computed by auto_LiRPA (``relu_bounds`` is left empty)."""
    _check_method(method)
    if not available():
        raise InvalidConfig("the lirpa backend needs auto_LiRPA; install it from its git repository "
                            "(the PyPI release does not support torch 2.x) or use actbench.bounds")
    if bn_stats is not None:
        raise InvalidInput("the lirpa backend computes BatchNorm statistics itself; pass bn_stats=None")
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm

    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise InvalidInput("x must be a tensor of shape [B, ...]")
    e = _check_eps(eps, x)
    xl, xu = (x - e).clamp(min=lo), (x + e).clamp(max=hi)
    num_classes = model(x[:1]).shape[-1]
    _check_labels(y, x.shape[0], num_classes)
    bounded = BoundedModule(model, torch.empty_like(x[:1]), device=x.device)
    ptb = PerturbationLpNorm(norm=float("inf"), x_L=xl, x_U=xu)
    spec = spec_matrix(y, num_classes, x.dtype)
    lower, _ = bounded.compute_bounds(x=(BoundedTensor(x, ptb),), C=spec, method=_LIRPA_METHOD[method],
                                      bound_upper=False)
    return BoundResult(lower, [], (xl, xu), method)
