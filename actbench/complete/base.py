"""What every complete verifier shares: the task it is given, the verdict it returns, the registry,
and the float64 check that turns a candidate point into a counterexample.

A verifier is a function ``Task -> Verdict`` registered by name (``@register("bab")``); ``verify_box``,
``actbench certify`` and ``actbench verify`` look it up and know nothing of its internals.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from actbench.complete.problem import LayerNet, Spec
from actbench.errors import UnknownName

STATUSES = ("verified", "falsified", "unknown")
CLOCKS = {"wall": time.monotonic, "process": time.process_time}
_clock = [time.monotonic]


def now() -> float:
    """The clock every time limit of the complete verifiers reads (``use_clock`` switches it)."""
    return _clock[0]()


@contextlib.contextmanager
def use_clock(name: str) -> Iterator[None]:
    """Time limits in ``wall`` seconds (default, as in VNN-COMP) or this process's CPU seconds
    (``process``: on a shared machine, a budget that does not shrink when other jobs take the cores)."""
    if name not in CLOCKS:
        raise UnknownName("clock", name, list(CLOCKS))
    saved = _clock[0]
    _clock[0] = CLOCKS[name]
    try:
        yield
    finally:
        _clock[0] = saved


@dataclass
class Verdict:
    """The answer for one box and specification.

    ``status``: ``verified`` (every row > 0 on the whole box, proven), ``falsified`` (``counterexample``
    is a point of the box where some row is <= 0 by the model's float64 forward pass) or ``unknown``
    (time limit, or the verifier is incomplete). ``lower_bound``: the smallest proven lower bound of
    the rows (the bound at the root for an unfinished search); ``value``: the smallest row value at
    the counterexample. ``reason`` says how the answer was reached.
    """

    status: str
    verifier: str
    seconds: float
    counterexample: torch.Tensor | None = None
    lower_bound: float | None = None
    value: float | None = None
    reason: str = ""
    domains: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"verdict status {self.status!r} is not one of {STATUSES}")
        if self.status == "falsified" and self.counterexample is None:
            raise ValueError("a falsified verdict needs its counterexample")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the counterexample itself is left out)."""
        return {"status": self.status, "verifier": self.verifier, "seconds": round(self.seconds, 4),
                "lower_bound": self.lower_bound, "value": self.value, "reason": self.reason,
                "domains": self.domains}


@dataclass
class Task:
    """One verification problem: compiled network, the box ``[xl, xu]`` (``[1, *in]``, raw input
    space), the specification (one sample), the verifier's options and the deadline."""

    net: LayerNet
    xl: torch.Tensor
    xu: torch.Tensor
    spec: Spec
    options: dict[str, Any]
    start: float
    deadline: float | None

    def timed_out(self) -> bool:
        return self.deadline is not None and now() > self.deadline

    def elapsed(self) -> float:
        return now() - self.start


VerifierFn = Callable[[Task], Verdict]
_REGISTRY: dict[str, VerifierFn] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str) -> Callable[[VerifierFn], VerifierFn]:
    """Register a box verifier under ``name``."""

    def wrap(fn: VerifierFn) -> VerifierFn:
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description
        return fn

    return wrap


def get_verifier(name: str) -> VerifierFn:
    from actbench.complete import alpha_crown, bab, milp  # noqa: F401  (registers them)

    if name not in _REGISTRY:
        raise UnknownName("complete verifier", name, list(_REGISTRY))
    return _REGISTRY[name]


def list_verifiers() -> dict[str, str]:
    from actbench.complete import alpha_crown, bab, milp  # noqa: F401  (registers them)

    return dict(sorted(_DESCRIPTIONS.items()))


def spec_values(net: LayerNet, x: torch.Tensor, spec: Spec) -> torch.Tensor:
    """Row values ``[N, S]`` of the model's float64 forward pass at points ``x`` ``[N, *in]`` (spec of one sample)."""
    logits = net.logits(x)
    return logits.to(spec.C.dtype) @ spec.C[0].T + spec.d[0]


def find_counterexample(net: LayerNet, points: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor,
                        spec: Spec) -> tuple[torch.Tensor, float] | None:
    """The first of ``points`` (clamped into the box) where some row is <= 0 in float64, as ``[1, *in]``,
    with that value."""
    if points.numel() == 0:
        return None
    x = torch.maximum(torch.minimum(points.to(net.dtype), xu), xl)
    worst = spec_values(net, x, spec).min(dim=1).values
    bad = (worst <= 0).nonzero()
    if bad.numel() == 0:
        return None
    i = int(bad[0, 0])
    return x[i:i + 1].detach().clone(), float(worst[i])
