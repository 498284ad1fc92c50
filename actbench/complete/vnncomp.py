"""The complete verifiers as ``actbench verify`` verifiers (entries of ``actbench.interop.verify.VERIFIERS``).

Each takes the dispatcher's problem (a float64 model, the property's outer box, its label and target
classes) and answers VNN-COMP's way: ``unsat`` for ``verified``, ``sat`` with the counterexample for
``falsified`` (the dispatcher re-checks it in the inner box), ``unknown`` otherwise. Time limits are the
dispatcher's wall-clock deadline.
"""

from __future__ import annotations

import time
from typing import Any

import torch


def _answer(verifier: str, problem: Any, deadline: float | None) -> Any:
    from actbench.complete import compile_model, verify_compiled
    from actbench.complete.problem import Spec
    from actbench.interop.verify import Outcome

    left = None if deadline is None else deadline - time.monotonic()
    if left is not None and left <= 0:
        return Outcome("unknown", note="not started: time limit", timed_out=True)
    net = compile_model(problem.model, tuple(problem.lower.shape[1:]))
    eye = torch.eye(problem.num_outputs, dtype=torch.float64)
    C = torch.stack([eye[problem.label] - eye[t] for t in problem.targets])
    spec = Spec(C.unsqueeze(0), torch.zeros(1, C.shape[0], dtype=torch.float64))
    v = verify_compiled(net, problem.lower, problem.upper, spec, verifier, left)
    note = f"{v.reason}; {v.domains} domains" if v.domains else v.reason
    if v.status == "verified":
        return Outcome("unsat", note=note)
    if v.status == "falsified":
        return Outcome("sat", counterexample=v.counterexample, note=note)
    return Outcome("unknown", note=note, timed_out=v.reason == "timeout")


def bab(problem: Any, deadline: float | None) -> Any:
    """β-CROWN branch and bound (complete)."""
    return _answer("bab", problem, deadline)


def milp(problem: Any, deadline: float | None) -> Any:
    """Exact MILP (HiGHS)."""
    return _answer("milp", problem, deadline)


def alpha_crown(problem: Any, deadline: float | None) -> Any:
    """α-CROWN after the falsifying attack (incomplete)."""
    return _answer("alpha-crown", problem, deadline)
