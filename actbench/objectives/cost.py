"""Propagation accounting: the one place where the cost of every pass is defined.

A *propagation* is one forward-equivalent sample pass. Budgets of kind ``propagations`` and the
``propagations`` column of ``history.csv`` use these units, so methods that spend different kinds of
passes (clean forwards, attacks, bound passes, radius searches) are compared on equal compute.

Cost of one pass over ``n`` samples, in forward-equivalents per sample:

============================  ==================================================================
clean forward                 1
IBP bound pass                2   (centre and radius propagated side by side)
CROWN-IBP bound pass          2 + (K - 1)  (IBP for the intermediate bounds, then one backward
                              linear pass per margin row; K = number of classes)
CROWN bound pass              same as CROWN-IBP (a lower estimate: CROWN's intermediate bounds
                              cost more; CROWN is not used in training)
============================  ==================================================================

A pass whose result is differentiated (part of the training loss) costs twice its forward cost: the
backward pass costs about one forward. So a PGD step (forward + input gradient) costs 2, a training
clean forward costs 2 and an IBP pass with gradient costs 4. Passes on an active subset count only
that subset (``n`` is the subset size). A radius search counts the per-sample passes it reports.
Evaluation passes for model selection are not counted: they are the same rule for every method and
are not training compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORWARD = 1.0
IBP = 2.0


def bound_cost(method: str, num_classes: int) -> float:
    """Forward-equivalents per sample of one bound pass of ``method`` without gradient."""
    if method == "ibp":
        return IBP
    if method in ("crown-ibp", "crown"):
        return IBP + (num_classes - 1)
    raise ValueError(f"no cost defined for bound method {method!r}")


@dataclass
class PropagationCounter:
    """Accumulates propagations, split by kind (``forward``, ``ibp``, ``crown-ibp``, ``attack``)."""

    total: float = 0.0
    by_kind: dict[str, float] = field(default_factory=dict)

    def add(self, kind: str, samples: int | float, unit_cost: float, grad: bool = False) -> float:
        """Count ``samples`` passes of ``unit_cost`` (doubled with ``grad``); returns what was added."""
        amount = float(samples) * unit_cost * (2.0 if grad else 1.0)
        self.total += amount
        self.by_kind[kind] = self.by_kind.get(kind, 0.0) + amount
        return amount

    def state_dict(self) -> dict:
        return {"total": self.total, "by_kind": dict(self.by_kind)}

    def load_state_dict(self, state: dict) -> None:
        self.total = float(state["total"])
        self.by_kind = dict(state["by_kind"])
