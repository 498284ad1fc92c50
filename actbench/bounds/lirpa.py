"""Optional auto_LiRPA backend with the same call signature as :func:`actbench.bounds.margin_bounds`.

Used only when the user has installed auto_LiRPA themselves (it is imported lazily, here and nowhere
else). It serves as an independent cross-check of the native engine and as the reference of
``benchmarks/bounds.py``. The box and the specification matrix are built exactly as in the native
engine; BatchNorm follows auto_LiRPA's own rules (running statistics in eval mode), so explicit
``bn_stats`` are refused.

auto_LiRPA traces a *copy* of the model in which Dropout is removed (actbench's engine treats it as
the identity too; auto_LiRPA would otherwise trace in train mode) and ``Normalize`` keeps its
constants as ``[1, C, 1, 1]`` tensors: its default "patches" convolution mode, which CROWN and
CROWN-IBP use, needs 4-D constants (``[C, 1, 1]`` ones crash it).
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from typing import Any

import torch
from torch import nn

from actbench.bounds.api import METHODS, BoundResult, _check_eps, _check_labels, _check_method, spec_matrix
from actbench.bounds.batchnorm import BNStats
from actbench.bounds.network import build_network, infer_shapes
from actbench.errors import InvalidConfig, InvalidInput
from actbench.models import Normalize

_LIRPA_METHOD = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN"}
assert set(_LIRPA_METHOD) == set(METHODS)


def available() -> bool:
    """True when auto_LiRPA can be imported."""
    return importlib.util.find_spec("auto_LiRPA") is not None


class _Normalize4d(nn.Module):
    """``(x - mean) / std`` with ``[1, C, 1, 1]`` constants (what auto_LiRPA's patches mode expects)."""

    def __init__(self, module: Normalize):
        super().__init__()
        self.register_buffer("mean", module.mean.detach().reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", module.std.detach().reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _traceable(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with Dropout removed and Normalize in 4-D form (same function in eval mode)."""
    if isinstance(module, nn.Dropout):
        return nn.Identity()
    if isinstance(module, Normalize):
        return _Normalize4d(module)
    for name, child in module.named_children():
        setattr(module, name, _traceable(child))
    return module


def bounded_module(model: nn.Module, x: torch.Tensor, conv_mode: str = "patches") -> Any:
    """An auto_LiRPA ``BoundedModule`` of a traceable copy of ``model`` for inputs shaped like ``x``.

    Build it once and pass it to :func:`margin_bounds` as ``bounded`` to time repeated calls; it
    reflects the model as it was when built.
    """
    if not available():
        raise InvalidConfig("the lirpa backend needs auto_LiRPA; install it from its git repository "
                            "(the PyPI release does not support torch 2.x) or use actbench.bounds")
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise InvalidInput("x must be a tensor of shape [B, ...]")
    from auto_LiRPA import BoundedModule

    twin = _traceable(copy.deepcopy(model))
    return BoundedModule(twin, torch.zeros_like(x[:2] if x.shape[0] > 1 else x), device=x.device,
                         bound_opts={"conv_mode": conv_mode, "verbosity": 0})


def margin_bounds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor,
                  method: str = "ibp", lo: float = 0.0, hi: float = 1.0,
                  bn_stats: BNStats | None = None, *, bounded: Any = None) -> BoundResult:
    """Margin lower bounds computed by auto_LiRPA (``relu_bounds`` is left empty)."""
    _check_method(method)
    if bn_stats is not None:
        raise InvalidInput("the lirpa backend computes BatchNorm statistics itself; pass bn_stats=None")
    if bounded is None:
        bounded = bounded_module(model, x)
    from auto_LiRPA import BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm

    e = _check_eps(eps, x)
    xl, xu = (x - e).clamp(min=lo), (x + e).clamp(max=hi)
    num_classes = infer_shapes(build_network(model), tuple(x.shape[1:]))[-1][0]
    _check_labels(y, x.shape[0], num_classes)
    ptb = PerturbationLpNorm(norm=float("inf"), x_L=xl, x_U=xu)
    spec = spec_matrix(y, num_classes, x.dtype)
    with warnings.catch_warnings():  # the [1, C, 1, 1] constants are intended (see the module doc)
        warnings.filterwarnings("ignore", message="Constant operand of node")
        lower, _ = bounded.compute_bounds(x=(BoundedTensor(x, ptb),), C=spec, method=_LIRPA_METHOD[method],
                                          bound_upper=False)
    return BoundResult(lower, [], (xl, xu), method)
