"""Complete verification: α-CROWN, β-CROWN branch and bound and an exact MILP, on CPU.

Public API::

    verify_box(model, lower, upper, label=None, verifier="bab", timeout=None, spec=None, offset=None,
               options=None) -> Verdict(status in {"verified", "falsified", "unknown"}, counterexample,
                                        seconds, lower_bound, value, reason, domains)
    list_verifiers() -> {name: description}        # "alpha-crown", "bab", "milp"

``lower``/``upper`` is the input box (one sample, ``[1, *in]``, raw input space). The
property is local robustness of ``label`` (every margin ``z_label - z_t > 0``), or, with ``spec``
(``[S, K]``) and ``offset`` (``[S]``), ``spec · z + offset > 0`` for every row. ``verified`` is a proof
over the whole box; ``falsified`` comes with a counterexample inside the box that the model's float64
forward pass confirms; ``unknown`` means the time limit (or, for ``alpha-crown``, incompleteness).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from actbench.complete.base import STATUSES, Task, Verdict, get_verifier, list_verifiers, now, use_clock
from actbench.complete.problem import LayerNet, Spec, check_box, compile_model, robustness_spec
from actbench.errors import InvalidInput

__all__ = ["STATUSES", "LayerNet", "Spec", "Verdict", "compile_model", "list_verifiers", "use_clock", "verify_box",
           "verify_compiled"]


def _spec(net: LayerNet, label: int | None, spec: torch.Tensor | None, offset: torch.Tensor | None) -> Spec:
    k = net.num_outputs
    if spec is None:
        if label is None or isinstance(label, bool) or not 0 <= int(label) < k:
            raise InvalidInput(f"give a label in [0, {k - 1}] (local robustness) or a spec matrix [S, {k}]")
        if k < 2:
            raise InvalidInput("local robustness needs a model with at least 2 outputs")
        return robustness_spec(torch.tensor([int(label)]), k, net.dtype)
    C = torch.as_tensor(spec, dtype=net.dtype)
    if C.dim() != 2 or C.shape[1] != k or C.shape[0] < 1:
        raise InvalidInput(f"spec must have shape [S, {k}] with S >= 1, got {tuple(C.shape)}")
    d = torch.zeros(C.shape[0], dtype=net.dtype) if offset is None else torch.as_tensor(offset, dtype=net.dtype)
    if d.shape != (C.shape[0],):
        raise InvalidInput(f"offset must have shape [{C.shape[0]}], got {tuple(d.shape)}")
    if not bool(torch.isfinite(C).all() and torch.isfinite(d).all()):
        raise InvalidInput("spec and offset must be finite")
    return Spec(C.unsqueeze(0), d.unsqueeze(0))


def verify_compiled(net: LayerNet, lower: torch.Tensor, upper: torch.Tensor, spec: Spec, verifier: str = "bab",
                    timeout: float | None = None, options: dict[str, Any] | None = None) -> Verdict:
    """:func:`verify_box` on an already compiled network (saves the compile when many boxes share it)."""
    fn = get_verifier(verifier)
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)):
        raise InvalidInput(f"timeout must be a positive number of seconds, got {timeout!r}")
    xl = lower.detach().to(net.dtype).reshape(1, *net.in_shape)
    xu = upper.detach().to(net.dtype).reshape(1, *net.in_shape)
    start = now()
    task = Task(net, xl, xu, spec, dict(options or {}), start, None if timeout is None else start + timeout)
    with torch.no_grad():
        verdict = fn(task)
    verdict.seconds = now() - start
    return verdict


def verify_box(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, label: int | None = None,
               verifier: str = "bab", timeout: float | None = None, spec: torch.Tensor | None = None,
               offset: torch.Tensor | None = None, options: dict[str, Any] | None = None) -> Verdict:
    """Verify one input box (see the module docstring); the model is copied, never modified."""
    get_verifier(verifier)  # unknown names fail before any work
    for t, what in ((lower, "lower"), (upper, "upper")):
        if not isinstance(t, torch.Tensor):
            raise InvalidInput(f"{what} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2 or t.shape[0] != 1:
            raise InvalidInput(f"verify_box takes one box: {what} must have shape [1, *in], got {tuple(t.shape)}")
    check_box(lower, upper)
    net = compile_model(model, tuple(lower.shape[1:]))
    return verify_compiled(net, lower, upper, _spec(net, label, spec, offset), verifier, timeout, options)
