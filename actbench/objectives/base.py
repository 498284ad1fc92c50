"""The objective interface, its step context, hyper-parameter declarations and the name registry.

An objective is a small class registered by name (``@register_objective("ibp")``). The trainer calls
``loss(model, x, y, ctx)`` once per training step and back-propagates the returned scalar; the stats
dict feeds ``history.csv``. Objectives declare their hyper-parameters in ``PARAMS`` so a method spec
(TOML) is validated before any training starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from actbench.errors import InvalidConfig, UnknownName
from actbench.objectives.cost import PropagationCounter

Stats = dict[str, float]


@dataclass(frozen=True)
class Param:
    """A declared hyper-parameter: its type, default, allowed range and a one-line meaning."""

    kind: type
    default: Any
    doc: str
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # human form of ``check`` for error messages, e.g. "in [0, 1]"

    def validate(self, name: str, value: Any, where: str) -> Any:
        """Return ``value`` coerced to the declared type, or raise :class:`InvalidConfig`."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise InvalidConfig(
                f"{where}: parameter {name!r} must be {self.kind.__name__}, got {type(value).__name__} {value!r}"
            )
        if self.kind is float and not math.isfinite(value):
            raise InvalidConfig(f"{where}: parameter {name!r} must be finite, got {value!r}")
        if self.check is not None and not self.check(value):
            raise InvalidConfig(f"{where}: parameter {name!r} = {value!r} must be {self.rule}")
        return value


def unit_interval(doc: str, default: float) -> Param:
    """A weight in [0, 1] (κ, α)."""
    return Param(float, default, doc, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")


def positive(kind: type, doc: str, default: Any) -> Param:
    return Param(kind, default, doc, lambda v: v > 0, "> 0")


COMMON_PARAMS: dict[str, Param] = {
    "ibp_init": Param(bool, False, "redraw weights with the IBP initialisation of Shi et al. 2021"),
    "shi_reg": Param(bool, False, "add the Shi et al. tightness and ReLU-balance regularisers in the ramp"),
}


@dataclass
class StepContext:
    """Everything an objective may need about the current step, plus the propagation counter.

    ``eps_t`` is the scheduled eps of this step (ACERT's cap ε̄), ``eps`` the track's target.
    ``reg_weight`` is ``1 - eps_t/eps`` while ``reg_phase`` (epochs < warmup + ramp), else 0; the
    track's regulariser weights ``w_tight``/``w_relu`` multiply the two Shi terms.
    """

    eps_t: float
    eps: float
    epoch: int
    step: int
    reg_phase: bool
    reg_weight: float
    indices: torch.Tensor
    counter: PropagationCounter
    num_classes: int
    w_tight: float = 0.5
    w_relu: float = 0.5
    lo: float = 0.0
    hi: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


class Objective:
    """Base class of training objectives. Subclasses set ``PARAMS`` and implement :meth:`loss`."""

    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Param]] = {}

    def __init__(self, params: dict[str, Any], num_classes: int):
        self.params = dict(params)
        self.num_classes = num_classes

    @property
    def ibp_init(self) -> bool:
        """Whether the trainer should apply the IBP initialisation before training."""
        return bool(self.params.get("ibp_init", False))

    @property
    def shi_reg(self) -> bool:
        return bool(self.params.get("shi_reg", False))

    def setup(self, train_size: int, device: torch.device | str) -> None:
        """Called once before training (fresh or resumed) with the size of the training split."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, Stats]:
        """Return the scalar training loss (mean over the batch) and per-batch stats."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Objective state to checkpoint (e.g. ACERT's per-sample radius cache)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


_OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: register an objective under ``name`` (the ``objective`` field of a method spec)."""

    def wrap(cls: type[Objective]) -> type[Objective]:
        if name in _OBJECTIVES and _OBJECTIVES[name] is not cls:
            raise ValueError(f"objective {name!r} registered twice")
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls

    return wrap


def objective_class(name: str) -> type[Objective]:
    if name not in _OBJECTIVES:
        raise UnknownName("objective", name, list(_OBJECTIVES))
    return _OBJECTIVES[name]


def list_objectives() -> list[str]:
    return sorted(_OBJECTIVES)


def declared_params(cls: type[Objective]) -> dict[str, Param]:
    """All parameters an objective accepts: the common ones, then its own."""
    return {**COMMON_PARAMS, **cls.PARAMS}
